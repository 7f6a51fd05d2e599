"""Conditioning for the wavelet path: exact power-of-two scaling and mean removal.

A chunk is scaled by 2^-e so its largest finite magnitude lies in [0.5, 1): multiplying by a
power of two is exact, and it keeps the lifting sums of values near the float maximum from
overflowing (float64 data up to 1.8e308) and tiny data out of the subnormal range. The mean
is then removed. NaN, +-Inf and -0.0 are set to the mean here (they cost the transform
nothing) and travel as exact values in the outlier stage. A chunk whose finite values are
all equal costs its header only.

:func:`restore` undoes the scaling; encoder and decoder both call it, so they agree bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from ...jit import kernel
from ...stage import Stage


class Conditioning(Stage):
    """Stage: sperr's conditioning (no parameters: exponent and mean are per chunk, in the
    codec's table)."""

    name = "sperr-conditioning"


@kernel
def _scan(x):
    """(count of regular values, min, max, max |x|) over the finite values that are not -0.0."""
    n = 0
    lo = math.inf
    hi = -math.inf
    for i in range(x.size):
        v = np.float64(x[i])
        if not (abs(v) < math.inf) or (v == 0 and math.copysign(1.0, v) < 0):
            continue  # NaN, +-Inf, -0.0 (written out: this loop runs over every value)
        n += 1
        lo = min(lo, v)
        hi = max(hi, v)
    top = max(abs(lo), abs(hi)) if n else 0.0
    return n, lo, hi, top


@kernel
def _fill_centered(x, f1, f2, n, out):
    """out = x * f1 * f2 (an exact power of two in two factors) minus its mean over the n
    regular values; specials -> 0. One kernel for both passes: each kernel compiled apart
    costs a cold start ~0.1 s. Returns the mean."""
    acc = 0.0
    for i in range(x.size):
        v = np.float64(x[i])
        if not (abs(v) < math.inf) or (v == 0 and math.copysign(1.0, v) < 0):
            out[i] = 0.0
        else:
            y = (v * f1) * f2
            out[i] = y
            acc += y
    mean = acc / n
    for i in range(x.size):
        v = np.float64(x[i])
        if abs(v) < math.inf and not (v == 0 and math.copysign(1.0, v) < 0):
            out[i] -= mean
    return mean


@kernel
def restore(buf, mean, e):
    """buf = (buf + mean) * 2^e in place, as two exact power-of-two factors."""
    e1 = e // 2
    f1 = math.ldexp(1.0, e1)
    f2 = math.ldexp(1.0, e - e1)
    for i in range(buf.size):
        buf[i] = ((buf[i] + mean) * f1) * f2


def condition(x: np.ndarray, out: np.ndarray) -> tuple[str, int, float]:
    """Fill ``out`` (flat float64) from the flat chunk ``x``.

    Returns ("constant", 0, value) when every regular value is the same (``out`` untouched),
    else ("coded", e, mean) with out = x * 2^-e - mean.
    """
    n, lo, hi, top = _scan(x)
    if n == 0:
        return "constant", 0, 0.0
    if lo == hi:
        return "constant", 0, float(lo)
    e = math.frexp(top)[1]
    e1 = (-e) // 2
    mean = _fill_centered(x, math.ldexp(1.0, e1), math.ldexp(1.0, -e - e1), n, out)
    return "coded", e, float(mean)
