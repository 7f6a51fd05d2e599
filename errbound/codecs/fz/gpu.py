"""The fz pipeline on a CUDA GPU through CuPy (optional: ``pip install errbound[gpu]``).

The device runs prequantization, integer Lorenzo and the bit shuffle (each stage's kernels
in its ``.cu`` file beside its numba kernels: ``stages/quantizers/prequantize.cu``,
``stages/predictors/integer_lorenzo.cu``, ``stages/coders/bitshuffle.cu``); only the block bitmaps and bit planes travel to the host, where the
same zstd and container code as on the CPU finish the stream. Decoding mirrors it. Every
policy decision (integer width, dense plane count) is computed from the same numbers as on
the CPU, so CPU and GPU streams are byte-identical.
"""

from __future__ import annotations

import math
from functools import cache
from importlib import resources

import numpy as np

from ...device import cupy_module, launch
from ...errors import CorruptStreamError
from ...quantized import CodeStreamParts, pack_code_stream, unpack_code_stream
from ...stages.coders import bitshuffle
from ...stages.predictors.integer_lorenzo import as_3d
from ...stages.quantizers.prequantize import INT32_LIMIT, INT64_LIMIT

# (float dtype, code dtype) -> the C types of real_t, code_t, ucode_t and the code width
_TYPES = {
    ("float32", "int32"): ("float", "int", "unsigned int", 32),
    ("float32", "int64"): ("float", "long long", "unsigned long long", 64),
    ("float64", "int32"): ("double", "int", "unsigned int", 32),
    ("float64", "int64"): ("double", "long long", "unsigned long long", 64),
}
_PRELUDE_CUDA = """
#define GLOBAL_INDEX() ((long long)blockIdx.x * blockDim.x + threadIdx.x)
#define POPCOUNT64(x) __popcll(x)
#define KERNEL extern "C" __global__
"""
# each stage's CUDA source, in pipeline order (package, file)
_SOURCES = (
    ("errbound.stages.quantizers", "prequantize.cu"),
    ("errbound.stages.predictors", "integer_lorenzo.cu"),
    ("errbound.stages.coders", "bitshuffle.cu"),
)
KERNEL_NAMES = ("fz_prequantize", "fz_dequantize", "fz_residual", "fz_block_masks", "fz_shuffle", "fz_unshuffle")


def kernel_source(real: str, code: str, prelude: str = _PRELUDE_CUDA) -> str:
    """The fz kernels for one (float dtype, code dtype) pair, e.g. ("float32", "int32"): the
    stages' CUDA sources after the typedefs they share. The source is plain C with three
    macros (``prelude``), so that the tests can also compile it with g++ and check it
    against the numba kernels on a machine without a GPU (tests/test_gpu_kernels.py).

    Each kernel computes, per thread, exactly the expression its CPU twin computes per
    element: the same float64 operations with round-to-nearest intrinsics (``__dmul_rn`` /
    ``__dadd_rn`` are never contracted into FMAs, and the module is also built with
    ``--fmad=false``), the same modular integer arithmetic, the same stream layout."""
    c_real, c_code, c_ucode, bits = _TYPES[(real, code)]
    types = (
        f"typedef {c_real} real_t;\ntypedef {c_code} code_t;\ntypedef {c_ucode} ucode_t;\n"
        f"#define BITS {bits}\n#define BLOCK_VALUES {bitshuffle.BLOCK}\n"
        f"#define WORDS_PER_PLANE {bitshuffle.WORDS}\n"
    )
    bodies = [resources.files(package).joinpath(name).read_text() for package, name in _SOURCES]
    return prelude + types + "\n".join(bodies)


@cache
def _kernels(real: str, code: str):
    cp = cupy_module()
    module = cp.RawModule(code=kernel_source(real, code), options=("--fmad=false",))
    return {name: module.get_function(name) for name in KERNEL_NAMES}


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
    launch(
        k["fz_prequantize"],
        n,
        (flat, np.int64(n), np.float64(step), np.float64(1.0 / step), np.float64(eb), np.float64(limit), q, bad),
    )
    outlier_idx = cp.flatnonzero(bad)
    outlier_val = flat[outlier_idx]
    n0, n1, n2 = as_3d(x.shape)
    r = cp.empty_like(q)
    launch(k["fz_residual"], n, (q, r, np.int64(n0), np.int64(n1), np.int64(n2)))
    nblocks = (n + bitshuffle.BLOCK - 1) // bitshuffle.BLOCK
    masks = cp.empty(nblocks, cp.uint64)
    launch(k["fz_block_masks"], nblocks, (r, np.int64(n), masks, np.int64(nblocks)))
    dense = _dense_plane_count(r, nblocks)
    masks_host = cp.asnumpy(masks)
    dense_off, sparse_off = bitshuffle.plane_offsets(masks_host, dense)
    dense_planes = cp.empty(int(dense_off[-1]), cp.uint32)
    sparse_planes = cp.empty(int(sparse_off[-1]), cp.uint32)
    bits = code_dtype.itemsize * 8
    launch(
        k["fz_shuffle"],
        nblocks * bits * bitshuffle.WORDS,
        (
            r,
            np.int64(n),
            masks,
            cp.asarray(dense_off),
            cp.asarray(sparse_off),
            np.int32(dense),
            dense_planes,
            sparse_planes,
            np.int64(nblocks),
        ),
    )
    parts = CodeStreamParts(
        tuple(x.shape),
        code_dtype,
        bits,
        dense,
        masks_host.astype(np.uint32 if bits == 32 else np.uint64),
        cp.asnumpy(dense_planes),
        cp.asnumpy(sparse_planes),
        np.zeros(0, np.int64),
        np.zeros(0, code_dtype),
    )
    return (
        pack_code_stream(parts, checksum=False),
        cp.asnumpy(outlier_idx).astype(np.int64),
        cp.asnumpy(outlier_val),
        code_dtype,
    )


def _dense_plane_count(r, nblocks: int) -> int:
    """bitshuffle.dense_plane_count on the same sampled blocks, gathered to the host."""
    cp = cupy_module()
    starts = cp.asarray(bitshuffle.density_sample(nblocks)) * bitshuffle.BLOCK
    idx = (starts[:, None] + cp.arange(bitshuffle.BLOCK, dtype=cp.int64)[None, :]).reshape(-1)
    sample = cp.asnumpy(r[idx[idx < r.size]])
    return bitshuffle.dense_plane_count(sample)


def fz_decode(code_stream, eb: float, dtype: np.dtype, shape: tuple[int, ...]):
    """Decode a code stream of an array of ``shape`` to a flat device array of `dtype`
    (outliers not yet applied)."""
    cp = cupy_module()
    parts = unpack_code_stream(code_stream, math.prod(shape))
    if not parts.predicted:
        raise CorruptStreamError("fz code stream was written without the Lorenzo step its stages name")
    if tuple(parts.shape) != tuple(shape):  # the running sums follow the code stream's axes
        raise CorruptStreamError("fz code stream does not match the stream header")
    n = math.prod(parts.shape)
    k = _kernels(str(np.dtype(dtype)), str(parts.dtype))
    masks = parts.masks.astype(np.uint64)
    dense_off, sparse_off = bitshuffle.plane_offsets(masks, parts.dense)
    r = cp.empty(n, parts.dtype)
    launch(
        k["fz_unshuffle"],
        n,
        (
            cp.asarray(masks),
            cp.asarray(dense_off),
            cp.asarray(sparse_off),
            np.int32(parts.dense),
            cp.asarray(parts.dense_planes),
            cp.asarray(parts.sparse_planes),
            np.int64(n),
            r,
        ),
    )
    if parts.wide_index.size:
        r[cp.asarray(parts.wide_index)] = cp.asarray(parts.wide_value)
    # the inverse of the mixed difference is a running sum along each axis; int64 sums cast
    # back to the code type wrap exactly as the CPU's modular arithmetic does
    q = r.reshape(as_3d(parts.shape)).astype(cp.int64)
    for axis in (2, 1, 0):
        q = cp.cumsum(q, axis=axis)
    q = q.astype(parts.dtype).reshape(-1)
    out = cp.empty(n, dtype)
    launch(k["fz_dequantize"], n, (q, np.int64(n), np.float64(2.0 * eb), out))
    return out
