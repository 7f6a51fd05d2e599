"""First-order Lorenzo prediction on integer codes, exact in modular arithmetic.

Arrays are viewed as 3-D (n0, n1, n2): 1-D and 2-D get leading axes of length 1, and 4-D
merges its two slowest axes (the codes stay exact; only the prediction along the merged
axis is lost). The residual of a point is the mixed difference over the 2x2x2 corner
behind it; rows whose predecessors are missing (the first row, plane or column) use the
lower-dimensional formula, which is the same as treating the outside as zeros.
Arithmetic wraps modulo 2^32 (2^64): every in-range code comes back exactly, and the
prediction is linear (the residuals of a sum are the sum of the residuals).

``quantize_residuals`` fuses prequantization with the prediction: the codes are formed by
prequantize's own expression (``grid_code``), row by row in cache, so the residuals and
outlier flags equal those of the two stages run one after the other, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np

from ...jit import kernel, run_tasks
from ...stage import Stage
from ..quantizers.prequantize import grid_code

ROWS_PER_TASK = 32


class IntegerLorenzo(Stage):
    """Stage: Lorenzo residuals of integer codes (no parameters: the shape is the stream's)."""

    name = "lorenzo-int"


# Rows are taken as slices: with separate row views LLVM vectorizes the inner loops
# (measured 8.4 GB/s against 0.6 GB/s with flat offset arithmetic).


@kernel(inline="always")
def _diff(out, row, sign):
    """out[j] += sign * (row[j] - row[j-1]), out[0] += sign * row[0]."""
    out[0] += sign * row[0]
    for j in range(1, out.shape[0]):
        out[j] += sign * (row[j] - row[j - 1])


@kernel
def _residuals_3d(first, stop, q, out, n0, n1, n2):
    s1 = n2
    s0 = n1 * n2
    nrows = n0 * n1
    for task in range(first, stop):
        for row in range(task * ROWS_PER_TASK, min(nrows, (task + 1) * ROWS_PER_TASK)):
            i0 = row // n1
            i1 = row % n1
            b = row * n2
            o = out[b : b + n2]
            cur = q[b : b + n2]
            o[0] = cur[0]
            for j in range(1, n2):
                o[j] = cur[j] - cur[j - 1]
            if i1 > 0:
                _diff(o, q[b - s1 : b - s1 + n2], -1)
            if i0 > 0:
                _diff(o, q[b - s0 : b - s0 + n2], -1)
            if i0 > 0 and i1 > 0:
                _diff(o, q[b - s0 - s1 : b - s0 - s1 + n2], 1)


@kernel(inline="always")
def _restore_row(a, row, n1, n2):
    """Restore row `row` in place (the rows before it are codes already); returns it."""
    s1 = n2
    s0 = n1 * n2
    i0 = row // n1
    i1 = row % n1
    b = row * n2
    o = a[b : b + n2]
    if i1 > 0:
        _diff(o, a[b - s1 : b - s1 + n2], 1)
    if i0 > 0:
        _diff(o, a[b - s0 : b - s0 + n2], 1)
    if i0 > 0 and i1 > 0:
        _diff(o, a[b - s0 - s1 : b - s0 - s1 + n2], -1)
    for j in range(1, n2):
        o[j] += o[j - 1]
    return o


@kernel
def _restore_3d(a, n0, n1, n2):
    """In place: residuals -> codes, in order (each row needs the rows before it)."""
    for row in range(n0 * n1):
        _restore_row(a, row, n1, n2)


@kernel
def _restore_3d_into(a, n0, n1, n2, out, factor, divide):
    """_restore_3d, and each restored row written to out as floats while it is in cache:
    codes * factor, or codes / factor (correctly rounded float64) with `divide`, then one
    rounding to out's dtype; the expressions of dequantize and of a reciprocal grid."""
    for row in range(n0 * n1):
        o = _restore_row(a, row, n1, n2)
        b = row * n2
        dst = out[b : b + n2]
        if divide:
            for j in range(n2):
                dst[j] = np.float64(o[j]) / factor
        else:
            for j in range(n2):
                dst[j] = o[j] * factor


@kernel(inline="always")
def _quantize_row(x, inv_step, limit, codes):
    for j in range(codes.shape[0]):
        codes[j] = grid_code(np.float64(x[j]) * inv_step, limit)


@kernel(inline="always")
def _check_row(x, codes, step, eb, bad):
    """prequantize_chunks' check, on one row, in one branch-free loop: the reconstruction is
    rounded to x's dtype in a register (as the decoder will), not stored to a scratch row and
    read back: that store kept the serial kernels 13-30 % behind their old prange builds
    (numba marks a prange body's arrays as not aliasing; a serial kernel's may alias, and a
    store to scratch then blocks the vectorizer)."""
    for j in range(codes.shape[0]):
        xf = np.float64(x[j])
        r = np.float64(x.dtype.type(codes[j] * step))
        ok = abs(r - xf) <= eb
        bad[j] = not ok or (xf == 0.0 and math.copysign(1.0, xf) < 0.0)


@kernel
def _quantize_residuals_3d(first_task, stop, x, step, eb, limit, out, bad, check, n0, n1, n2):
    """out = the residuals of x's codes (grid_code of x / step), without storing the codes:
    each task keeps the code rows it needs (this row, the one above, and both in the plane
    behind) in a small ring and quantizes each row of x at most twice, in cache, instead of
    writing every code to memory and reading it back for the prediction. Rows outside the
    array are zeros, which gives the lower-dimensional formula at the edges. The ring is
    indexed by row parity: swapping row arrays instead kept LLVM from vectorizing (4x).

    With `check`, bad[i] also flags what prequantize flags: a reconstruction that misses eb
    in x's dtype, or -0.0 (NaN, +-Inf and values off the grid have code 0 and miss)."""
    inv_step = 1.0 / step
    s1 = n2
    s0 = n1 * n2
    nrows = n0 * n1
    rows = np.zeros((4, n2), out.dtype)  # [this row, row above] x [this plane, plane behind]
    for task in range(first_task, stop):
        first = task * ROWS_PER_TASK
        for row in range(first, min(nrows, first + ROWS_PER_TASK)):
            i0 = row // n1
            i1 = row % n1
            b = row * n2
            p = row & 1
            cur, up, back, diag = rows[p], rows[1 - p], rows[2 + p], rows[3 - p]
            _quantize_row(x[b : b + n2], inv_step, limit, cur)
            if check:
                _check_row(x[b : b + n2], cur, step, eb, bad[b : b + n2])
            if i0 > 0:
                _quantize_row(x[b - s0 : b - s0 + n2], inv_step, limit, back)
            else:
                back[:] = 0
            if i1 == 0:
                up[:] = 0
                diag[:] = 0
            elif row == first:  # the rows above this task's first row
                _quantize_row(x[b - s1 : b - s1 + n2], inv_step, limit, up)
                if i0 > 0:
                    _quantize_row(x[b - s0 - s1 : b - s0 - s1 + n2], inv_step, limit, diag)
                else:
                    diag[:] = 0
            o = out[b : b + n2]
            o[0] = cur[0] - up[0] - back[0] + diag[0]
            for j in range(1, n2):
                o[j] = (cur[j] - cur[j - 1]) - (up[j] - up[j - 1]) - (back[j] - back[j - 1]) + (diag[j] - diag[j - 1])


SEGMENT = 1 << 14  # values per task of the 1-D kernel (its codes stay in L1/L2)
LONG_ROW = 1 << 16  # rows longer than this leave the row ring: it would not fit in cache


@kernel
def _quantize_residuals_1d(first, stop, x, step, eb, limit, out, bad, check):
    """_quantize_residuals_3d for one long row: segments in parallel, each quantizing the
    value before it again (the 3-D kernel would run a single row as one serial task
    through a ring of row-long buffers: 10x slower on 4 Mi values)."""
    inv_step = 1.0 / step
    n = x.shape[0]
    codes_buffer = np.empty(SEGMENT, out.dtype)
    for seg in range(first, stop):
        lo = seg * SEGMENT
        hi = min(n, lo + SEGMENT)
        codes = codes_buffer[: hi - lo]
        _quantize_row(x[lo:hi], inv_step, limit, codes)
        if check:
            _check_row(x[lo:hi], codes, step, eb, bad[lo:hi])
        o = out[lo:hi]
        prev = grid_code(np.float64(x[lo - 1]) * inv_step, limit) if lo > 0 else 0
        o[0] = codes[0] - prev
        for j in range(1, hi - lo):
            o[j] = codes[j] - codes[j - 1]


def as_3d(shape) -> tuple[int, int, int]:
    live = [int(n) for n in shape if n > 1] or [1]
    if len(live) == 4:
        live = [live[0] * live[1], live[2], live[3]]
    return tuple([1] * (3 - len(live)) + live)


def lorenzo_residuals(codes: np.ndarray, shape, out: np.ndarray | None = None) -> np.ndarray:
    """Residuals of a flat C-ordered code array of the given shape (same integer dtype,
    wrapping), written to ``out`` (flat, same size and dtype) when given."""
    src = np.ascontiguousarray(codes).reshape(-1)
    out = np.empty_like(src) if out is None else out
    if src.size:  # as_3d drops zero-length axes: an empty array must not reach the kernel
        n0, n1, n2 = as_3d(shape)
        run_tasks(_residuals_3d, -(-n0 * n1 // ROWS_PER_TASK), src, out, n0, n1, n2, task_size=ROWS_PER_TASK * n2)
    return out


def quantize_residuals(
    data: np.ndarray, eb: float, limit: float, out: np.ndarray, shape, bad: np.ndarray | None = None
) -> np.ndarray:
    """lorenzo_residuals of prequantize(data, eb)'s codes (a flat C-ordered float array), in
    one pass (codes of values off the grid are 0, as there). With `bad` (bool, one per
    value), also prequantize's outlier flags."""
    check = bad is not None
    flags = bad if check else np.zeros(0, np.bool_)
    if data.size == 0:  # as_3d drops zero-length axes: an empty array must not reach a kernel
        return out
    n0, n1, n2 = as_3d(shape)
    step = 2.0 * float(eb)
    args = (data, step, float(eb), float(limit))
    if n2 <= LONG_ROW:
        rows = -(-n0 * n1 // ROWS_PER_TASK)
        run_tasks(_quantize_residuals_3d, rows, *args, out, flags, check, n0, n1, n2, task_size=ROWS_PER_TASK * n2)
    elif n0 * n1 == 1:
        run_tasks(_quantize_residuals_1d, -(-data.size // SEGMENT), *args, out, flags, check, task_size=SEGMENT)
    else:  # a few very long rows, which need the rows behind them: codes first, then residuals
        codes = np.empty(data.size, out.dtype)
        run_tasks(_codes, -(-data.size // SEGMENT), *args, codes, flags, check, task_size=SEGMENT)
        run_tasks(_residuals_3d, -(-n0 * n1 // ROWS_PER_TASK), codes, out, n0, n1, n2, task_size=ROWS_PER_TASK * n2)
    return out


@kernel
def _codes(first, stop, x, step, eb, limit, codes, bad, check):
    """The codes (and, with `check`, the outlier flags) alone, in segments."""
    inv_step = 1.0 / step
    n = x.shape[0]
    for seg in range(first, stop):
        lo = seg * SEGMENT
        hi = min(n, lo + SEGMENT)
        _quantize_row(x[lo:hi], inv_step, limit, codes[lo:hi])
        if check:
            _check_row(x[lo:hi], codes[lo:hi], step, eb, bad[lo:hi])


def lorenzo_restore(
    residuals: np.ndarray, shape, out: np.ndarray | None = None, factor: float = 1.0, divide: bool = False
) -> np.ndarray:
    """Inverse of lorenzo_residuals, in place on a writable flat array; returns it. With
    `out` (flat floats), also out = codes * factor (codes / factor with `divide`) in the
    same pass."""
    a = residuals.reshape(-1)
    if a.size and out is None:
        _restore_3d(a, *as_3d(shape))
    elif a.size:
        _restore_3d_into(a, *as_3d(shape), out, float(factor), bool(divide))
    return a
