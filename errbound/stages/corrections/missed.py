"""The kernel of :func:`~errbound.stages.corrections.patches.violations`: its own module, so
that ``patches`` (which ``errbound.api`` imports) loads no numba."""

from __future__ import annotations

import numpy as np

from ...jit import kernel


@kernel
def missed(x, y, x_bits, y_bits, eb, out):
    """Writes the flat indices where ``y`` misses ``x`` to ``out``; returns how many."""
    count = 0
    for i in range(x.size):
        a = x[i]
        if np.isfinite(a) and not (a == 0 and np.signbit(a)):
            miss = not (abs(np.float64(a) - np.float64(y[i])) <= eb)
        else:
            miss = x_bits[i] != y_bits[i]
        if miss:
            out[count] = i
            count += 1
    return count
