"""How an array's memory is laid out for the kernels: C-contiguous, viewed as at most 4-D."""

from __future__ import annotations

import numpy as np

MAX_DIMS = 4


def as_4d_shape(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Pad a shape with leading 1s to four axes (a length-1 axis costs the kernels nothing)."""
    shape = tuple(int(n) for n in shape)
    return (1,) * (MAX_DIMS - len(shape)) + shape


def to_kernel_layout(data: np.ndarray) -> tuple[np.ndarray, str]:
    """Return a C-contiguous array holding the same values, and the memory order to restore.

    A Fortran-ordered array is compressed as its (C-contiguous) transpose, so neither a copy
    nor a change of the traversal is needed; anything else is made contiguous in C order.
    """
    if data.ndim >= 2 and data.flags.f_contiguous and not data.flags.c_contiguous:
        return data.T, "F"
    return np.ascontiguousarray(data), "C"


def from_kernel_layout(work: np.ndarray, order: str) -> np.ndarray:
    return work.T if order == "F" else work


def kernel_array(a: np.ndarray, dtype) -> np.ndarray:
    """A writable C-contiguous array of dtype: numba compiles one signature per array
    flavour, so readonly buffers (np.frombuffer) are copied rather than compiled for."""
    a = np.asarray(a)
    if a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable:
        return a
    return np.array(a, dtype=dtype, order="C", copy=True)
