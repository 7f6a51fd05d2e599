"""First-order Lorenzo predictor with linear quantization, 1-4 D.

The prediction of a point is the inclusion-exclusion sum over the corner of the hypercube
behind it (``x[i-1,j] + x[i,j-1] - x[i-1,j-1]`` in 2-D), read from reconstructed values, so
it is exact from the decoder's point of view. It wins over interpolation on rough data at
tight bounds, where the fine levels of interpolation predict from far-away points.
"""

from __future__ import annotations

import math

import numba
import numpy as np

from ..layout import kernel_array
from .interpolation import _quantize_point

NAME = "lorenzo"
VERSION = 1


@numba.njit(cache=True, nogil=True, inline="always")
def _visit(w, idx, pred, encode, step, inv_step, eb, radius, codes, nc, unpred, nu):
    if encode:
        if math.isfinite(pred):
            return _quantize_point(w, idx, pred, step, inv_step, eb, radius, codes, nc, unpred, nu)
        codes[nc] = 0
        unpred[nu] = w[idx]
        return nu + 1
    c = codes[nc]
    if c == 0:
        w[idx] = unpred[nu]
        return nu + 1
    w[idx] = pred + (c - radius) * step
    return nu


@numba.njit(cache=True, nogil=True)
def lorenzo_kernel(p, encode, eb, radius, codes, unpred):
    """p: 4-D array padded with one leading zero layer on every axis, so the predictor
    needs no edge cases; the zero layer plays the role of 'outside the array'."""
    m0, m1, m2, m3 = p.shape
    w = p.reshape(-1)
    s2 = m3
    s1 = m2 * m3
    s0 = m1 * m2 * m3
    step = 2.0 * eb
    inv_step = 1.0 / step
    nc = 0
    nu = 0
    for i0 in range(1, m0):
        for i1 in range(1, m1):
            for i2 in range(1, m2):
                base = i0 * s0 + i1 * s1 + i2 * s2
                for i3 in range(1, m3):
                    i = base + i3
                    # inclusion-exclusion over the 15 corners behind the point, in a fixed order
                    a = np.float64(w[i - s2]) + np.float64(w[i - s1]) + np.float64(w[i - s0])
                    b = (np.float64(w[i - 1 - s2]) + np.float64(w[i - 1 - s1]) + np.float64(w[i - 1 - s0])
                         + np.float64(w[i - s2 - s1]) + np.float64(w[i - s2 - s0]) + np.float64(w[i - s1 - s0]))
                    c = (np.float64(w[i - 1 - s2 - s1]) + np.float64(w[i - 1 - s2 - s0])
                         + np.float64(w[i - 1 - s1 - s0]) + np.float64(w[i - s2 - s1 - s0]))
                    d = np.float64(w[i - 1 - s2 - s1 - s0])
                    # the point just reconstructed enters last: it is the only term on the
                    # sequential dependency chain, so the rest overlaps with the previous point
                    pred = ((a - b) + (c - d)) + np.float64(w[i - 1])
                    nu = _visit(w, i, pred, encode, step, inv_step, eb, radius, codes, nc, unpred, nu)
                    nc += 1
    return nc, nu


# The 2-D and 3-D kernels take rows as separate array views: LLVM then keeps the running
# reconstruction in registers instead of re-deriving every offset (measured 730 MB/s
# against 260 MB/s for decoding with flat offsets). The summation order is part of the
# format: the point just reconstructed enters last.

@numba.njit(cache=True, nogil=True)
def lorenzo_kernel_3d(p, encode, eb, radius, codes, unpred):
    m0, m1, m2 = p.shape
    step = 2.0 * eb
    inv_step = 1.0 / step
    nc = 0
    nu = 0
    for i0 in range(1, m0):
        for i1 in range(1, m1):
            row = p[i0, i1]
            up = p[i0, i1 - 1]
            back = p[i0 - 1, i1]
            corner = p[i0 - 1, i1 - 1]
            for j in range(1, m2):
                pred = (((np.float64(up[j]) + np.float64(back[j]))
                         - (np.float64(up[j - 1]) + np.float64(back[j - 1]) + np.float64(corner[j])))
                        + np.float64(corner[j - 1])) + np.float64(row[j - 1])
                nu = _visit(row, j, pred, encode, step, inv_step, eb, radius, codes, nc, unpred, nu)
                nc += 1
    return nc, nu


@numba.njit(cache=True, nogil=True)
def lorenzo_kernel_2d(p, encode, eb, radius, codes, unpred):
    m0, m1 = p.shape
    step = 2.0 * eb
    inv_step = 1.0 / step
    nc = 0
    nu = 0
    for i0 in range(1, m0):
        row = p[i0]
        up = p[i0 - 1]
        for j in range(1, m1):
            pred = (np.float64(up[j]) - np.float64(up[j - 1])) + np.float64(row[j - 1])
            nu = _visit(row, j, pred, encode, step, inv_step, eb, radius, codes, nc, unpred, nu)
            nc += 1
    return nc, nu


@numba.njit(cache=True, nogil=True)
def lorenzo_kernel_1d(p, encode, eb, radius, codes, unpred):
    w = p.reshape(-1)
    step = 2.0 * eb
    inv_step = 1.0 / step
    nu = 0
    for i in range(1, w.shape[0]):
        nu = _visit(w, i, np.float64(w[i - 1]), encode, step, inv_step, eb, radius, codes, i - 1, unpred, nu)
    return w.shape[0] - 1, nu


_KERNELS = {1: lorenzo_kernel_1d, 2: lorenzo_kernel_2d, 3: lorenzo_kernel_3d, 4: lorenzo_kernel}


def _live_shape(shape):
    live = tuple(int(n) for n in shape if n > 1)
    return live or (1,)


def _run(values, shape, dtype, encode, eb, radius, codes, unpred):
    live = _live_shape(shape)
    padded = np.zeros(tuple(n + 1 for n in live), dtype)
    inner = tuple(slice(1, None) for _ in live)
    if encode:
        padded[inner] = values.reshape(live)
    nc, nu = _KERNELS[len(live)](padded, encode, eb, radius, codes, unpred)
    return padded[inner], nu


class LorenzoPredictor:
    name = NAME
    version = VERSION

    def __init__(self, radius: int = 32768):
        self.radius = int(radius)

    def params(self) -> dict:
        return {"radius": self.radius}

    @classmethod
    def from_params(cls, p: dict) -> LorenzoPredictor:
        return cls(p["radius"])

    def encode(self, data: np.ndarray, eb: float):
        codes = np.empty(data.size, np.int32)
        unpred = np.empty(data.size, data.dtype)
        recon, nu = _run(data, data.shape, data.dtype, True, eb, self.radius, codes, unpred)
        return codes, unpred[:nu], recon.reshape(data.shape)

    def expected_codes(self, shape) -> int:
        return math.prod(shape)

    def expected_unpredictable(self, codes: np.ndarray, shape) -> int:
        return int(np.count_nonzero(codes == 0))

    def decode(self, codes, unpred, shape, dtype, eb: float) -> np.ndarray:
        codes = kernel_array(codes, np.int32)
        unpred = kernel_array(unpred, dtype)
        recon, _ = _run(None, shape, dtype, False, eb, self.radius, codes, unpred)
        return np.ascontiguousarray(recon).reshape(shape)
