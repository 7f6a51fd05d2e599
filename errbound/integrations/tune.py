"""Pick the codec and bound per variable that meet a target with the highest ratio.

    result = errbound.tune(x, target="psnr=60")   # -> TuneResult(codec="sz", mode="psnr", ...)
    blob = errbound.compress(x, result.codec, **result.bound)

Targets:

* ``psnr=P``: PSNR >= P dB. For each codec the largest absolute bound whose PSNR on the sample
  is >= P (+0.2 dB margin) is found by bisection; the codec with the best ratio wins. The bound
  written is ``psnr = P`` with ``start_abs`` = that bound: ``errbound h5 compress`` starts there
  and checks the whole dataset's PSNR (tightening if needed), so the target always holds.
* ``ratio=R``: compression ratio >= R. For each codec the smallest absolute bound whose predicted
  ratio is >= R (+3 % margin); the codec with the best PSNR wins; written as ``abs``. The ratio
  is a prediction (``--verify`` measures it).
* ``max-rel=E``: every error <= E * (max - min). Every codec guarantees that with ``rel = E``;
  the one with the best predicted ratio wins.

``auto`` is among the default candidates and wins also when it comes within ``AUTO_WITHIN``
(1 %) of the best fixed codec: within 1 % of its ratio (psnr and max-rel targets), or of its
RMS error, 0.087 dB of PSNR (ratio targets). It chooses again for every chunk of the dataset,
which the two sampled blocks cannot see.

The sample: the whole array up to ``sample_values`` (default 2**16) values; beyond that two
blocks of the same shape as the array, spread along its diagonal, about ``sample_values`` in
all. The ratio is predicted from the sample's compressed payload (stream headers counted once
per chunk of the full dataset); PSNR from the sample's squared errors against the range of the
whole dataset. ``predicted`` vs. actual is shown by ``errbound tune --verify``.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..api import compress, decompress
from ..bounds import finite_range, psnr_to_abs
from ..codec import codec_names
from ..errors import BoundError

DEFAULT_SAMPLE = 1 << 16
SAMPLE_BLOCKS = 2  # measured on the shared fields: 2 blocks predict the ratio best (8 % mean error)
PSNR_MARGIN_DB = 0.2
RATIO_MARGIN = 1.03
TARGETS = ("psnr", "ratio", "max-rel")
#: the candidates when none are named: the registered ones of these. hlr is left out because it
#: is ~100x slower (16 s for a 1.2 MB field here) and the search compresses the sample ~10 times
DEFAULT_CODECS = ("auto", "sz", "zfp", "fz", "sperr")
#: ``auto`` is kept when its sampled result is within this factor of the best fixed codec's
#: (ratio; for ratio targets, RMS error: 20 log10(1/0.99) = 0.087 dB of PSNR): it chooses again
#: for every chunk of the dataset, where the two sampled blocks cannot see
AUTO_WITHIN = 0.99


@dataclass
class TuneResult:
    """The choice for one variable, with what the sample predicts."""

    codec: str
    mode: str  # the bound to use: "psnr" (with start_abs), "abs" or "rel"
    value: float
    abs_bound: float  # the absolute bound the prediction was made with
    predicted_ratio: float
    predicted_psnr: float
    predicted_max_rel: float  # max |error| / (max - min) on the sample
    sample_values: int
    total_values: int
    met: bool = True  # False: no codec reached the target on the sample (best effort)
    candidates: list[dict] = field(default_factory=list)

    @property
    def bound(self) -> dict:
        """Keyword arguments for :func:`errbound.compress`."""
        return {self.mode: self.value}


def parse_target(text: str) -> tuple[str, float]:
    """``"psnr=60"`` -> ("psnr", 60.0); also ratio=20 and max-rel=1e-3."""
    name, sep, number = str(text).partition("=")
    name = name.strip().lower().replace("_", "-")
    try:
        value = float(number)
    except ValueError:
        value = math.nan
    if (
        not sep
        or name not in TARGETS
        or not (value > 0 and math.isfinite(value))
        or (name == "ratio" and value <= 1)
        or (name == "max-rel" and value >= 1)
    ):
        raise BoundError(f"target must be psnr=DB, ratio=R (> 1) or max-rel=E (0 < E < 1), got {text!r}")
    return name, value


def sample_regions(shape: Sequence[int], sample_values: int = DEFAULT_SAMPLE) -> list[tuple[slice, ...]]:
    """Blocks to sample: the whole array, or SAMPLE_BLOCKS blocks of the array's shape along its diagonal."""
    total = math.prod(shape)
    if total <= sample_values or not shape:
        return [tuple(slice(0, n) for n in shape)]
    scale = (sample_values / SAMPLE_BLOCKS / total) ** (1 / len(shape))
    block = [max(1, min(n, math.ceil(n * scale))) for n in shape]
    regions = []
    for j in range(SAMPLE_BLOCKS):
        where = (j + 0.5) / SAMPLE_BLOCKS
        start = [int((n - b) * where) for n, b in zip(shape, block, strict=True)]
        regions.append(tuple(slice(s, s + b) for s, b in zip(start, block, strict=True)))
    return regions


def _payload(blob: bytes) -> tuple[int, int]:
    """(bytes after the stream header, header bytes)."""
    head = 10 + struct.unpack_from("<I", blob, 6)[0] + 4
    return len(blob) - head, head


class _Sample:
    """Blocks of one variable and what compressing them at a bound gives."""

    def __init__(self, blocks: list[np.ndarray], total_values: int, value_range: float, streams: int):
        self.blocks = [np.ascontiguousarray(b) for b in blocks]
        self.values = sum(b.size for b in self.blocks)
        self.total, self.range, self.streams = total_values, value_range, max(streams, 1)
        self.itemsize = self.blocks[0].dtype.itemsize

    def measure(self, codec: str, **bound) -> dict:
        payload, head, sse, count, max_err = 0, 0, 0.0, 0, 0.0
        for block in self.blocks:
            blob = compress(block, codec, **bound)
            body, header = _payload(blob)
            payload, head = payload + body, max(head, header)
            a = block.astype(np.float64)
            finite = np.isfinite(a)
            d = (decompress(blob).astype(np.float64) - a)[finite]
            if d.size:
                sse, count, max_err = sse + float(np.dot(d, d)), count + d.size, max(max_err, float(np.abs(d).max()))
        size = payload * self.total / self.values + head * self.streams
        mse = sse / count if count else 0.0
        psnr = (
            math.inf
            if mse == 0
            else (20 * math.log10(self.range) - 10 * math.log10(mse) if self.range > 0 else -math.inf)
        )
        return {
            "ratio": self.total * self.itemsize / max(size, 1.0),
            "psnr": psnr,
            "max_rel": max_err / self.range if self.range > 0 else 0.0,
        }


def bracket(passes: Callable[[float], bool], start: float, steps: int = 4) -> tuple[float | None, float | None]:
    """(largest bound that passes, smallest that fails), to a factor 2**(1/2**steps).

    ``passes`` must hold for small bounds and fail for large ones; the search moves by factors of
    2 from ``start`` (at most 2**12 either way), then bisects in log space. None: not found.
    """
    lo, hi = (start, None) if passes(start) else (None, start)
    for _ in range(12):
        if lo is not None and hi is not None:
            break
        if hi is None:
            lo, hi = (lo * 2, None) if passes(lo * 2) else (lo, lo * 2)
        else:
            lo, hi = (hi / 2, hi) if passes(hi / 2) else (None, hi / 2)
    if lo is not None and hi is not None:
        for _ in range(steps):
            mid = math.sqrt(lo * hi)
            lo, hi = (mid, hi) if passes(mid) else (lo, mid)
    return lo, hi


def choose(sample: _Sample, target: str, codecs: Sequence[str] | None = None) -> TuneResult:
    """The tuner's decision for one sampled variable."""
    kind, goal = parse_target(target)
    rows, failed = [], []
    for codec in codecs or [c for c in DEFAULT_CODECS if c in codec_names()]:
        cache: dict[float, dict] = {}

        def at(eb: float, codec=codec, cache=cache) -> dict:
            if eb not in cache:
                cache[eb] = sample.measure(codec, abs=eb)
            return cache[eb]

        try:
            if not 0 < sample.range < math.inf:
                # constant or all NaN, or a range beyond float64 (values near +-1e308): a rel
                # bound (of that range) stores it exactly, as compress() does, and is what is
                # measured; a ratio target is met only if that ratio reaches it
                eb, mode, value = 0.0, "rel", goal if kind == "max-rel" else 1e-3
                stats = sample.measure(codec, rel=value)
                met = kind != "ratio" or stats["ratio"] >= goal
            elif kind == "max-rel":
                eb, mode, value = goal * sample.range, "rel", goal
                stats, met = at(eb), True
            elif kind == "psnr":
                found, _ = bracket(lambda e: at(e)["psnr"] >= goal + PSNR_MARGIN_DB, psnr_to_abs(goal, sample.range))
                eb = found or min(cache)
                mode, value, stats, met = "psnr", goal, at(eb), found is not None
            else:  # ratio grows with the bound: the smallest bound that reaches it is the first to "fail"
                _, reached = bracket(lambda e: at(e)["ratio"] < goal * RATIO_MARGIN, 1e-3 * sample.range)
                met = reached is not None
                eb = reached if met else max(cache, key=lambda e: cache[e]["ratio"])
                mode, value, stats = "abs", eb, at(eb)
        except Exception as exc:  # noqa: BLE001 - one broken codec must not end the tuning of a file
            failed.append({"codec": codec, "error": f"{type(exc).__name__}: {exc}"})
            continue
        rows.append({"codec": codec, "mode": mode, "value": value, "abs_bound": eb, "met": met, **stats})
    if not rows:
        raise BoundError(f"no candidate codec could compress the sample: {failed}")
    key = (lambda r: (r["met"], r["psnr"], r["ratio"])) if kind == "ratio" else (lambda r: (r["met"], r["ratio"]))
    best = max(rows, key=key)
    auto = next((r for r in rows if r["codec"] == "auto"), None)
    if auto is not None and auto is not best and auto["met"] >= best["met"]:
        close = (
            auto["psnr"] >= best["psnr"] - 20 * math.log10(1 / AUTO_WITHIN)
            if kind == "ratio"
            else auto["ratio"] >= AUTO_WITHIN * best["ratio"]
        )
        best = auto if close else best
    return TuneResult(
        best["codec"],
        best["mode"],
        best["value"],
        best["abs_bound"],
        best["ratio"],
        best["psnr"],
        best["max_rel"],
        sample.values,
        sample.total,
        best["met"],
        rows + failed,
    )


def tune(
    array: np.ndarray, target: str = "psnr=60", codecs: Sequence[str] | None = None, sample_values: int = DEFAULT_SAMPLE
) -> TuneResult:
    """Choose the codec and bound for ``array`` that meet ``target`` with the highest ratio.

    ``target``: ``"psnr=60"``, ``"ratio=20"`` or ``"max-rel=1e-3"``; ``codecs``: the candidates
    (default :data:`DEFAULT_CODECS`; a codec that fails is skipped and listed in ``candidates``
    with its ``error``). The result says which codec and bound
    (``errbound.compress(array, r.codec, **r.bound)``) and what the sample predicted.
    """
    parse_target(target)
    array = np.asarray(array)
    if array.dtype.kind != "f" or array.dtype.itemsize not in (4, 8) or array.size == 0:
        raise BoundError(f"tune needs a non-empty float32/float64 array, got {array.dtype} {array.shape}")
    blocks = [array[r] for r in sample_regions(array.shape, sample_values)]
    return choose(_Sample(blocks, array.size, finite_range(array), 1), target, codecs)


# ---------------------------------------------------------------------------------------------
# whole HDF5 files


@dataclass
class VariableChoice:
    """The tuner's choice for one dataset of a file (``actual`` is filled by :func:`verify_file`)."""

    path: str
    shape: tuple[int, ...]
    dtype: str
    result: TuneResult
    actual: dict = field(default_factory=dict)


def tune_file(
    path,
    target: str,
    codecs: Sequence[str] | None = None,
    sample_values: int = DEFAULT_SAMPLE,
    min_bytes: int | None = None,
    progress: bool | None = None,
) -> list[VariableChoice]:
    """Tune every float dataset of an HDF5 file (those ``errbound h5 compress`` would compress)."""
    from .hdf5 import files as h5files
    from .hdf5.config import DEFAULT_MIN_BYTES
    from .progress import Progress

    parse_target(target)
    min_bytes = DEFAULT_MIN_BYTES if min_bytes is None else min_bytes
    choices = []
    with h5files.open_input(path) as f:
        datasets = [
            (p, d)
            for p, d in h5files.entries(f)
            if isinstance(d, h5files.h5py.Dataset) and h5files.is_float_dataset(d) and d.nbytes >= min_bytes
        ]
        with Progress(len(datasets), "tune", force=progress) as bar:
            for name, ds in datasets:
                bar.update(0, note=name)
                chunks = h5files.choose_chunks(ds)
                grid = h5files.chunk_grid(ds.shape, chunks)
                lo, hi = h5files.finite_minmax(ds, chunks, grid)
                blocks = [ds[r] for r in sample_regions(ds.shape, sample_values)]
                sample = _Sample(blocks, ds.size, hi - lo if hi >= lo else 0.0, len(grid))
                choices.append(VariableChoice(name, ds.shape, str(ds.dtype), choose(sample, target, codecs)))
                bar.update()
    return choices


def bounds_toml(choices: Sequence[VariableChoice], target: str, source: str = "") -> str:
    """A bounds file for ``errbound h5 compress`` with one rule per tuned dataset."""
    from .hdf5.config import glob_escape, toml_string

    lines = [
        f"# errbound tune {source} --target {target}".replace("  ", " "),
        "# one rule per dataset; datasets without a rule are copied unchanged",
        "",
    ]
    for c in choices:
        r = c.result
        note = (
            f"predicted ratio {r.predicted_ratio:.2f}, PSNR {r.predicted_psnr:.2f} dB, from {r.sample_values} "
            f"of {r.total_values} values" + ("" if r.met else "; TARGET NOT MET on the sample")
        )
        lines += [
            "[[rule]]",
            f"match = {toml_string(glob_escape(c.path))}",
            f"codec = {toml_string(r.codec)}",
            f"{r.mode} = {r.value!r}",
        ]
        if r.mode == "psnr" and r.abs_bound > 0:
            lines.append(f"start_abs = {r.abs_bound!r}")
        lines += [f"# {note}", ""]
    return "\n".join(lines)


def verify_file(path, config, choices: Sequence[VariableChoice], comm=None) -> dict:
    """Compress ``path`` with ``config`` into a temporary file and fill each choice's ``actual``
    (ratio, PSNR, max error / range). Returns the whole file's sizes."""
    import os
    import tempfile

    from .hdf5 import engine, files

    folder = tempfile.mkdtemp(prefix="errbound-tune-")
    out = os.path.join(folder, "verify.h5")
    try:
        engine.compress_file(path, out, config, comm=comm)
        rows = {row["path"]: row for row in files.file_info(out, check=path)}
        for c in choices:
            row = rows.get(c.path, {})
            value_range = row.get("range") or 0.0
            c.actual = {
                "ratio": row.get("ratio"),
                "psnr": row.get("psnr"),
                "max_rel": row["max_err"] / value_range if value_range else row.get("max_err"),
            }
        return {"original_bytes": os.path.getsize(path), "compressed_bytes": os.path.getsize(out)}
    finally:
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
