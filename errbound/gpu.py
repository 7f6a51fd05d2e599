"""The fz pipeline on a CUDA GPU through CuPy (optional: ``pip install errbound[gpu]``).

The device runs prequantization, integer Lorenzo and the bit shuffle (kernels in
``stages/fz_cuda.py``); only the block bitmaps and bit planes travel to the host, where the
same zstd and container code as on the CPU finish the stream. Decoding mirrors it. Every
policy decision (integer width, dense plane count) is computed from the same numbers as on
the CPU, so CPU and GPU streams are byte-identical.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from .errors import CorruptStreamError, UnsupportedInputError
from .quantized import CodeStreamParts, pack_code_stream, unpack_code_stream
from .stages import bitshuffle
from .stages.fz_cuda import KERNEL_NAMES, kernel_source
from .stages.integer_lorenzo import as_3d
from .stages.prequantize import INT32_LIMIT, INT64_LIMIT

THREADS = 256


def cupy_module():
    """CuPy if it is installed and sees a GPU, else None."""
    try:
        import cupy
    except ImportError:
        return None
    try:
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
    except Exception:  # no driver, no device
        return None
    return cupy


def is_device_array(obj) -> bool:
    return type(obj).__module__.split(".")[0] == "cupy"


@cache
def _kernels(real: str, code: str):
    cp = cupy_module()
    module = cp.RawModule(code=kernel_source(real, code), options=("--fmad=false",))
    return {name: module.get_function(name) for name in KERNEL_NAMES}


def _launch(kernel, count: int, args: tuple) -> None:
    if count:
        kernel(((count + THREADS - 1) // THREADS,), (THREADS,), args)


def finite_range(x) -> float:
    cp = cupy_module()
    lo, hi = float(cp.min(x)), float(cp.max(x))
    if math.isfinite(lo) and math.isfinite(hi):
        return float(np.float64(hi) - np.float64(lo))
    finite = x[cp.isfinite(x)]
    if finite.size == 0:
        return 0.0
    return float(np.float64(float(finite.max())) - np.float64(float(finite.min())))


def _integer_dtype(x, step: float) -> np.dtype:
    """Same rule as prequantize.integer_type_for, evaluated on the device."""
    cp = cupy_module()
    finite = cp.where(cp.isfinite(x), cp.abs(x), 0)
    finite_max = float(finite.max()) if finite.size else 0.0
    return np.dtype(np.int32) if finite_max / step < INT32_LIMIT else np.dtype(np.int64)


def fz_encode(x, eb: float):
    """Encode a C-contiguous device array. Returns (code stream bytes without CRC, outlier
    indices, outlier values, integer dtype), as quantized.quantize + encode_codes would."""
    cp = cupy_module()
    flat = x.reshape(-1)
    n = flat.size
    real = str(flat.dtype)
    step = 2.0 * eb
    code_dtype = _integer_dtype(flat, step)
    limit = float(INT32_LIMIT if code_dtype == np.int32 else INT64_LIMIT)
    k = _kernels(real, str(code_dtype))
    q = cp.empty(n, code_dtype)
    bad = cp.empty(n, cp.uint8)
    _launch(k["fz_prequantize"], n, (flat, np.int64(n), np.float64(step), np.float64(1.0 / step),
                                      np.float64(eb), np.float64(limit), q, bad))
    outlier_idx = cp.flatnonzero(bad)
    outlier_val = flat[outlier_idx]
    n0, n1, n2 = as_3d(x.shape)
    r = cp.empty_like(q)
    _launch(k["fz_residual"], n, (q, r, np.int64(n0), np.int64(n1), np.int64(n2)))
    nblocks = (n + bitshuffle.BLOCK - 1) // bitshuffle.BLOCK
    masks = cp.empty(nblocks, cp.uint64)
    _launch(k["fz_block_masks"], nblocks, (r, np.int64(n), masks, np.int64(nblocks)))
    dense = _dense_plane_count(r, nblocks)
    masks_host = cp.asnumpy(masks)
    dense_off, sparse_off = bitshuffle._plane_offsets(masks_host, dense)
    dense_planes = cp.empty(int(dense_off[-1]), cp.uint32)
    sparse_planes = cp.empty(int(sparse_off[-1]), cp.uint32)
    bits = code_dtype.itemsize * 8
    _launch(k["fz_shuffle"], nblocks * bits * bitshuffle.WORDS,
            (r, np.int64(n), masks, cp.asarray(dense_off), cp.asarray(sparse_off), np.int32(dense),
             dense_planes, sparse_planes, np.int64(nblocks)))
    parts = CodeStreamParts(tuple(x.shape), code_dtype, bits, dense,
                            masks_host.astype(np.uint32 if bits == 32 else np.uint64),
                            cp.asnumpy(dense_planes), cp.asnumpy(sparse_planes),
                            np.zeros(0, np.int64), np.zeros(0, code_dtype))
    return (pack_code_stream(parts, checksum=False), cp.asnumpy(outlier_idx).astype(np.int64),
            cp.asnumpy(outlier_val), code_dtype)


def _dense_plane_count(r, nblocks: int) -> int:
    """bitshuffle.dense_plane_count on the same sampled blocks, gathered to the host."""
    cp = cupy_module()
    starts = cp.asarray(bitshuffle.density_sample(nblocks)) * bitshuffle.BLOCK
    idx = (starts[:, None] + cp.arange(bitshuffle.BLOCK, dtype=cp.int64)[None, :]).reshape(-1)
    sample = cp.asnumpy(r[idx[idx < r.size]])
    return bitshuffle.dense_plane_count(sample)


def fz_decode(code_stream, eb: float, dtype: np.dtype):
    """Decode a code stream to a flat device array of `dtype` (outliers not yet applied)."""
    cp = cupy_module()
    parts = unpack_code_stream(code_stream)
    if not parts.predicted:
        raise CorruptStreamError("fz code stream was written without the Lorenzo step its stages name")
    n = math.prod(parts.shape)
    k = _kernels(str(np.dtype(dtype)), str(parts.dtype))
    masks = parts.masks.astype(np.uint64)
    dense_off, sparse_off = bitshuffle._plane_offsets(masks, parts.dense)
    r = cp.empty(n, parts.dtype)
    _launch(k["fz_unshuffle"], n, (cp.asarray(masks), cp.asarray(dense_off), cp.asarray(sparse_off),
                                    np.int32(parts.dense), cp.asarray(parts.dense_planes),
                                    cp.asarray(parts.sparse_planes), np.int64(n), r))
    if parts.wide_index.size:
        r[cp.asarray(parts.wide_index)] = cp.asarray(parts.wide_value)
    # the inverse of the mixed difference is a running sum along each axis; int64 sums cast
    # back to the code type wrap exactly as the CPU's modular arithmetic does
    q = r.reshape(as_3d(parts.shape)).astype(cp.int64)
    for axis in (2, 1, 0):
        q = cp.cumsum(q, axis=axis)
    q = q.astype(parts.dtype).reshape(-1)
    out = cp.empty(n, dtype)
    _launch(k["fz_dequantize"], n, (q, np.int64(n), np.float64(2.0 * eb), out))
    return out


def require_cupy():
    cp = cupy_module()
    if cp is None:
        raise UnsupportedInputError("a GPU decode needs CuPy and a CUDA device (pip install errbound[gpu])")
    return cp
