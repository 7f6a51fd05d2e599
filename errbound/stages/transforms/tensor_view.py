"""Tensor view for `hlr`'s dense plan: a matrix coded as the 4-D array it really is.

A matrix whose rows and columns index the points of a structured mesh in row-major order
(a kernel or covariance matrix over an n x m grid) is smooth along each mesh axis but jumps
every m rows and every m columns, where a mesh row ends. Viewed as (R/p, p, C/q, q) with the
mesh's row length as p and q, every axis is smooth and the `sz` predictor works along all
four (measured on exp(-|x_i - x_j|) over a 64 x 64 mesh: 3.1-4.2x the ratio of the 2-D
view). The periods are not given: the encoder measures the candidates (common divisors of
the two sides) on `sz`'s samples and codes the best view for real. The view is a reshape,
so the flat order of the values, and every section's meaning, is that of the matrix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import CorruptStreamError
from ...stage import Stage

MIN_PERIOD = 8  # shorter periods leave too little smoothness along the fast axes


@dataclass
class TensorView(Stage):
    """Stage: the dense plan coded the matrix as an array of shape ``view`` (2-4 axes)."""

    name = "tensor-view"

    view: list[int]

    def __post_init__(self):
        view = self.view
        if not (
            isinstance(view, (list, tuple))
            and 2 <= len(view) <= 4
            and all(isinstance(n, (int, np.integer)) and not isinstance(n, bool) and n >= 1 for n in view)
        ):
            raise ValueError(f"view {view!r}")
        self.view = [int(n) for n in view]

    def check(self, shape: tuple[int, ...]) -> None:
        if len(shape) != 2 or math.prod(self.view) != math.prod(shape):
            raise CorruptStreamError(f"tensor view {self.view} does not fit an array of shape {tuple(shape)}")


def candidate_views(shape: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """(R/p, p, C/p, p) for every common divisor p of the sides with MIN_PERIOD <= p and
    both R/p, C/p >= MIN_PERIOD."""
    rows, cols = shape
    return [
        (rows // p, p, cols // p, p)
        for p in range(MIN_PERIOD, min(rows, cols) // MIN_PERIOD + 1)
        if rows % p == 0 and cols % p == 0
    ]
