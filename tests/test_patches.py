"""The after-the-fact check (``violations``) that decides which points a codec that does not
check its own bound (zfp, hlr's factors) must store exactly."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errbound.stages.corrections.patches import violations

SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 5e-324, 1e-40, 3.4e38, 1e308, -1e308]


def missed_one_by_one(x, y, eb):
    """The rule, point by point: NaN, +-Inf and -0.0 must come back bit for bit; every other
    value within eb, measured in float64."""
    uint = np.uint32 if x.dtype.itemsize == 4 else np.uint64
    out = []
    for i, (a, b) in enumerate(zip(x.tolist(), y.tolist(), strict=True)):
        if not np.isfinite(a) or (a == 0 and np.signbit(a)):
            miss = x[i : i + 1].view(uint)[0] != y[i : i + 1].view(uint)[0]
        else:
            miss = not abs(a - b) <= eb  # Python floats: float64
        if miss:
            out.append(i)
    return out


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_violations_follow_the_rule_point_by_point(data):
    dtype = np.dtype(data.draw(st.sampled_from(["float32", "float64"])))
    n = data.draw(st.integers(0, 300))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    with np.errstate(over="ignore"):
        x = (rng.standard_normal(n) * 10.0 ** rng.integers(-30, 30)).astype(dtype)
        pick = rng.random(n) < 0.15
        x[pick] = rng.choice(SPECIALS, int(pick.sum())).astype(dtype)
        y = (x + rng.standard_normal(n) * 10.0 ** rng.integers(-35, 30)).astype(dtype)
        keep = rng.random(n) < 0.3
        y[keep] = x[keep]
        odd = rng.random(n) < 0.05
        y[odd] = rng.choice(SPECIALS, int(odd.sum())).astype(dtype)
    eb = float(10.0 ** rng.uniform(-40, 30))
    bad = violations(x, y, eb)
    assert bad.dtype == np.int64
    assert bad.tolist() == missed_one_by_one(x, y, eb)


@pytest.mark.parametrize("shape", [(7, 5), (3, 4, 5)])
def test_violations_take_any_layout_and_byte_order(shape):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    x[(0,) * len(shape)] = -0.0  # a special: compared bit for bit, whatever the byte order
    y = x + 0.25
    y[(0,) * len(shape)] = -0.0
    point = (1, 2) + (0,) * (len(shape) - 2)
    y[point] += 1.0
    expected = [int(np.ravel_multi_index(point, shape))]
    assert violations(x, y, 0.5).tolist() == expected
    # a Fortran-ordered decode and a big-endian original: the same points
    assert violations(x, np.asfortranarray(y), 0.5).tolist() == expected
    assert violations(x.astype(">f4"), y, 0.5).tolist() == expected
    assert violations(x, y.astype(">f4"), 0.5).tolist() == expected


def test_violations_refuse_mixed_dtypes():
    with pytest.raises(TypeError, match="float32"):
        violations(np.zeros(3, np.float32), np.zeros(3, np.float64), 0.1)
