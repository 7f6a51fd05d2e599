"""The Lorenzo predictor's cost model as one kernel: its codes on sample blocks, modelled
without running the predictor (the sz policy sizes Lorenzo with it; see
``errbound.codecs.sz.policy.lorenzo_estimated_size`` for the model).

It computes, operation for operation, what the model's numpy form computed (first
differences along one axis after another, each an exact IEEE subtraction; the same
products and the same round-half-even), so every code and every choice made from them is
the same bit for bit. numpy's form made ~15 passes over the sample with an array each; on a
64 KiB 3-D chunk the three estimates the policy makes cost 270 us of a 900 us choice.

One function, no allocation: it adds ~0.45 s to a cold first compress (an internal helper
function, a copy and two arrays allocated inside cost 0.3-0.5 s more to compile).
"""

from __future__ import annotations

import numpy as np

from ...jit import kernel


@kernel
def lorenzo_estimate_codes(work, unit_noise, shape, skip, eb, scale, radius, codes):
    """The model's codes of the blocks into ``codes`` (int32, n of them); returns how many are
    unpredictable. ``work``: 2n float64, the blocks' values (flat over ``shape``: blocks
    first, then their axes) then room for as many more; overwritten. ``unit_noise``: one
    uniform(-1, 1) draw per value; ``skip[a]``: axis a is not differenced (the blocks' axis 0
    never is); ``scale``: 0.5 / eb as the caller computed it."""
    n = codes.size
    values = work[:n]
    other = work[n:]  # the data's mixed difference, then the noise
    for p in range(n):
        other[p] = values[p]
    for data_pass in range(2):
        w = other if data_pass == 0 else values
        # the first difference along each axis in turn, the first value kept (Lorenzo's zero
        # layer before it); backwards, so each subtraction reads a value not yet differenced
        for a in range(1, shape.size):
            if skip[a] or shape[a] < 2:
                continue
            inner = 1
            for b in range(a + 1, shape.size):
                inner *= shape[b]
            length = shape[a]
            for o in range(n // (length * inner)):
                base = o * length * inner
                for i in range(length - 1, 0, -1):
                    row = base + i * inner
                    for k in range(inner):
                        w[row + k] -= w[row - inner + k]
        if data_pass == 0:
            for p in range(n):
                e = unit_noise[p] * eb
                if other[p] == 0.0:  # locally constant: Lorenzo reconstructs it exactly
                    e = 0.0
                other[p] = e
                values[p] += e
    unpredictable = 0
    for p in range(n):
        q = np.rint((values[p] - other[p]) * scale)
        if abs(q) < radius - 1:  # the predictor's range test; NaN fails it
            codes[p] = np.int32(q + radius)
        else:
            codes[p] = np.int32(2 * radius)
            unpredictable += 1
    return unpredictable
