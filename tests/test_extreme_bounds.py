"""Bounds at the edges of float64 for every codec and mode (issue 18, item 6): each either
works (the result holds the bound, often by storing exactly) or raises an errbound error;
never ZeroDivisionError, OverflowError or a bare ValueError from inside a codec."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ALL_CODECS, DTYPES, roundtrip

EXTREMES = [
    ("abs", 5e-324),
    ("abs", 1e-310),
    ("abs", 1e200),
    ("abs", 1.7e308),
    ("rel", 5e-324),
    ("rel", 1e300),
    ("pw_rel", 5e-324),
    ("pw_rel", 1e-300),
    ("pw_rel", 1e-17),
    ("pw_rel", 0.999999),
    ("psnr", 1e-3),
    ("psnr", 400.0),
    ("psnr", 1e6),
    ("psnr", 1e300),
]


def field(shape, dtype):
    grids = np.meshgrid(*[np.linspace(0, 6, n) for n in shape], indexing="ij")
    return (sum(np.sin(g) for g in grids) * 3 + 10).astype(dtype)


@pytest.mark.parametrize("mode,value", EXTREMES, ids=[f"{m}={v:g}" for m, v in EXTREMES])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("codec", ALL_CODECS)
def test_extreme_bound(codec, dtype, mode, value):
    roundtrip(field((40, 40), dtype), codec, mode, value)


@pytest.mark.parametrize("mode,value", [("abs", 1e200), ("abs", 1.7e308), ("rel", 1e300), ("pw_rel", 1e-17)])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_extreme_bound_on_a_matrix_hlr_plans_for(dtype, mode, value):
    x = np.exp(-np.abs(np.subtract.outer(np.linspace(0, 20, 160), np.linspace(0, 20, 160))))
    roundtrip(x.astype(dtype), "hlr", mode, value)  # large enough to leave hlr's dense path
