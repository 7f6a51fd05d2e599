"""The Lorenzo predictor's cost model as one kernel: its codes on sample blocks, modelled
without running the predictor (the sz policy sizes Lorenzo with it; see
``errbound.codecs.sz.policy.lorenzo_estimated_size`` for the model).

It computes, operation for operation, what the model's numpy form computed (first
differences along one axis after another, each an exact IEEE subtraction; the same
products and the same round-half-even), so every code and every choice made from them is
the same bit for bit. numpy's form made ~15 passes over the sample with an array each; on a
64 KiB 3-D chunk the three estimates the policy makes cost 270 us of a 900 us choice.
"""

from __future__ import annotations

import numpy as np

from ...jit import kernel


@kernel(internal=True)
def _difference_along(x, shape, axis):
    """x (flat, C order over ``shape``) becomes its first difference along ``axis`` with the
    first value kept (Lorenzo's zero layer before it). Each subtraction reads a value not
    yet differenced, as an out-of-place difference would."""
    n = shape[axis]
    if n < 2:
        return
    inner = 1
    for a in range(axis + 1, shape.size):
        inner *= shape[a]
    rows = x.size // n
    if inner == 1:  # along rows: the previous value carried in a register
        for r in range(rows):
            base = r * n
            prev = x[base]
            for i in range(1, n):
                here = x[base + i]
                x[base + i] = here - prev
                prev = here
        return
    prev = np.empty(inner)  # the previous row, undifferenced (a buffer of its own: vectorized)
    for o in range(rows // inner):
        base = o * n * inner
        for k in range(inner):
            prev[k] = x[base + k]
        for i in range(1, n):
            row = base + i * inner
            for k in range(inner):
                here = x[row + k]
                x[row + k] = here - prev[k]
                prev[k] = here


@kernel
def lorenzo_estimate_codes(x, unit_noise, shape, skip, eb, scale, radius, codes):
    """The model's codes of the blocks ``x`` (float64, flat over ``shape``: blocks first, then
    their axes; overwritten) into ``codes`` (int32); returns how many are unpredictable.
    ``unit_noise``: one uniform(-1, 1) draw per value; ``skip[a]``: axis a is not differenced
    (the blocks' axis 0 never is); ``scale``: 0.5 / eb as the caller computed it."""
    m = x.copy()
    for a in range(1, shape.size):
        if not skip[a]:
            _difference_along(m, shape, a)
    noise = np.empty(x.size)
    for p in range(x.size):
        e = unit_noise[p] * eb
        if m[p] == 0.0:  # locally constant: Lorenzo reconstructs it exactly, no error
            e = 0.0
        noise[p] = e
        x[p] += e
    for a in range(1, shape.size):
        if not skip[a]:
            _difference_along(x, shape, a)
    unpredictable = 0
    limit = radius - 1
    for p in range(x.size):
        q = np.rint((x[p] - noise[p]) * scale)
        if abs(q) < limit:  # the predictor's range test; NaN fails it
            codes[p] = np.int32(q + radius)
        else:
            codes[p] = np.int32(2 * radius)
            unpredictable += 1
    return unpredictable
