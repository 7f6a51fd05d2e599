"""fz on a real GPU (CuPy): byte-identical streams both ways. Skips where CuPy sees no GPU;
tests/test_gpu_kernels.py checks the same kernels on the CPU everywhere."""

from __future__ import annotations

import numpy as np
import pytest

import errbound
from errbound import device as gpu
from errbound.datasets import demo_field

cp = gpu.cupy_module()
pytestmark = pytest.mark.skipif(cp is None, reason="CuPy with a CUDA device is not available")

CASES = [
    (np.float32, (64, 128, 128), "rel", 1e-3),
    (np.float32, (999, 999), "rel", 1e-4),
    (np.float64, (200_000,), "abs", 1e-9),
    (np.float32, (3, 4, 5, 6), "rel", 1e-2),
]


@pytest.mark.parametrize("dtype,shape,mode,value", CASES)
def test_gpu_stream_is_byte_identical_to_cpu_stream(dtype, shape, mode, value):
    x = demo_field(shape, seed=7).astype(dtype)
    x.reshape(-1)[[5, 17]] = [np.nan, -np.inf]
    on_cpu = errbound.compress(x, codec="fz", **{mode: value})
    on_gpu = errbound.compress(cp.asarray(x), codec="fz", **{mode: value})
    assert on_gpu == on_cpu


@pytest.mark.parametrize("dtype,shape,mode,value", CASES)
def test_gpu_decode_equals_cpu_decode_and_holds_the_bound(dtype, shape, mode, value):
    x = demo_field(shape, seed=8).astype(dtype)
    blob = errbound.compress(x, codec="fz", **{mode: value})
    host = errbound.decompress(blob)
    device = errbound.decompress(blob, device="gpu")
    assert isinstance(device, cp.ndarray)
    assert np.array_equal(cp.asnumpy(device).view(np.uint8), host.view(np.uint8))
    bound = value if mode == "abs" else value * float(x.max() - x.min())
    assert float(np.max(np.abs(host.astype(np.float64) - x))) <= bound


def test_fortran_ordered_device_arrays_round_trip_in_their_order():
    x = np.asfortranarray(demo_field((40, 50, 60), seed=9))
    blob = errbound.compress(cp.asarray(x, order="F"), codec="fz", abs=1e-3)
    assert blob == errbound.compress(x, codec="fz", abs=1e-3)
    y = errbound.decompress(blob, device="gpu")
    assert y.flags.f_contiguous and np.max(np.abs(cp.asnumpy(y) - x)) <= 1e-3


@pytest.mark.parametrize("codec", ["fz", "sz"])  # a GPU decoder, and the host fallback
def test_gpu_decode_caps_the_output_like_the_host(codec):
    x = demo_field((32, 32, 32), seed=10)
    blob = errbound.compress(x, codec=codec, abs=1e-3)
    with pytest.raises(errbound.errors.OutputLimitError, match="max_bytes"):
        errbound.decompress(blob, device="gpu", max_bytes=x.nbytes - 1)
    with pytest.raises(errbound.errors.UnsupportedInputError, match="out="):
        errbound.decompress(blob, out=cp.empty((32, 32, 31), np.float32))
    assert errbound.decompress(blob, device="gpu", max_bytes=x.nbytes).shape == x.shape
