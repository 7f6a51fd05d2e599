"""Prequantization (dual quantization, cuSZ/FZ-GPU): x -> q = round(x / (2 eb)) as integers.

This is the only lossy step of the `fz` codec. Each value's reconstruction ``q * 2eb`` is
formed in the output dtype and checked against the bound; a value that fails, that would
overflow the integer type, or that is NaN, +-Inf or -0.0 goes to an exact outlier list
(flat index + raw value). Everything after this stage is exact integer arithmetic, so any
machine (CPU or GPU) decodes the same integers and hence the same floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...jit import kernel, run_tasks
from ...scratch import scratch
from ...stage import Stage


@dataclass
class Prequantize(Stage):
    """Stage: codes on the grid of step 2 * eb, in integers of ``int_bits`` (32 or 64)."""

    name = "prequantize"

    int_bits: int

    def __post_init__(self):
        if self.int_bits not in (32, 64) or isinstance(self.int_bits, bool):
            raise ValueError(f"integer width {self.int_bits!r} (32 or 64)")


# the largest |q| kept per integer type: room for Lorenzo sums of up to 16 neighbours
INT32_LIMIT = 2**26
INT64_LIMIT = 2**58


@kernel(inline="always")
def grid_code(qf, limit):
    """The code of a value already divided by the step: NaN, +-Inf and values beyond the grid
    get code 0 (they are outliers, and 0 keeps the conversion defined); everything else
    rounds to the nearest step. Every kernel that quantizes calls this one expression."""
    inside = abs(qf) < limit
    return np.int64(math.floor((qf if inside else 0.0) + 0.5))


@kernel
def prequantize_chunks(first, stop, x, step, eb, limit, q, bad, chunk):
    """Fill q, and bad with the outlier flags, for chunks [first, stop). Chunks run in
    parallel (jit.run_tasks); results do not depend on the thread count because every point
    is independent (the GPU kernel computes the same expression per point). One branch-free
    pass per chunk: the reconstruction is rounded to the input dtype in a register (as the
    decoder will), not stored to a scratch array and read back in a second pass (measured
    faster: a serial kernel's arrays may alias, so that store held the vectorizer back)."""
    n = x.shape[0]
    inv_step = 1.0 / step
    for c in range(first, stop):
        lo = c * chunk
        hi = min(n, lo + chunk)
        # slices from 0 let numba drop the wraparound checks
        xs, qs, bs = x[lo:hi], q[lo:hi], bad[lo:hi]
        for k in range(hi - lo):
            xf = np.float64(xs[k])
            qi = grid_code(xf * inv_step, limit)
            qs[k] = qi
            r = np.float64(xs.dtype.type(qi * step))
            ok = abs(r - xf) <= eb
            bs[k] = not ok or (xf == 0.0 and math.copysign(1.0, xf) < 0.0)


@kernel
def dequantize_chunks(first, stop, q, step, out, chunk):
    n = q.shape[0]
    for c in range(first, stop):
        lo = c * chunk
        hi = min(n, lo + chunk)
        # slices from 0 let numba drop the wraparound check and vectorize (measured 4.5x)
        src, dst = q[lo:hi], out[lo:hi]
        for i in range(hi - lo):
            dst[i] = src[i] * step


@kernel
def _finite_abs_max_bits(bits, magnitude, exponent_mask):
    """max |x| over the finite values (0 if none) of floats given as their unsigned bits.
    For finite floats of one sign the bit patterns order like the values, so the maximum is
    an integer reduction, which vectorizes (a float max with NaN tests does not: 8x slower)."""
    m = bits.dtype.type(0)
    for i in range(bits.shape[0]):
        a = bits[i] & magnitude
        a = a if a < exponent_mask else bits.dtype.type(0)  # Inf and NaN have the exponent all ones
        m = max(m, a)
    return m


def _finite_abs_max(x: np.ndarray) -> float:
    if x.dtype.itemsize == 4:
        m = _finite_abs_max_bits(x.view(np.uint32), np.uint32(0x7FFFFFFF), np.uint32(0x7F800000))
        return float(np.array(m, np.uint32).view(np.float32))
    m = _finite_abs_max_bits(x.view(np.uint64), np.uint64(0x7FFFFFFFFFFFFFFF), np.uint64(0x7FF0000000000000))
    return float(np.array(m, np.uint64).view(np.float64))


def integer_type_for(data: np.ndarray, step: float) -> np.dtype:
    """int32 when every finite |x| / step fits comfortably, int64 otherwise."""
    finite_max = _finite_abs_max(data.reshape(-1))
    return np.dtype(np.int32) if finite_max / step < INT32_LIMIT else np.dtype(np.int64)


CHUNK = 1 << 16


def code_type(flat: np.ndarray, eb: float, int_dtype=None, out: np.ndarray | None = None) -> tuple[np.dtype, float]:
    """The integer type of the codes (out's, else int_dtype, else the narrowest that fits)
    and the largest |code| kept in it."""
    if out is not None:
        int_dtype = out.dtype
    int_dtype = np.dtype(int_dtype) if int_dtype is not None else integer_type_for(flat, 2.0 * eb)
    return int_dtype, float(INT32_LIMIT if int_dtype == np.int32 else INT64_LIMIT)


def prequantize(data: np.ndarray, eb: float, int_dtype=None, out: np.ndarray | None = None):
    """Quantize a flat array on the grid of step 2*eb. Returns (codes, outlier indices, outlier
    values). The codes go to ``out`` (flat, one element per value; its dtype is the integer
    type) or to a fresh array."""
    flat = data.reshape(-1)
    step = 2.0 * eb
    int_dtype, limit = code_type(flat, eb, int_dtype, out)
    codes = np.empty(flat.size, int_dtype) if out is None else out
    bad = scratch("prequantize-bad", flat.size, np.bool_)
    run_tasks(prequantize_chunks, -(-flat.size // CHUNK), flat, step, eb, limit, codes, bad, CHUNK, task_size=CHUNK)
    idx = np.flatnonzero(bad)
    return codes, idx, flat[idx].copy()


def dequantize(codes: np.ndarray, eb: float, dtype, outlier_idx=None, outlier_val=None, out=None) -> np.ndarray:
    """Inverse of prequantize (exact where no outlier overrides the value); writes into `out`
    (C-contiguous, `codes.size` elements of dtype) when given."""
    if out is None:
        out = np.empty(codes.size, dtype)
    run_tasks(
        dequantize_chunks, -(-codes.size // CHUNK), codes.reshape(-1), 2.0 * eb, out.reshape(-1), CHUNK, task_size=CHUNK
    )
    if outlier_idx is not None and len(outlier_idx):
        out[outlier_idx] = outlier_val
    return out
