"""Outlier correction: the step that makes the point-wise bound hold after the cast.

The encoder reconstructs exactly what the decoder will (``r``, float64), casts it to the
output dtype and compares with the input there. Every point that misses the bound gets a
correction ``k`` (a nonzero integer): the decoder outputs ``dtype(r + k * step)``, and the
encoder has checked that this value meets the bound in the output dtype. With
``step = 1.9 * bound`` the corrected error is at most 0.95 of the bound before rounding, and
almost every outlier needs ``|k| = 1``. Points a correction cannot fix (rounding at bounds of
a few ulps, overflow near the float maximum) and NaN, +-Inf, -0.0 are stored exactly.

Positions are coded as gaps with order-b exponential-Golomb codes (b chosen per list to
minimise the size); a correction costs a sign bit, plus an order-0 code of |k| - 1 unless
every correction of the chunk is +-1.
"""

from __future__ import annotations

import math

import numpy as np

from ...jit import kernel
from ...stage import Stage
from ..coders.bits import get_bit, put_bit

STEP_FACTOR = 1.9
_K_LIMIT = float(2**52)


class OutlierCorrection(Stage):
    """Stage: sperr's outlier corrections (no parameters: the correction step travels in the
    codec's table, with its chunks)."""

    name = "sperr-outliers"
    step_factor = STEP_FACTOR


_FIXED, _EXACT = 1, 2


@kernel
def _classify(x, r, eb, step, single, flags):
    """flags[i] = 0 (within the bound), _FIXED (a correction fixes it) or _EXACT; returns
    the two counts. Written out without helper calls or growing arrays: this pass runs over
    every value, and either would make it several times slower."""
    nc = 0
    ne = 0
    for i in range(x.size):
        xv = np.float64(x[i])
        rv = r[i]
        out = np.float64(np.float32(rv)) if single else rv
        flag = 0
        if not (abs(xv - out) <= eb and xv != 0):
            # NaN, +-Inf and -0.0 must come back bit for bit
            flag = _EXACT
            if abs(xv) < math.inf and not (xv == 0 and math.copysign(1.0, xv) < 0):
                if abs(xv - out) <= eb:
                    flag = 0
                else:
                    kf = np.floor((xv - rv) / step + 0.5)
                    if kf != 0 and abs(kf) < _K_LIMIT:
                        v = rv + kf * step
                        fixed = np.float64(np.float32(v)) if single else v
                        if abs(xv - fixed) <= eb:
                            flag = _FIXED
        flags[i] = flag
        nc += flag == _FIXED
        ne += flag == _EXACT
    return nc, ne


@kernel
def _collect(x, r, step, flags, nc, ne):
    ci = np.empty(nc, np.int64)
    ck = np.empty(nc, np.int64)
    ei = np.empty(ne, np.int64)
    jc = 0
    je = 0
    for i in range(flags.size):
        if flags[i] == _FIXED:
            ci[jc] = i
            ck[jc] = np.int64(np.floor((np.float64(x[i]) - r[i]) / step + 0.5))
            jc += 1
        elif flags[i] == _EXACT:
            ei[je] = i
            je += 1
    return ci, ck, ei


def find(x: np.ndarray, r: np.ndarray, eb: float, step: float, single: bool):
    """Outliers of the reconstruction r (float64) of x (output dtype), checked in x's dtype.

    ``single``: the output dtype is float32. Returns (correction positions, corrections k,
    exact positions), positions ascending.
    """
    flags = np.empty(x.size, np.uint8)
    nc, ne = _classify(x, r, eb, step, single, flags)
    return _collect(x, r, step, flags, nc, ne)


@kernel
def apply_corrections(r, idx, k, step):
    for j in range(idx.size):
        r[idx[j]] = r[idx[j]] + np.float64(k[j]) * step


# --------------------------------------------------------------------------- position/value codes


@kernel(internal=True)
def _put_eg(words, pos, v, b):
    """Order-b exponential-Golomb code of v >= 0."""
    w = v + (np.int64(1) << b)
    nbits = 0
    t = w
    while t != 0:
        t >>= 1
        nbits += 1
    for _ in range(nbits - 1 - b):
        pos = put_bit(words, pos, np.int64(0))
    for j in range(nbits - 1, -1, -1):
        pos = put_bit(words, pos, (w >> j) & 1)
    return pos


@kernel(internal=True)
def _get_eg(words, pos, b, nbits):
    """Returns (value, pos); value -1 when the code runs past the end or beyond 2^62."""
    zeros = 0
    while get_bit(words, pos) == 0:
        pos += 1
        zeros += 1
        if pos > nbits or zeros + b > 61:
            return -1, pos
    w = np.int64(0)
    for _ in range(zeros + b + 1):
        w = (w << 1) | get_bit(words, pos)
        pos += 1
    return w - (np.int64(1) << b), pos


@kernel
def _encode(words, ci, ck, ei, bc, be, unit):
    """Writes the codes into ``words`` (zeroed, large enough: see _code_bits); returns the
    number of bits written."""
    pos = np.int64(0)  # int64, not the literal 0: a literal argument compiles another specialisation
    last = -1
    for j in range(ci.size):
        pos = _put_eg(words, pos, ci[j] - last - 1, bc)
        last = ci[j]
        pos = put_bit(words, pos, 1 if ck[j] < 0 else 0)
        if not unit:
            pos = _put_eg(words, pos, abs(ck[j]) - 1, np.int64(0))
    last = -1
    for j in range(ei.size):
        pos = _put_eg(words, pos, ei[j] - last - 1, be)
        last = ei[j]
    return pos


@kernel
def _decode(words, nbits, nc, ne, bc, be, unit, size):
    """Returns (ci, ck, ei, ok)."""
    ci = np.empty(nc, np.int64)
    ck = np.empty(nc, np.int64)
    ei = np.empty(ne, np.int64)
    pos = np.int64(0)
    last = -1
    for j in range(nc):
        g, pos = _get_eg(words, pos, bc, nbits)
        if g < 0 or last + 1 + g >= size:
            return ci, ck, ei, False
        last += 1 + g
        ci[j] = last
        sign = get_bit(words, pos)
        pos += 1
        m = 0
        if not unit:
            m, pos = _get_eg(words, pos, np.int64(0), nbits)
            if m < 0:
                return ci, ck, ei, False
        ck[j] = -(m + 1) if sign else m + 1
    last = -1
    for j in range(ne):
        g, pos = _get_eg(words, pos, be, nbits)
        if g < 0 or last + 1 + g >= size:
            return ci, ck, ei, False
        last += 1 + g
        ei[j] = last
    return ci, ck, ei, (pos + 7) // 8 == (nbits + 7) // 8


def _best_order(positions: np.ndarray) -> int:
    """The exp-Golomb order that codes these gaps in the fewest bits."""
    if positions.size == 0:
        return 0
    gaps = np.diff(positions, prepend=-1) - 1
    best, best_cost = 0, None
    for b in range(0, 40):
        cost = int(np.sum(2 * np.floor(np.log2(gaps + float(2**b)))) - positions.size * (b - 1))
        if best_cost is None or cost < best_cost:
            best, best_cost = b, cost
        elif cost > best_cost:
            break
    return best


def encode(ci: np.ndarray, ck: np.ndarray, ei: np.ndarray) -> tuple[bytes, int, int, bool]:
    """(bytes, order for correction gaps, order for exact gaps, unit). unit: every
    correction is +-1, so only its sign is coded (the common case: 1 bit less per outlier)."""
    if ci.size == 0 and ei.size == 0:
        return b"", 0, 0, True
    bc, be = _best_order(ci), _best_order(ei)
    unit = bool(np.all(np.abs(ck) == 1))
    bits = _code_bits(np.diff(ci, prepend=-1) - 1, bc) + ci.size + _code_bits(np.diff(ei, prepend=-1) - 1, be)
    if not unit:
        bits += _code_bits(np.abs(ck) - 1, 0)
    words = np.zeros(bits // 64 + 2, np.uint64)
    nbits = _encode(words, ci, ck, ei, bc, be, unit)
    return words.astype("<u8").tobytes()[: (nbits + 7) // 8], bc, be, unit


def _code_bits(values: np.ndarray, b: int) -> int:
    """Bits of the order-b exp-Golomb codes of ``values`` (>= 0): 2 * bitlength(v + 2^b) - 1 - b
    each. Gaps stay below the array size and corrections below 2^52, so v + 2^b is exact in
    float64 and frexp gives its bit length."""
    if values.size == 0:
        return 0
    lengths = np.frexp(values.astype(np.float64) + float(2**b))[1].astype(np.int64)
    return int(np.sum(2 * lengths - 1 - b))


def decode(data, nc: int, ne: int, bc: int, be: int, unit: bool, size: int):
    """(ci, ck, ei) or None when the bytes are not a valid outlier list for ``size`` points."""
    if nc + ne > size or not (0 <= bc < 62 and 0 <= be < 62):
        return None
    if nc + ne == 0:
        return (np.zeros(0, np.int64),) * 3 if len(data) == 0 else None
    nbytes = len(data)
    words = np.zeros(nbytes // 8 + 2, np.uint64)
    words.view(np.uint8)[:nbytes] = np.frombuffer(data, np.uint8)
    ci, ck, ei, ok = _decode(words, 8 * nbytes, nc, ne, bc, be, bool(unit), size)
    return (ci, ck, ei) if ok else None


def correction_step(eb: float, factor: float) -> float:
    step = eb * factor
    return step if math.isfinite(step) else eb
