"""The error contract in numbers: the common quantization grid of a reduction.

Reductions quantize every rank's input once on one grid, add (or max) the integer codes
exactly, and decode once:

    SUM:      step <= 2 * (bound - slack) / N     (N ranks each add at most step/2)
    MAX/MIN:  step <= 2 * (bound - slack)         (rounding is monotone: max of codes = code of max)

``slack`` reserves the float arithmetic: half an ulp of the largest possible result for the
final cast to float32 (none for float64), plus a few float64 roundings (2**-53 relative)
in x / step and in the decode.

The step is one of two kinds, chosen so that the decode is exact or correctly rounded:

* below 1, ``1 / M`` for an integer M: integer-valued inputs (counts, masks, mpi4py's own
  test data) have integer codes, so their sums and maxima come back exact;
* otherwise ``K * 2**e`` with an 8-bit K: codes * step is an exact float64 product.

Either way the step is within 1/128 (usually far less) of the largest one allowed; a plain
power of two would waste up to half of it: 9 % more bytes on the shared fields (measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba
import numpy as np
from numba import prange

from errbound import quantized as qz

from ..compute import compute
from ..settings import SUM


@dataclass(frozen=True)
class Grid:
    """The common quantization grid of a reduction: codes are round(x / step)."""

    step: float  # the step; for a reciprocal grid, the nearest float to 1 / divisor
    int_dtype: np.dtype  # int32 or int64, wide enough for the reduced codes
    divisor: int = 0  # M > 0: a reciprocal grid, step exactly 1 / M, decoded as codes / M

    def decode(self, codes: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """codes * step in dtype: correctly rounded (reciprocal grid) or exact, then one cast."""
        out = np.empty(codes.shape, dtype)
        with compute():
            self.decode_into(codes, out)
        return out

    def decode_into(self, codes: np.ndarray, out: np.ndarray) -> None:
        """decode() written into out (contiguous, codes' size); the caller holds compute()."""
        if self.divisor:
            divide_into(codes, self.divisor, out)
        else:
            # dequantize multiplies by 2 * eb: eb = step / 2 gives exactly step again
            qz.dequantize(codes.reshape(-1), self.step / 2.0, out=out.reshape(-1))

    def decode_residuals_into(self, residuals: np.ndarray, shape: tuple[int, ...], out: np.ndarray) -> None:
        """decode_into(unpredict(residuals)) in one pass (residuals become the codes); the
        caller holds compute()."""
        if self.divisor:
            qz.dequantize_residuals(residuals, shape, out.reshape(-1), divisor=self.divisor)
        else:
            qz.dequantize_residuals(residuals, shape, out.reshape(-1), eb=self.step / 2.0)


_U = 2.0**-53  # unit roundoff of float64


def reduction_grid(code: int, nranks: int, bound: float, gmax: float, dtype: np.dtype) -> Grid | None:
    """The grid meeting `bound` on the final result, or None where plain MPI is the better choice
    (a bound at or below the float precision of the result, or codes too wide for int64)."""
    if not (bound > 0 and math.isfinite(bound) and math.isfinite(gmax)):
        return None
    terms = nranks if code == SUM else 1
    largest = terms * gmax + bound  # bounds |result| and every partial sum
    if largest >= float(np.finfo(dtype).max) / 2:
        return None
    cast = 0.5 * float(np.spacing(dtype.type(largest))) if dtype == np.float32 else 0.0
    # float64 wobble: x / step (<= 4.03 u |x| per term), the decode division (u |result|)
    slack = cast + 8 * _U * terms * gmax + 2 * _U * largest
    target = 2.0 * (bound - slack) / terms / (1.0 + 2.0**-50)  # the largest step allowed
    if not target > 0:
        return None
    if 2.0**-40 <= target < 1.0:
        divisor = math.ceil(1.0 / target)
        if 1.0 / divisor > target:  # the reciprocal rounded up: one more
            divisor += 1
        step, product_bits = 1.0 / divisor, 53
    else:
        exponent = math.frexp(target)[1] - 8  # target = m * 2**(exponent + 8), 0.5 <= m < 1
        multiple = math.floor(math.ldexp(target, -exponent))  # 128 <= multiple < 256
        step, divisor, product_bits = math.ldexp(multiple, exponent), 0, 45  # |codes * multiple| < 2**53
    if step < 2.0**-1000:  # keep steps and products clear of subnormals
        return None
    per_rank = gmax / step + 1.0
    total = terms * per_rank
    # quantize() caps int32 codes at 2**26; partial sums must stay inside the type, and
    # the decode must see the reduced codes exactly
    if per_rank < 2.0**25 and total < 2.0**30:
        return Grid(step, np.dtype(np.int32), divisor)
    if per_rank < 2.0**51 and total < 2.0**product_bits:
        return Grid(step, np.dtype(np.int64), divisor)
    return None


# ---------------------------------------------------------------------------------------------
# A reciprocal grid (step 1/M) decodes straight into the caller's buffer: the same bits as
# ``(codes / M).astype(dtype)`` (a correctly rounded float64 quotient, then one rounding), in
# place and in one pass; numpy's ``codes / M`` makes a float64 temporary and a second pass
# (41 ms against 5 ms for 64 MiB of float32, measured). The inner loops run over slices from
# 0: with absolute indices numba cannot prove them non-negative, keeps the wraparound check
# and does not vectorize (measured 4.5x slower).

_BLOCK = 1 << 16


@qz.compiled_once_per_cache
@numba.njit(cache=True, nogil=True, parallel=True)
def _divide(codes, divisor, out):
    n = codes.shape[0]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo = b * _BLOCK
        hi = min(n, lo + _BLOCK)
        src, dst = codes[lo:hi], out[lo:hi]
        for i in range(hi - lo):
            dst[i] = np.float64(src[i]) / divisor


def divide_into(codes: np.ndarray, divisor: int, out: np.ndarray) -> None:
    """out[:] = codes / divisor (correctly rounded float64 quotient, rounded once to out's dtype)."""
    _divide(codes.reshape(-1), float(divisor), out.reshape(-1))
