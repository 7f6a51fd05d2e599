"""The errbound HDF5 filter's parameters (cd_values) and how it codes one chunk (see ``errbound.hdf5``)."""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass

import numpy as np

from ...api import compress, decompress
from ...bounds import finite_range, parse_bound
from ...codec import get_codec
from ...errors import CorruptStreamError, UnsupportedInputError
from ...layout import MAX_DIMS

FILTER_ID = 0xEB00
# stored in every file's filter pipeline, so that a reader without errbound learns what it needs
# (h5dump -p, h5ls -v, HDF5's error stack); the plugin (plugin/h5errbound.c) stores the same
FILTER_NAME = b"errbound (pip install errbound; HDF5_PLUGIN_PATH=$(errbound h5 plugin-path))"
LAYOUT_VERSION = 1
USER_WORDS = 8  # cd_values the user's filter() call sets; set_local appends the rest
MODES = ("abs", "rel", "pw_rel", "psnr")
FLAG_REVERSE = 0x0100  # H5Z_FLAG_REVERSE: the filter decodes


@dataclass(frozen=True)
class FilterParams:
    """The filter parameters of one dataset, decoded from its ``cd_values``."""

    codec: str
    mode: str
    value: float
    abs_bound: float  # 0.0: derived per chunk
    dtype: np.dtype | None = None
    chunks: tuple[int, ...] | None = None
    pad: float = 0.0  # what HDF5 fills the unwritten parts of a chunk with

    def describe(self) -> str:
        text = f"{self.mode}={self.value:g}"
        if self.abs_bound and self.mode != "abs":
            text += f" (abs {self.abs_bound:.6g})"
        return text


def float_words(value: float) -> tuple[int, int]:
    return struct.unpack("<II", struct.pack("<d", value))


def words_float(lo: int, hi: int) -> float:
    return struct.unpack("<d", struct.pack("<II", lo, hi))[0]


def filter(  # noqa: A001 - the public name, as hdf5plugin names its helpers
    codec: str = "sz",
    *,
    abs=None,  # noqa: A002 - the public keyword
    rel=None,
    pw_rel=None,
    psnr=None,
    data: np.ndarray | None = None,
    abs_bound: float | None = None,
) -> dict:
    """``create_dataset`` keyword arguments that compress the dataset with errbound.

    Exactly one bound, as in :func:`errbound.compress`. With ``data`` (the whole dataset), a
    rel or psnr bound becomes one absolute bound from its finite range, so rel means the
    dataset's range exactly; without it each chunk derives its own (see the module docstring).
    ``abs_bound`` sets that absolute bound directly (what :mod:`errbound.h5tools` does).
    """
    bound = parse_bound(abs=abs, rel=rel, pw_rel=pw_rel, psnr=psnr)
    get_codec(codec)  # UnknownCodecError names the registered ones
    name = codec.encode("ascii")
    if len(name) > 8:
        raise UnsupportedInputError(f"codec name {codec!r} is longer than the 8 bytes the filter stores")
    if abs_bound is None and data is not None and bound.mode in ("rel", "psnr"):
        value_range = finite_range(np.asarray(data))
        abs_bound = bound.value * value_range if bound.mode == "rel" else value_range * 10.0 ** (-bound.value / 20)
    if bound.mode == "abs":
        abs_bound = bound.value
    if abs_bound is not None and not (abs_bound >= 0 and math.isfinite(abs_bound)):
        raise UnsupportedInputError(f"abs_bound must be a finite number >= 0, got {abs_bound!r}")
    name = name.ljust(8, b"\0")
    words = (
        LAYOUT_VERSION,
        *struct.unpack("<II", name),
        MODES.index(bound.mode) + 1,
        *float_words(bound.value),
        *float_words(float(abs_bound or 0.0)),
    )
    return {"compression": FILTER_ID, "compression_opts": words}


def parse_cd_values(values) -> FilterParams:
    """Decode a dataset's filter parameters; CorruptStreamError when they are not ours."""
    values = [int(v) for v in values]
    if len(values) < USER_WORDS or values[0] != LAYOUT_VERSION or not 1 <= values[3] <= len(MODES):
        raise CorruptStreamError(f"not errbound filter parameters (layout {values[:1]}, {len(values)} words)")
    codec = struct.pack("<II", values[1], values[2]).rstrip(b"\0").decode("ascii", "replace")
    params = dict(
        codec=codec,
        mode=MODES[values[3] - 1],
        value=words_float(values[4], values[5]),
        abs_bound=words_float(values[6], values[7]),
    )
    if len(values) > USER_WORDS:
        if len(values) < USER_WORDS + 4:  # kind, rank and the pad's two words at least
            raise CorruptStreamError(f"errbound filter parameters are truncated: {values}")
        kind, rank = values[8], values[9]
        if kind & 0xFF not in (4, 8) or not 1 <= rank <= 32 or len(values) != USER_WORDS + 4 + rank:
            raise CorruptStreamError(f"errbound filter parameters are inconsistent: {values}")
        dtype = np.dtype(f"{'>' if kind & 256 else '<'}f{kind & 0xFF}")
        params.update(dtype=dtype, chunks=tuple(values[10 : 10 + rank]), pad=words_float(*values[10 + rank :]))
    return FilterParams(**params)


# ---------------------------------------------------------------------------------------------
# the codec work, shared by the filter callbacks and the file tools' direct chunk writes


def _kernel_view(chunk: np.ndarray) -> np.ndarray:
    """Drop length-1 axes (predictors see real neighbours) and fold leading axes past 4-D."""
    shape = [n for n in chunk.shape if n > 1] or [chunk.size]
    while len(shape) > MAX_DIMS:
        shape[:2] = [shape[0] * shape[1]]
    return chunk.reshape(shape)


def chunk_abs_bound(chunk: np.ndarray, params: FilterParams) -> float:
    """The absolute bound this chunk is compressed with (abs, rel and psnr modes)."""
    if params.abs_bound > 0 or params.mode == "abs":
        return params.abs_bound or params.value
    data = chunk[chunk != chunk.dtype.type(params.pad)]  # padding is not data (NaN padding: finite_range skips it)
    value_range = finite_range(data)
    if params.mode == "rel":
        return params.value * value_range
    return value_range * 10.0 ** (-params.value / 20.0)


def encode_chunk(chunk: np.ndarray, params: FilterParams) -> bytes:
    """One full chunk (padded edge chunks included) as an errbound stream."""
    view = _kernel_view(np.ascontiguousarray(chunk))
    if params.mode == "pw_rel":
        return compress(view, params.codec, pw_rel=params.value)
    eb = chunk_abs_bound(chunk, params)
    if not (eb > 0 and math.isfinite(eb)):  # constant (or empty) data: nothing to trade, store it exactly
        return compress(view, "raw", abs=1.0)
    return compress(view, params.codec, abs=eb)


def decode_chunk(blob, dtype: np.dtype, count: int) -> np.ndarray:
    """Decode one chunk's stream and check that it is what the dataset expects (a stream that
    declares a larger array than the chunk is refused before it is decoded)."""
    values = decompress(blob, max_bytes=count * np.dtype(dtype).itemsize)
    if values.dtype != dtype or values.size != count:
        raise CorruptStreamError(
            f"chunk decodes to {values.size} {values.dtype} values, the dataset expects {count} {dtype}"
        )
    return np.ascontiguousarray(values).reshape(-1)


def run_filter(flags: int, cd_values, data) -> np.ndarray | bytes:
    """What an HDF5 filter callback does with one chunk, whoever calls it (the in-process
    registration, the plugin): decode a stream (``flags & FLAG_REVERSE``) into the chunk's
    values, or encode the chunk's bytes into a stream. ``data``: the bytes HDF5 handed over."""
    params = parse_cd_values(cd_values)
    if params.dtype is None:
        raise CorruptStreamError("errbound filter parameters lack the chunk shape (set_local did not run)")
    count = math.prod(params.chunks)
    if flags & FLAG_REVERSE:
        return decode_chunk(data, params.dtype, count)
    if len(data) != count * params.dtype.itemsize:
        raise UnsupportedInputError(f"chunk of {len(data)} bytes, expected {count * params.dtype.itemsize}")
    return encode_chunk(np.frombuffer(data, params.dtype).reshape(params.chunks), params)
