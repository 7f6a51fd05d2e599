"""Each `sz` predictor on its own, over the shapes where its kernels change path.

The Lorenzo kernels walk two rows at once (planes in pairs along a diagonal in 3-D, rows
one point apart in 2-D) and fall back to one row for an odd plane or row count; the
interpolation kernel has per-direction builds. These tests force each predictor, so the
automatic choice cannot hide a path, and check three things: the bound in the output dtype
(with NaN, +-Inf and -0.0 exact), that the decoder rebuilds the encoder's reconstruction
bit for bit, and that codes and unpredictable values come out in the documented order.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import DTYPES, PROPERTY_EXAMPLES, roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

from errbound.stages.predictors.interpolation import InterpolationPredictor
from errbound.stages.predictors.lorenzo import LorenzoPredictor

PREDICTORS = {"lorenzo": LorenzoPredictor, "interpolation": InterpolationPredictor}


@st.composite
def fields(draw, dtype):
    ndim = draw(st.integers(1, 4))
    side = {1: 70, 2: 12, 3: 7, 4: 4}[ndim]
    shape = tuple(draw(st.integers(1, side)) for _ in range(ndim))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    smooth = np.cumsum(rng.standard_normal(shape), axis=-1) if ndim else rng.standard_normal()
    x = (smooth * 10.0 ** draw(st.integers(-6, 6))).astype(dtype)
    if draw(st.booleans()) and x.size:
        flat = x.reshape(-1)
        for pos, value in zip(
            rng.choice(x.size, min(x.size, 4), replace=False), (np.nan, np.inf, -np.inf, -0.0), strict=False
        ):
            flat[pos] = value
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", list(PREDICTORS))
@settings(max_examples=PROPERTY_EXAMPLES)
@given(data=st.data())
def test_forced_predictor_holds_the_bound(name, dtype, data):
    x = data.draw(fields(dtype), label="array")
    finite = x[np.isfinite(x)].astype(np.float64)
    top = float(np.abs(finite).max()) if finite.size else 1.0
    ulp = float(np.spacing(dtype(top))) if top else 1e-30
    eb = data.draw(st.sampled_from([1e-1 * (top or 1.0), 1e-4 * (top or 1.0), 3 * ulp]), label="abs")
    roundtrip(x, "sz", "abs", eb, predictor=name)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", list(PREDICTORS))
@pytest.mark.parametrize(
    "shape", [(2,), (3, 2), (2, 3), (5, 9), (2, 2, 2), (3, 2, 5), (4, 3, 6), (5, 4, 9), (2, 3, 2, 3)]
)
def test_decoder_rebuilds_the_encoders_reconstruction(name, dtype, shape):
    rng = np.random.default_rng(sum(shape))
    x = np.cumsum(rng.standard_normal(shape), axis=-1).astype(dtype)
    x.reshape(-1)[1] = np.nan
    eb = 0.05
    predictor = PREDICTORS[name]()
    codes, unpred, recon = predictor.encode(x, eb)
    decoded = PREDICTORS[name](**predictor.params()).decode(codes, unpred, shape, np.dtype(dtype), eb)
    assert decoded.tobytes() == np.ascontiguousarray(recon).tobytes()
    finite = np.isfinite(x)
    assert np.all(np.abs(decoded[finite].astype(np.float64) - x[finite].astype(np.float64)) <= eb)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
def test_lorenzo_stores_rejected_points_in_row_major_order(dtype):
    # every value is a special or far out of the quantizer's range: all are unpredictable
    x = np.array([[1e30, np.nan, -0.0], [np.inf, -1e30, 2e30], [-np.inf, 3e30, -0.0]], dtype)
    codes, unpred, _ = LorenzoPredictor(radius=4).encode(x, 1e-3)
    rejected = codes == 0
    assert rejected.all()
    assert unpred.tobytes() == x.reshape(-1).tobytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", list(PREDICTORS))
@pytest.mark.parametrize("shape", [(70,), (5, 9), (4, 3, 6), (2, 3, 2, 3)])
def test_reused_buffers_give_the_fresh_results(name, dtype, shape):
    # the buffers first hold a larger, differently shaped array's values: Lorenzo's zero
    # layers and every code must still be this array's
    rng = np.random.default_rng(len(shape))
    x = np.cumsum(rng.standard_normal(shape), axis=-1).astype(dtype)
    x.reshape(-1)[1] = np.nan
    fresh = [np.array(a, copy=True) for a in PREDICTORS[name]().encode(x, 0.05)]
    PREDICTORS[name]().encode(rng.standard_normal((9, 11, 13)).astype(dtype) * 1e3 + 7, 0.05, reuse=True)
    reused = PREDICTORS[name]().encode(x, 0.05, reuse=True)
    for a, b in zip(fresh, reused, strict=True):
        assert a.shape == b.shape and a.tobytes() == np.ascontiguousarray(b).tobytes()


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("name", list(PREDICTORS))
def test_a_negative_zero_prediction_reconstructs_as_the_decoder_does(name, dtype):
    # -0.0 (stored exactly) makes the next prediction -0.0; a small value there quantizes to
    # q = -0.0, and pred + q * step kept -0.0 in the encoder where the decoder, multiplying
    # the integer code, gets +0.0 (found by review)
    x = np.array([-0.0, -0.02, 0.01, -0.0, -0.001, 0.0, -0.003], dtype)
    predictor = PREDICTORS[name]()
    codes, unpred, recon = predictor.encode(x, 0.1)
    decoded = PREDICTORS[name](**predictor.params()).decode(codes, unpred, x.shape, np.dtype(dtype), 0.1)
    assert decoded.tobytes() == np.ascontiguousarray(recon).tobytes()


def test_a_cached_traversal_plan_is_shared_and_never_written():
    # each predictor with the same parameters on the same shape reuses one plan (made once:
    # every sample candidate and every chunk's decode needs it); the kernel only reads it
    from errbound.stages.predictors import interpolation

    rng = np.random.default_rng(3)
    x = rng.standard_normal((20, 33, 9)).cumsum(1).astype(np.float32)
    plan = interpolation._plan(x.shape, None, None, (), 1.25, 2.0)
    before = [a.copy() for a in plan[2:]]
    for cubic in (True, False):
        p = InterpolationPredictor(cubic)
        codes, unpred, recon = p.encode(x, 1e-3)
        out = p.decode(codes, unpred, x.shape, x.dtype, 1e-3)
        np.testing.assert_array_equal(out, recon)
        assert (p.anchor, p.order) == (plan[0], list(plan[1]))
    assert interpolation._plan(x.shape, None, None, (), 1.25, 2.0) is plan
    for a, b in zip(plan[2:], before, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="miss an axis"):
        InterpolationPredictor(order=[1, 2]).encode(x, 1e-3)
