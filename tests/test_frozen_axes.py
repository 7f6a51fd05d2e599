"""Frozen axes of the `sz` predictors (interpolation and Lorenzo stages v2): each slice of a
frozen axis is predicted as an array of its own. Forced on any axes of 1-4 D arrays, both
predictors hold the bound through a whole stream, the decoder rebuilds the encoder's
reconstruction bit for bit, and a predictor without frozen axes writes the version-1 record
it wrote before they existed."""

from __future__ import annotations

import contextlib
import itertools
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import DTYPES, PROPERTY_EXAMPLES, roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

import errbound
from errbound.codecs.sz import codec as sz_codec
from errbound.codecs.sz import policy as sz_policy
from errbound.stages.predictors.interpolation import InterpolationPredictor
from errbound.stages.predictors.lorenzo import LorenzoPredictor

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from test_sz_predictors import fields  # noqa: E402
from write_frozen_stream_fixtures import slabs  # noqa: E402


def _predictor(kind: str, frozen: list[int]):
    if kind == "lorenzo":
        return LorenzoPredictor(frozen=frozen)
    return InterpolationPredictor(kind == "cubic", None, 1.25, 2.0, anchor=None, frozen=frozen)


@contextlib.contextmanager
def _forced(predictor):
    """The sz policy replaced by one that picks ``predictor``."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sz_codec, "choose", lambda data, eb: sz_policy.Choice(predictor))
        yield


@st.composite
def cases(draw, dtype):
    """test_sz_predictors' fields (1-4 D, smooth along the last axis, specials), with frozen
    axes (any non-empty set of the array's axes, as 4-D numbers) and a predictor kind."""
    x = draw(fields(dtype))
    axes = list(range(4 - x.ndim, 4))
    frozen = draw(st.lists(st.sampled_from(axes), min_size=1, unique=True))
    kind = draw(st.sampled_from(["cubic", "linear", "lorenzo"]))
    return x, kind, frozen


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@settings(max_examples=3 * PROPERTY_EXAMPLES, deadline=None)
@given(data=st.data())
def test_frozen_axes_hold_the_bound_through_a_stream(dtype, data):
    x, kind, frozen = data.draw(cases(dtype), label="case")
    finite = x[np.isfinite(x)].astype(np.float64)
    top = float(np.abs(finite).max()) if finite.size else 1.0
    ulp = float(np.spacing(dtype(top))) if top else 1e-30
    eb = data.draw(st.sampled_from([1e-1 * (top or 1.0), 1e-4 * (top or 1.0), 3 * ulp]), label="abs")
    with _forced(_predictor(kind, frozen)):
        blob, _ = roundtrip(x, "sz", "abs", eb)
    if x.size and errbound.info(blob)["codec"] == "sz":  # not the raw fallback
        assert errbound.info(blob)["codec_version"] == 5
        assert errbound.info(blob)["stages"][0]["params"]["frozen"] == sorted(frozen)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("kind", ["cubic", "linear", "lorenzo"])
@pytest.mark.parametrize("shape", [(5, 9), (4, 3, 6), (7, 1, 9), (2, 3, 2, 3), (40, 70)])
def test_the_decoder_rebuilds_the_encoders_reconstruction(kind, dtype, shape):
    rng = np.random.default_rng(sum(shape))
    x = np.cumsum(rng.standard_normal(shape), axis=-1).astype(dtype)
    x.reshape(-1)[1] = np.nan
    axes = range(4 - len(shape), 4)
    for frozen in itertools.chain.from_iterable(itertools.combinations(axes, k) for k in range(1, len(shape) + 1)):
        predictor = _predictor(kind, list(frozen))
        codes, unpred, recon = predictor.encode(x, 0.05)
        again = type(predictor)(**predictor.params())
        assert codes.size == again.expected_codes(shape)
        assert unpred.size == again.expected_unpredictable(codes, shape)
        assert sum(again.code_levels(shape)) == codes.size
        decoded = again.decode(codes, unpred, shape, np.dtype(dtype), 0.05)
        assert decoded.tobytes() == np.ascontiguousarray(recon).tobytes(), frozen
        finite = np.isfinite(x)
        assert np.all(np.abs(decoded[finite].astype(np.float64) - x[finite].astype(np.float64)) <= 0.05)


def test_a_frozen_slice_is_coded_as_an_array_of_its_own():
    # Lorenzo frozen along the first axis codes each slice exactly as Lorenzo codes that
    # slice alone; interpolation with its slice's anchors does too
    x = slabs((5, 40, 50), np.float64, 3)
    for frozen_predictor, alone in (
        (LorenzoPredictor(frozen=[1]), LorenzoPredictor()),
        (InterpolationPredictor(True, None, 1.25, 2.0, anchor=None, frozen=[1]), InterpolationPredictor()),
    ):
        codes, unpred, _ = frozen_predictor.encode(x, 1e-3)
        per_slice = [alone.encode(np.ascontiguousarray(s), 1e-3) for s in x]
        if isinstance(alone, LorenzoPredictor):
            assert codes.tobytes() == np.concatenate([c for c, _, _ in per_slice]).tobytes()
        else:  # the traversal goes level by level over all slices: the same codes, interleaved
            assert sorted(codes.tolist()) == sorted(np.concatenate([c for c, _, _ in per_slice]).tolist())
        assert unpred.size == sum(u.size for _, u, _ in per_slice)


@pytest.mark.parametrize("kind", ["cubic", "lorenzo"])
def test_records_without_frozen_axes_are_version_1_as_before(kind):
    plain = _predictor(kind, [])
    assert plain.record()["version"] == 1 and "frozen" not in plain.record()["params"]
    frozen = _predictor(kind, [2])
    assert frozen.record()["version"] == 2 and frozen.record()["params"]["frozen"] == [2]
    x = slabs((8, 30, 40), np.float32, 4)
    with _forced(plain):
        blob = errbound.compress(x, "sz", abs=1e-3)
    assert errbound.info(blob)["codec_version"] == 1


@pytest.mark.parametrize("bad", [[4], [-1], [1, 1], "x"])
def test_a_stage_refuses_frozen_axes_that_are_not_axes(bad):
    for cls in (LorenzoPredictor, InterpolationPredictor):
        with pytest.raises((ValueError, TypeError)):
            cls(frozen=bad)
    with pytest.raises(ValueError, match="in the sweep order"):
        InterpolationPredictor(order=[2, 3], frozen=[3])
    with pytest.raises(ValueError, match="miss an axis"):
        InterpolationPredictor(order=[3], frozen=[1]).encode(np.zeros((3, 4, 5)), 0.1)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("kind", ["cubic", "lorenzo"])
@pytest.mark.parametrize("shape, frozen", [((4, 3, 6), [1]), ((5, 6, 7), [2]), ((2, 3, 2, 3), [0, 2]), ((5, 6, 7), [])])
def test_reused_buffers_give_the_fresh_results(kind, dtype, shape, frozen):
    # the thread's buffers first hold a larger array's values, encoded and decoded: the zero
    # layers of the slices and every code and value must still be this array's
    rng = np.random.default_rng(len(shape))
    x = np.cumsum(rng.standard_normal(shape), axis=-1).astype(dtype)
    x.reshape(-1)[1] = np.nan
    codes, unpred, recon = (np.array(a, copy=True) for a in _predictor(kind, frozen).encode(x, 0.05))
    big = (rng.standard_normal((9, 11, 13)) * 1e3 + 7).astype(dtype)
    for predictor in (LorenzoPredictor(), LorenzoPredictor(frozen=[2])):
        c, u, _ = predictor.encode(big, 0.05, reuse=True)
        predictor.decode(c, u, big.shape, big.dtype, 0.05)
    reused = _predictor(kind, frozen).encode(x, 0.05, reuse=True)
    for a, b in zip((codes, unpred, recon), reused, strict=True):
        assert a.shape == b.shape and a.tobytes() == np.ascontiguousarray(b).tobytes()
    decoded = _predictor(kind, frozen).decode(codes, unpred, shape, np.dtype(dtype), 0.05)
    assert decoded.tobytes() == recon.tobytes()
    # the result is the caller's, not a view of a buffer the next call overwrites
    _predictor(kind, frozen).decode(codes, unpred, shape, np.dtype(dtype), 0.05)[...] = 0
    assert decoded.tobytes() == recon.tobytes()


def test_lorenzo_refuses_to_cut_an_array_into_tiny_slices():
    # each slice is a kernel call from Python: past 4096 slices they must average 256 values
    x = np.zeros((5000, 2, 2), np.float32)
    assert not LorenzoPredictor(frozen=[1, 2]).slices_allowed(x.shape)
    with pytest.raises(ValueError, match="too many slices"):
        LorenzoPredictor(frozen=[1, 2]).encode(x, 0.1)
    assert not LorenzoPredictor(frozen=[1]).slices_allowed(x.shape)  # 5000 slices of 4 values
    assert LorenzoPredictor(frozen=[2]).slices_allowed((4096, 3))  # up to 4096 slices are free
    assert LorenzoPredictor(frozen=[1]).slices_allowed((5000, 16, 16))  # 5000 of 256 values
