"""CuPy arrays: whether one was given, and CuPy itself when it sees a GPU (optional:
``pip install errbound[gpu]``). The GPU kernels live beside their stages' CPU kernels; the
pipelines that run them beside their codecs (``codecs/fz/gpu.py``)."""

from __future__ import annotations

import math

import numpy as np

from .errors import UnsupportedInputError

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


def finite_range(x) -> float:
    cp = cupy_module()
    lo, hi = float(cp.min(x)), float(cp.max(x))
    if math.isfinite(lo) and math.isfinite(hi):
        return float(np.float64(hi) - np.float64(lo))
    finite = x[cp.isfinite(x)]
    if finite.size == 0:
        return 0.0
    return float(np.float64(float(finite.max())) - np.float64(float(finite.min())))


def require_cupy():
    cp = cupy_module()
    if cp is None:
        raise UnsupportedInputError("a GPU decode needs CuPy and a CUDA device (pip install errbound[gpu])")
    return cp


def launch(kernel, count: int, args: tuple) -> None:
    """Run a one-thread-per-item kernel over ``count`` items."""
    if count:
        kernel(((count + THREADS - 1) // THREADS,), (THREADS,), args)
