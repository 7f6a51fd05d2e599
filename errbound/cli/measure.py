"""Measuring codecs beside their peers: shared by ``errbound bench`` and ``benchmarks/codecs.py``.

The measures and peer settings are those of the shared peers harness
(``../shared/tools/peers/peers.py``), so numbers from both line up:

* ratio = original bytes / compressed bytes; bits/value = 8 * compressed bytes / values
* max_err and err/eb in float64; ``viol`` counts values with ``|x - x'| > eb`` (strict),
  ``viol_ulp`` those with ``|x - x'| > eb + ulp(x)``; a NaN/Inf that does not come back
  identically counts as a violation
* PSNR as :func:`errbound.bounds.psnr`
* MB/s = 1e6 bytes of *uncompressed* data per second: two untimed round trips, then ``repeat``
  timed compress runs and ``repeat`` timed decompress runs, each looping the operation until it
  lasts ``min_time`` seconds; the median of the runs, from wall-clock and from CPU time.

Peers: SZ3 through pysz (ABS, INTERP_LORENZO, ``openmp=False``), ZFP through zfpy
(``tolerance=eb``), SPERR through hdf5plugin (``Sperr(absolute=eb, swap=True)`` in an in-memory
HDF5 file without chunk cache; size from ``get_storage_size()``, needs >= 2 dims), and SPERR's wasm
build through numcodecs-wasm-sperr (``Sperr(mode="pwe", pwe=eb)``, optional: skipped when not installed).

Threads: numba reads ``NUMBA_NUM_THREADS`` and OpenMP reads ``OMP_NUM_THREADS`` once, when they
load. A benchmark must therefore pin them *before* ``import errbound``, e.g.
``NUMBA_NUM_THREADS=1 OMP_NUM_THREADS=1 python script.py``, or ``os.environ.update(thread_env(1))``
as the first statement (``benchmarks/codecs.py`` does that). :func:`pin_threads` is the
after-import fallback the CLI uses: it sets the variables for libraries not loaded yet and lowers
numba's active thread count.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import statistics
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Sequence

import numpy as np

from ..api import compress, decompress
from ..bounds import finite_range
from ..bounds import psnr as _psnr
from ..codec import codec_names, get_codec

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLOSC_NTHREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
)
PEER_NAMES = ("sz3", "zfp", "sperr", "sperr-wasm")
LOSSLESS_CODECS = frozenset({"raw"})


def thread_env(threads: int = 1, numba_threads: int | None = None) -> dict[str, str]:
    """Environment that pins every threaded library (numba to ``numba_threads`` if given)."""
    env = {name: str(threads) for name in THREAD_VARS}
    if numba_threads is not None:
        env["NUMBA_NUM_THREADS"] = str(numba_threads)
    return env


def pin_threads(threads: int = 1) -> int:
    """Pin threads after import: env vars for libraries still to load, numba's active count now.

    Returns the numba thread count in effect (numba cannot go above the count it loaded with).
    """
    env = thread_env(threads)
    if "numba" not in sys.modules:
        os.environ.update(env)
        return threads
    # numba is loaded: changing NUMBA_NUM_THREADS now would make its next compilation fail
    # ("cannot set NUMBA_NUM_THREADS ... once the threads have been launched"), which a
    # cold cache turns into `errbound bench` failing on its first run
    env.pop("NUMBA_NUM_THREADS")
    os.environ.update(env)
    import numba

    n = max(1, min(threads, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    return n


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------------------------------
# candidates


class Candidate:
    """Something to measure: ``compress(data, eb_abs) -> blob``, ``nbytes(blob)``, ``decompress(blob, like)``."""

    name = "?"  # what --codecs / --peers select
    label = "?"  # what the tables show (unique across ours and peers)
    kind = "peer"  # "ours" or "peer"
    note = ""
    dist: str | None = None  # the package whose version the tables show

    def unsupported(self, data: np.ndarray) -> str | None:
        """None when this candidate can run on ``data``, else why not (missing package, shape...)."""
        return None

    def setup(self, eb_abs: float) -> None:
        """Untimed per-bound preparation (configuration objects)."""

    def compress(self, data: np.ndarray, eb_abs: float):
        raise NotImplementedError

    def nbytes(self, blob) -> int:
        return len(blob)

    def decompress(self, blob, like: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def release(self, blob) -> None:
        """Free what a blob holds beyond memory (the HDF5 peer keeps a file open)."""

    def version(self) -> str | None:
        return _version(self.dist) if self.dist else None


class Ours(Candidate):
    """One registered errbound codec, driven with the same absolute bound as the peers."""

    kind = "ours"
    dist = "errbound"

    def __init__(self, codec: str):
        self.name = codec
        self.label = f"errbound-{codec}"
        self.note = f"errbound.compress(x, codec={codec!r}, abs=eb)"

    def compress(self, data, eb_abs):
        return compress(data, codec=self.name, abs=eb_abs)

    def decompress(self, blob, like):
        return decompress(blob)


def _missing(*modules: str) -> str | None:
    for module in modules:
        try:
            __import__(module)
        except ImportError as exc:
            return f"package {module} is not installed ({exc})"
    return None


class SZ3(Candidate):
    name = label = "sz3"
    dist = "pysz"
    note = "pysz (SZ3 C++), ABS mode, INTERP_LORENZO, openmp=False"

    def unsupported(self, data):
        return _missing("pysz")

    def setup(self, eb_abs):
        from pysz import szAlgorithm, szConfig, szErrorBoundMode

        cfg = szConfig()
        cfg.errorBoundMode = szErrorBoundMode.ABS
        cfg.absErrorBound = float(eb_abs)
        cfg.cmprAlgo = szAlgorithm.INTERP_LORENZO
        cfg.openmp = False
        self.cfg = cfg

    def compress(self, data, eb_abs):
        from pysz import sz

        return sz.compress(data, self.cfg)[0]

    def nbytes(self, blob):
        return blob.nbytes

    def decompress(self, blob, like):
        from pysz import sz

        return sz.decompress(blob, like.dtype, like.shape)[0]


class ZFP(Candidate):
    name = label = "zfp"
    dist = "zfpy"
    note = "zfpy fixed-accuracy, tolerance = eb"

    def unsupported(self, data):
        return _missing("zfpy") or ("zfp handles 1 to 4 dimensions" if not 1 <= data.ndim <= 4 else None)

    def compress(self, data, eb_abs):
        import zfpy

        return zfpy.compress_numpy(data, tolerance=float(eb_abs))

    def decompress(self, blob, like):
        import zfpy

        return zfpy.decompress_numpy(blob)


class SPERR(Candidate):
    name = label = "sperr"
    dist = "hdf5plugin"
    note = "hdf5plugin Sperr(absolute=eb, swap=True), in-memory HDF5, one chunk, no chunk cache"

    def unsupported(self, data):
        if data.ndim < 2:
            return "SPERR (H5Z-SPERR) needs >= 2 dimensions"
        if data.nbytes >= 2**32:
            return "an HDF5 chunk must be < 4 GiB"
        return _missing("h5py", "hdf5plugin")

    def compress(self, data, eb_abs):
        import h5py
        import hdf5plugin

        f = h5py.File(
            f"mem-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False, rdcc_nbytes=0
        )  # no chunk cache, so every read really decompresses
        ds = f.create_dataset(
            "d", data=data, chunks=data.shape, compression=hdf5plugin.Sperr(absolute=float(eb_abs), swap=True)
        )
        f.flush()
        return f, ds

    def nbytes(self, blob):
        return blob[1].id.get_storage_size()  # filtered chunk bytes, no HDF5 metadata

    def decompress(self, blob, like):
        return blob[1][...]

    def release(self, blob):
        blob[0].close()


class SPERRWasm(Candidate):
    """SPERR's WebAssembly build; optional: skipped when numcodecs-wasm-sperr is not installed."""

    name = label = "sperr-wasm"
    dist = "numcodecs-wasm-sperr"
    note = "numcodecs-wasm-sperr Sperr(mode='pwe', pwe=eb), point-wise error mode"

    def unsupported(self, data):
        return _missing("numcodecs_wasm_sperr")

    def setup(self, eb_abs):
        from numcodecs_wasm_sperr import Sperr

        self.codec = Sperr(mode="pwe", pwe=float(eb_abs))

    def compress(self, data, eb_abs):
        return np.asarray(self.codec.encode(data))

    def nbytes(self, blob):
        return blob.nbytes

    def decompress(self, blob, like):
        return np.asarray(self.codec.decode(blob)).reshape(like.shape)


PEERS: dict[str, Callable[[], Candidate]] = {"sz3": SZ3, "zfp": ZFP, "sperr": SPERR, "sperr-wasm": SPERRWasm}


def lossy_codecs() -> list[str]:
    """Names of the registered errbound codecs that take an error bound."""
    return [name for name in codec_names() if name not in LOSSLESS_CODECS]


def candidates(ours: Sequence[str] | None = None, peers: Sequence[str] | None = PEER_NAMES) -> list[Candidate]:
    """Our codecs (default: every lossy one registered) followed by the named peers."""
    names = lossy_codecs() if ours is None else list(ours)
    for name in names:
        get_codec(name)  # UnknownCodecError names the registered ones
    unknown = [p for p in peers or () if p not in PEERS]
    if unknown:
        raise ValueError(f"unknown peers {unknown}; known: {', '.join(PEERS)}")
    return [Ours(n) for n in names] + [PEERS[p]() for p in peers or ()]


# ---------------------------------------------------------------------------------------------
# measuring


def error_stats(orig: np.ndarray, rec: np.ndarray, eb_abs: float, block: int = 1 << 22) -> dict:
    """max_err, err/eb, violations (strict and beyond one ulp) and PSNR, in float64 in blocks."""
    of, rf = orig.reshape(-1), rec.reshape(-1)
    max_err, viol, viol_ulp = 0.0, 0, 0
    for i in range(0, of.size, block):
        ob, rb = of[i : i + block], rf[i : i + block]
        o, r = ob.astype(np.float64), rb.astype(np.float64)
        d = np.abs(o - r)
        finite = np.isfinite(d)
        if not finite.all():
            same = (np.isnan(o) & np.isnan(r)) | (np.isinf(o) & (o == r))
            bad = int(np.count_nonzero(~finite & ~same))
            viol, viol_ulp = viol + bad, viol_ulp + bad
            d = np.where(finite, d, 0.0)
        if d.size:
            max_err = max(max_err, float(d.max()))
        over = d > eb_abs
        if over.any():
            viol += int(np.count_nonzero(over))
            ulp = np.spacing(np.abs(ob[over])).astype(np.float64)
            viol_ulp += int(np.count_nonzero(d[over] > eb_abs + ulp))
    return {
        "max_err": max_err,
        "err_over_eb": max_err / eb_abs if eb_abs > 0 else math.nan,
        "viol": viol,
        "viol_ulp": viol_ulp,
        "psnr": _psnr(orig, rec),
    }


def _loops(seconds: float, min_time: float) -> int:
    return 1 if seconds >= min_time else min(1000, max(1, math.ceil(min_time / max(seconds, 1e-6))))


def measure(candidate: Candidate, data: np.ndarray, eb_abs: float, repeat: int = 3, min_time: float = 0.05) -> dict:
    """Size, error and speed of one candidate at one absolute bound (see the module docstring)."""
    candidate.setup(eb_abs)
    # two untimed round trips: the first loads JIT code and warms caches, the second sizes the
    # loops (sized from the first, a cold call made every timed run a single noisy call)
    for _ in range(2):
        t0 = time.perf_counter()
        blob = candidate.compress(data, eb_abs)
        t1 = time.perf_counter()
        candidate.decompress(blob, data)
        t2 = time.perf_counter()
        candidate.release(blob)
    blob = candidate.compress(data, eb_abs)
    kc, kd = _loops(t1 - t0, min_time), _loops(t2 - t1, min_time)
    ctimes, ccpu = [], []
    for _ in range(max(repeat, 1)):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(kc):
            candidate.release(blob)
            blob = candidate.compress(data, eb_abs)
        ctimes.append((time.perf_counter() - w0) / kc)
        ccpu.append((time.process_time() - c0) / kc)
    size = int(candidate.nbytes(blob))
    dtimes, dcpu, rec = [], [], None
    for _ in range(max(repeat, 1)):
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(kd):
            rec = candidate.decompress(blob, data)
        dtimes.append((time.perf_counter() - w0) / kd)
        dcpu.append((time.process_time() - c0) / kd)
    candidate.release(blob)
    rec = np.asarray(rec)
    if rec.dtype != data.dtype or rec.size != data.size:
        raise RuntimeError(f"{candidate.label} returned {rec.dtype} {rec.shape}, expected {data.dtype} {data.shape}")
    rec = rec.reshape(data.shape)
    mb = data.nbytes / 1e6
    ct, dt = statistics.median(ctimes), statistics.median(dtimes)
    cc, dc = statistics.median(ccpu), statistics.median(dcpu)
    out = {
        "comp_bytes": size,
        "ratio": data.nbytes / size if size else math.inf,
        "bits_per_value": 8.0 * size / data.size,
        "comp_MBps": mb / ct if ct > 0 else math.inf,
        "decomp_MBps": mb / dt if dt > 0 else math.inf,
        "comp_cpu_MBps": mb / cc if cc > 0 else None,
        "decomp_cpu_MBps": mb / dc if dc > 0 else None,
        "comp_times": ctimes,
        "decomp_times": dtimes,
        "inner_loops": [kc, kd],
    }
    out.update(error_stats(data, rec, eb_abs))
    return out


def run_cases(
    cands: Sequence[Candidate],
    data: np.ndarray,
    bounds: Sequence[float],
    mode: str = "rel",
    repeat: int = 3,
    min_time: float = 0.05,
    field: str = "",
    bar=None,
) -> tuple[list[dict], dict]:
    """Measure every candidate at every bound; a failure becomes a row with ``error``.

    ``mode="rel"``: each bound times the finite value range is the absolute bound all get.
    Returns (rows, skipped) where skipped maps a candidate label to why it did not run.
    ``bar`` (a :class:`errbound.progress.Progress`) advances once per (candidate, bound).
    """
    vrange = finite_range(data)
    rows, skipped = [], {}
    for cand in cands:
        reason = cand.unsupported(data)
        if reason:
            skipped[cand.label] = reason
            if bar is not None:
                bar.update(len(bounds))
            continue
        for eb in bounds:
            if bar is not None:  # name the case while it runs, not after
                bar.update(0, note=f"{field} {cand.label} {eb:g}".strip())
            eb_abs = eb * vrange if mode == "rel" else eb
            row = {"field": field, "codec": cand.label, "kind": cand.kind, "mode": mode, "eb": eb, "eb_abs": eb_abs}
            try:
                if not eb_abs > 0:
                    raise ValueError("absolute bound is 0 (constant data?)")
                row.update(measure(cand, data, eb_abs, repeat, min_time))
            except Exception as exc:  # one failing codec must not end the whole table
                row["error"] = f"{type(exc).__name__}: {exc}".replace("\n", " ")
                row["traceback"] = traceback.format_exc()
            rows.append(row)
            if bar is not None:
                bar.update()
    return rows, skipped


def versions(cands: Sequence[Candidate]) -> dict[str, str | None]:
    return {c.label: c.version() for c in cands}


# ---------------------------------------------------------------------------------------------
# tables

COLUMNS = [
    ("codec", "codec", "{}"),
    ("eb", "eb", "{:.0e}"),
    ("eb_abs", "eb_abs", "{:.3e}"),
    ("ratio", "ratio", "{:.2f}"),
    ("bits/val", "bits_per_value", "{:.3f}"),
    ("PSNR", "psnr", "{:.2f}"),
    ("max_err", "max_err", "{:.3e}"),
    ("err/eb", "err_over_eb", "{:.4f}"),
    ("viol", "viol", "{:d}"),
    ("viol>ulp", "viol_ulp", "{:d}"),
    ("comp MB/s", "comp_MBps", "{:.1f}"),
    ("dec MB/s", "decomp_MBps", "{:.1f}"),
    ("comp cpuMB/s", "comp_cpu_MBps", "{:.1f}"),
    ("dec cpuMB/s", "decomp_cpu_MBps", "{:.1f}"),
]


def _cell(value, fmt: str) -> str:
    if value is None:
        return "-"
    try:
        return fmt.format(value)
    except (TypeError, ValueError):
        return str(value)


def format_table(rows: Sequence[dict]) -> str:
    """A fixed-width text table of measured rows (errors shown in place of the numbers)."""
    lines = [[head for head, _, _ in COLUMNS]]
    errors = {}
    for i, row in enumerate(rows):
        if row.get("error"):
            errors[i + 1] = row["error"][:100]
            lines.append([_cell(row.get(k), f) for _, k, f in COLUMNS[:3]])
        else:
            lines.append([_cell(row.get(k), f) for _, k, f in COLUMNS])
    widths = [max(len(line[j]) for line in lines if j < len(line)) for j in range(len(COLUMNS))]
    out = []
    for i, line in enumerate(lines):
        text = "  ".join(c.ljust(widths[j]) if j < 1 else c.rjust(widths[j]) for j, c in enumerate(line))
        if i in errors:
            text += "  ERROR: " + errors[i]
        out.append(text.rstrip())
        if i == 0:
            out.append("-" * len(text))
    return "\n".join(out)


def jsonable(obj):
    """``obj`` with non-finite floats as strings ("inf", "nan"), which strict JSON cannot hold."""
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def geomean(values: Sequence[float]) -> float:
    """Geometric mean of positive values (nan for none)."""
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(math.log(v) for v in vals) / len(vals)) if vals else math.nan
