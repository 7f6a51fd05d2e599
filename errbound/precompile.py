"""Compile errbound's kernels ahead of time (``errbound.warmup()``, ``errbound warmup``).

Kernels compile on first use, per dtype and number of dimensions, and are cached on disk
(``errbound.compiling``). A job script, a container build or a CI step that calls ``warmup`` first
makes every later process load them from the cache instead: the first call of a codec then
takes a fraction of a second instead of tens of seconds. Each (codec, dtype, dimensions)
case runs the codec's encoder and decoder on a small array shaped to take every path the
codec has for it (both ``sz`` predictors, with a frozen axis too, and its rANS coder, ``fz``'s long-row and 64-bit-code
paths, ``sperr``'s PSNR search, ``hlr``'s low-rank tiles); ``tests/test_cold_start.py`` checks that nothing compiles
afterwards.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .api import compress, decompress
from .codec import codec_names

DTYPES = ("float32", "float64")
NDIMS = (1, 2, 3, 4)
# shapes that reach every kernel path: 1-D rows longer than fz's row ring (LONG_ROW = 65536)
SHAPES = {1: (70_000,), 2: (96, 96), 3: (24, 24, 24), 4: (8, 8, 8, 8)}


@dataclass
class WarmupCase:
    codec: str
    dtype: str
    ndim: int
    seconds: float = 0.0


def _field(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    x = sum(np.sin((k + 1) * g) for k, g in enumerate(grids)) + 1e-3 * np.cos(np.arange(np.prod(shape))).reshape(shape)
    x = x.astype(dtype)
    x.reshape(-1)[:4] = [np.nan, np.inf, -0.0, 0.0]  # the specials' paths
    return x


def _low_rank(dtype: str) -> np.ndarray:
    t = np.sort(np.random.default_rng(7).uniform(0, 20, 160))
    return np.exp(-np.abs(t[:, None] - t[None, :])).astype(dtype)


def _calls(codec: str, dtype: str, ndim: int) -> list[tuple[str, np.ndarray, dict]]:
    x = _field(SHAPES[ndim], dtype)
    calls = [(x, {"rel": 1e-3}), (x, {"pw_rel": 1e-3})]
    extra = []
    if codec == "sz":
        calls += [(x, {"rel": 1e-4, "predictor": "interpolation"}), (x, {"rel": 1e-4, "predictor": "lorenzo"})]
        calls.append((x, {"rel": 1e-3, "entropy": "best"}))  # the rANS coder's context counts
    if codec == "fz":
        calls.append((x * 1e12, {"abs": 1e-6}))  # codes beyond int32: the 64-bit path
    if codec == "sperr":
        calls.append((x, {"psnr": 60.0}))
    if codec == "hlr":
        if ndim >= 2:  # low-rank tiles (a 3-D or 4-D array is matricized along its first axis)
            calls.append(
                (_low_rank(dtype).reshape({2: (160, 160), 3: (160, 16, 10), 4: (160, 4, 4, 10)}[ndim]), {"abs": 1e-5})
            )
        # the residual is coded with sz's stages, with whichever predictor its policy picks
        # for the data, as the array or (2-D) as a 4-D tensor view
        for n in (ndim, 4) if ndim == 2 else (ndim,):
            y = _field(SHAPES[n], dtype)
            extra += [("sz", y, {"rel": 1e-4, "predictor": p}) for p in ("interpolation", "lorenzo")]
    return [(codec, array, options) for array, options in calls] + extra


def cases(
    codecs: Sequence[str] | None = None, dtypes: Sequence[str] = DTYPES, ndims: Sequence[int] = NDIMS
) -> list[WarmupCase]:
    names = [c for c in codec_names() if c != "raw"] if codecs is None else list(codecs)
    return [WarmupCase(c, d, n) for c in names for d in dtypes for n in ndims]


def warmup(
    codecs: Sequence[str] | None = None,
    dtypes: Sequence[str] = DTYPES,
    ndims: Sequence[int] = NDIMS,
    on_case: Callable[[WarmupCase], None] | None = None,
    jobs: int = 1,
) -> list[WarmupCase]:
    """Compile (or load from the cache) the kernels of ``codecs`` (default: every codec) for
    ``dtypes`` and numbers of dimensions ``ndims``. ``on_case`` is called after each case.
    ``jobs`` > 1: the cases run in that many processes at once (each kernel signature still
    compiles once, see errbound.compiling); they are started with multiprocessing's "spawn", so
    a script that calls this needs the usual ``if __name__ == "__main__":`` guard. Returns
    the cases with the seconds each took."""
    todo = cases(codecs, dtypes, ndims)
    if jobs > 1 and len(todo) > 1:
        return _in_processes(todo, min(jobs, len(todo)), on_case)
    done = []
    for case in todo:
        case.seconds = _run_case_in_group(case.codec, case.dtype, case.ndim, shared=False)
        done.append(case)
        if on_case is not None:
            on_case(case)
    return done


def _run_case(codec: str, dtype: str, ndim: int) -> float:
    t0 = time.perf_counter()
    for name, array, options in _calls(codec, dtype, ndim):
        decompress(compress(array, name, **options))
    if codec == "sz":
        _rans_coders()
        if ndim >= 3:
            _frozen_lorenzo(dtype, ndim)
    return time.perf_counter() - t0


def _frozen_lorenzo(dtype: str, ndim: int) -> None:
    """Lorenzo with a frozen axis runs the kernel of one dimension less on each slice: the
    policy picks it only for data that no warm-up array can promise."""
    from .stages.predictors.lorenzo import LorenzoPredictor

    x = _field(SHAPES[ndim], dtype)
    predictor = LorenzoPredictor(frozen=[4 - ndim])
    codes, unpred, _ = predictor.encode(x, 1e-3)
    predictor.decode(codes, unpred, x.shape, x.dtype, 1e-3)


def _rans_coders() -> None:
    """Both rANS block types coded and decoded (their kernels take int32 codes whatever the
    array): entropy="best" keeps the coder only where it is smaller, which no warm-up
    array can promise for every dtype and dimension."""
    from .stages.coders import rans

    center = 1 << 15
    codes = (np.rint(np.random.default_rng(0).laplace(0, 3, 4096)) + center).astype(np.int32)
    for lanes in (True, False):
        rans.decode(rans.encode(codes, 2 * center, center, lanes=lanes), codes.size, 2 * center, center)


def _run_case_in_group(codec: str, dtype: str, ndim: int, shared: bool = True) -> float:
    """A case as one first use, which says nothing (a warm-up is meant to compile) and marks
    every codec path it ran as compiled. ``shared``, in a worker of ``warmup(jobs=...)``: its
    compiles are split with the other workers instead of taking the compile lock in turn."""
    from .compiling import first_use

    with first_use(("warmup", codec, dtype, ndim), f"{codec} warm-up", shared=shared, say=False):
        return _run_case(codec, dtype, ndim)


def _in_processes(todo: list[WarmupCase], jobs: int, on_case) -> list[WarmupCase]:
    # cases of different codecs side by side (they share the fewest kernels), `auto` after
    # the codecs it runs, and fresh interpreters ("spawn"): a forked child of a process that
    # has compiled inherits numba's and LLVM's state mid-flight
    order = sorted(range(len(todo)), key=lambda i: (todo[i].codec == "auto", todo[i].dtype, todo[i].ndim, i))
    context = multiprocessing.get_context("spawn")
    pool = concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context)
    try:
        futures = {pool.submit(_run_case_in_group, todo[i].codec, todo[i].dtype, todo[i].ndim): todo[i] for i in order}
        for future in concurrent.futures.as_completed(futures):
            case = futures[future]
            case.seconds = future.result()
            if on_case is not None:
                on_case(case)
    except BaseException:  # a failed case or Ctrl-C: the cases not started are dropped
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return todo
