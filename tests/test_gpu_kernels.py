"""The fz CUDA kernels, compiled with g++ and run thread by thread on the CPU, must reproduce
the numba kernels bit for bit. This checks the kernels' arithmetic and stream layout on any
machine; tests/test_gpu.py runs the real thing where CuPy sees a GPU.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess

import numpy as np
import pytest

from errbound.codecs.fz.gpu import kernel_source
from errbound.quantized import decode_codes, encode_codes, quantize, unpack_code_stream
from errbound.stages.coders import bitshuffle
from errbound.stages.predictors.integer_lorenzo import as_3d, lorenzo_residuals
from errbound.stages.quantizers.prequantize import INT32_LIMIT, INT64_LIMIT

# GLOBAL_INDEX is the loop variable of the launcher below; no FMA contraction, as on the GPU
_EMULATION_PRELUDE = """
#include <cmath>
using std::floor; using std::fabs; using std::signbit;
static long long g_index;
#define GLOBAL_INDEX() (g_index)
#define POPCOUNT64(x) __builtin_popcountll(x)
#define KERNEL extern "C"
#define __device__ static
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
extern "C" void set_index(long long i) { g_index = i; }
"""


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    compiler = shutil.which("g++") or shutil.which("c++")
    if compiler is None:
        pytest.skip("no C++ compiler to emulate the CUDA kernels")
    libs = {}
    for real, code in (("float32", "int32"), ("float64", "int64")):
        src = tmp_path_factory.mktemp("cuda") / f"fz_{real}_{code}.cpp"
        src.write_text(kernel_source(real, code, prelude=_EMULATION_PRELUDE))
        so = src.with_suffix(".so")
        subprocess.run(
            [compiler, "-O1", "-ffp-contract=off", "-shared", "-fPIC", str(src), "-o", str(so)],
            check=True,
            capture_output=True,
        )
        libs[(real, code)] = ctypes.CDLL(str(so))
    return libs


def _run(lib, name, count, *args):
    """Launch `name` over `count` threads, one after another."""
    fn = getattr(lib, name)
    converted = []
    for a in args:
        if isinstance(a, np.ndarray):
            converted.append(ctypes.c_void_p(a.ctypes.data))
        elif isinstance(a, float):
            converted.append(ctypes.c_double(a))
        else:
            converted.append(ctypes.c_longlong(a) if not isinstance(a, np.int32) else ctypes.c_int(int(a)))
    for i in range(count):
        lib.set_index(ctypes.c_longlong(i))
        fn(*converted)


def _field(dtype, shape, seed):
    rng = np.random.default_rng(seed)
    x = np.cumsum(rng.standard_normal(shape), axis=-1).astype(dtype)
    flat = x.reshape(-1)
    flat[[3, 10, 11]] = [np.nan, np.inf, -0.0]
    flat[20] = 1e30  # off the grid
    return x


@pytest.mark.parametrize("real,code", [("float32", "int32"), ("float64", "int64")])
@pytest.mark.parametrize("shape", [(700,), (23, 41), (5, 9, 37)])
def test_emulated_cuda_kernels_reproduce_the_cpu_stream(emulated, real, code, shape):
    lib = emulated[(real, code)]
    x = _field(np.dtype(real), shape, seed=len(shape))
    eb = 0.01
    step = 2 * eb
    n = x.size
    cpu = quantize(x, eb, int_dtype=code)

    q = np.empty(n, code)
    bad = np.empty(n, np.uint8)
    limit = float(INT32_LIMIT if code == "int32" else INT64_LIMIT)
    _run(lib, "fz_prequantize", n, x.reshape(-1), n, step, 1.0 / step, eb, limit, q, bad)
    assert np.array_equal(q, cpu.codes)
    assert np.array_equal(np.flatnonzero(bad), cpu.outlier_index)

    r = np.empty_like(q)
    _run(lib, "fz_residual", n, q, r, *as_3d(shape))
    assert np.array_equal(r, lorenzo_residuals(cpu.codes, shape))

    nblocks = (n + bitshuffle.BLOCK - 1) // bitshuffle.BLOCK
    masks = np.empty(nblocks, np.uint64)
    _run(lib, "fz_block_masks", nblocks, r, n, masks, nblocks)
    parts = unpack_code_stream(encode_codes(cpu.codes, shape))
    assert np.array_equal(masks, parts.masks.astype(np.uint64))

    dense_off, sparse_off = bitshuffle.plane_offsets(masks, parts.dense)
    dense_planes = np.zeros(int(dense_off[-1]), np.uint32)
    sparse_planes = np.zeros(int(sparse_off[-1]), np.uint32)
    bits = np.dtype(code).itemsize * 8
    _run(
        lib,
        "fz_shuffle",
        nblocks * bits * bitshuffle.WORDS,
        r,
        n,
        masks,
        dense_off,
        sparse_off,
        np.int32(parts.dense),
        dense_planes,
        sparse_planes,
        nblocks,
    )
    assert np.array_equal(dense_planes, parts.dense_planes)
    assert np.array_equal(sparse_planes, parts.sparse_planes)

    back = np.empty(n, code)
    _run(
        lib,
        "fz_unshuffle",
        n,
        masks,
        dense_off,
        sparse_off,
        np.int32(parts.dense),
        parts.dense_planes.copy(),
        parts.sparse_planes.copy(),
        n,
        back,
    )
    assert np.array_equal(back, r)

    # the GPU's inverse Lorenzo: running sums along each axis, wrapping to the code type
    restored = back.reshape(as_3d(shape)).astype(np.int64)
    for axis in (2, 1, 0):
        restored = np.cumsum(restored, axis=axis)
    assert np.array_equal(restored.astype(code).reshape(-1), decode_codes(encode_codes(cpu.codes, shape)).reshape(-1))

    out = np.empty(n, real)
    _run(lib, "fz_dequantize", n, cpu.codes, n, step, out)
    from errbound.quantized import dequantize

    assert np.array_equal(out.view(np.uint8), dequantize(cpu.codes, eb, real).view(np.uint8))
