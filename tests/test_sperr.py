"""The `sperr` codec and its stages: the CDF 9/7 transform against pywavelets' bior4.4, SPECK
round trips, the outlier stage, chunking and thread-count independence, the bound on every
shared field (float32 and float64, rel 1e-2 ... 1e-6) and the direct PSNR mode."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from conftest import PROPERTY_EXAMPLES, check_roundtrip, field_names, load_field, psnr_of
from hypothesis import given, settings
from hypothesis import strategies as st

import errbound
from errbound.codecs.sperr import codec as sperr
from errbound.errors import CorruptStreamError
from errbound.stages.coders import speck
from errbound.stages.corrections import sperr_outliers
from errbound.stages.decompositions import wavelet

RNG = np.random.default_rng(20250101)
SPLITS = (wavelet.SPLIT_NONE, wavelet.SPLIT_SLOWEST, wavelet.SPLIT_ALL)


# --------------------------------------------------------------------------- transform


@pytest.mark.parametrize("axis", range(4))
def test_one_level_matches_pywavelets_bior44(axis):
    pywt = pytest.importorskip("pywt")
    shape = (7, 13, 20, 33)  # odd and even lengths on every axis
    x = RNG.standard_normal(shape)
    buf = x.copy()
    wavelet._transform_axis(buf, axis, shape, False, wavelet.serial_map, 1)
    n = shape[axis]
    ne = n - n // 2
    approx, detail = pywt.dwt(x, "bior4.4", mode="reflect", axis=axis)  # whole-sample symmetric
    # pywavelets pads its output by two coefficients and has the opposite high-pass sign
    expected = np.concatenate(
        [np.take(approx, range(2, 2 + ne), axis=axis), -np.take(detail, range(2, 2 + n - ne), axis=axis)], axis=axis
    )
    np.testing.assert_allclose(buf, expected, atol=1e-8)  # pywavelets' taps have ~10 digits


@pytest.mark.parametrize(
    "shape", [(1,), (2,), (3,), (9,), (4097,), (5, 8), (33, 17), (999, 64), (3, 9, 16), (17, 96, 33), (5, 9, 8, 11)]
)
@pytest.mark.parametrize("split", SPLITS)
def test_multilevel_transform_inverts(shape, split):
    x = RNG.standard_normal(shape) * 100
    s4 = (1,) * (4 - len(shape)) + shape
    buf = x.reshape(s4).copy()
    levels = wavelet.level_counts(s4)
    groups = wavelet.axis_groups(s4, split)
    wavelet.forward(buf, levels, groups)
    if max(levels) > 0:
        assert not np.allclose(buf.reshape(shape), x)
    wavelet.inverse(buf, levels, groups)
    assert np.max(np.abs(buf.reshape(shape) - x)) < 1e-11 * np.max(np.abs(x))


def test_level_counts_follow_the_length():
    assert [wavelet.level_count(n) for n in (1, 7, 8, 15, 16, 31, 32, 255, 256, 10**6)] == [
        0,
        0,
        1,
        1,
        2,
        2,
        3,
        5,
        6,
        6,
    ]


# --------------------------------------------------------------------------- SPECK


@pytest.mark.parametrize("shape", [(1,), (2,), (45,), (9, 13), (5, 6, 7), (3, 4, 5, 6), (64, 70, 3), (600, 500)])
@pytest.mark.parametrize("split", SPLITS)
def test_speck_round_trip_is_exact(shape, split):
    s4 = (1,) * (4 - len(shape)) + shape
    dims = np.array(s4, np.int64)
    levels = wavelet.level_counts(s4)
    groups = wavelet.axis_groups(s4, split)
    mags = (RNG.pareto(1.5, size=int(np.prod(shape))) * 3).astype(np.int64)
    mags[RNG.random(mags.size) < 0.5] = 0  # zeros, as after quantization
    values = mags | np.where(RNG.random(mags.size) < 0.5, np.int64(1) << 62, 0) * (mags > 0)
    roots = speck.stream_roots(dims, levels, groups)
    streams = [speck.encode_stream(values, dims, levels, groups, r) for r in roots]
    decoded = np.zeros_like(values)
    for (top, data), root in zip(streams, roots, strict=True):
        assert speck.decode_stream(data, top, decoded, dims, levels, groups, root)
    np.testing.assert_array_equal(decoded, values)
    if len(streams[0][1]) > 1:  # one byte less is detected
        top, data = streams[0]
        assert not speck.decode_stream(data[:-1], top, np.zeros_like(values), dims, levels, groups, roots[0])


def test_quantize_is_midtread_and_dequantize_restores_the_grid():
    coef = np.array([0.0, -0.0, 0.49, 0.5, -1.49, 2.51, -7.0])
    v = np.empty(coef.size, np.int64)
    speck.quantize(coef, 1.0, v)
    out = np.empty_like(coef)
    speck.dequantize(v, 1.0, out)
    np.testing.assert_array_equal(out, [0, 0, 0, 1, -1, 3, -7])
    assert np.all(np.abs(out - coef) <= 0.5)


# --------------------------------------------------------------------------- outliers


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_outlier_stage_meets_the_bound_after_the_cast(dtype):
    x = (RNG.standard_normal(5000) * 1e3).astype(dtype)
    x[[3, 17, 400]] = [np.nan, -np.inf, -0.0]
    eb = 0.1
    recon = x.astype(np.float64) + RNG.uniform(-3 * eb, 3 * eb, x.size)  # plenty of misses
    recon[~np.isfinite(recon)] = 0.0
    step = sperr_outliers.correction_step(eb, sperr_outliers.STEP_FACTOR)
    ci, ck, ei = sperr_outliers.find(x, recon, eb, step, dtype == np.float32)
    assert set(ei) >= {3, 17, 400} and ci.size > 1000
    data, bc, be, unit = sperr_outliers.encode(ci, ck, ei)
    found = sperr_outliers.decode(data, ci.size, ei.size, bc, be, unit, x.size)
    assert found is not None
    for a, b in zip(found, (ci, ck, ei), strict=True):
        np.testing.assert_array_equal(a, b)
    sperr_outliers.apply_corrections(recon, ci, ck, step)
    out = recon.astype(dtype)
    out[ei] = x[ei]
    check_roundtrip(x, out, "abs", eb)
    assert sperr_outliers.decode(data[:-1], ci.size, ei.size, bc, be, unit, x.size) is None


# --------------------------------------------------------------------------- the codec


def _smooth(shape, dtype=np.float32):
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    return (sum(np.sin((k + 1.3) * g) for k, g in enumerate(grids)) + 0.01 * RNG.standard_normal(shape)).astype(dtype)


def test_chunks_and_threads_do_not_change_the_stream():
    x = _smooth((40, 37, 50))
    x[3, 4, 5] = np.nan
    previous = numba.get_num_threads()
    blobs = []
    try:
        for threads in (1, min(2, numba.config.NUMBA_NUM_THREADS)):
            numba.set_num_threads(threads)
            blobs.append(errbound.compress(x, "sperr", rel=1e-3, chunk=16))
    finally:
        numba.set_num_threads(previous)
    assert blobs[0] == blobs[1]
    check_roundtrip(x, errbound.decompress(blobs[0]), "rel", 1e-3)
    _, sections = errbound.stream.unpack(blobs[0])
    assert sperr._HEAD.unpack_from(bytes(sections["sperr"]))[4] == 3 * 3 * 4  # chunks of <= 16 per axis
    single = errbound.compress(x, "sperr", rel=1e-3)
    check_roundtrip(x, errbound.decompress(single), "rel", 1e-3)


def test_constant_chunks_cost_a_header_only():
    x = np.full((64, 64), np.float32(2.75))
    blob = errbound.compress(x, "sperr", abs=1e-3)
    assert len(blob) < 800
    np.testing.assert_array_equal(errbound.decompress(blob), x)


def test_bad_options_are_refused():
    x = _smooth((20, 20))
    for bad in ({"step_factor": 0.0}, {"step_factor": "2"}, {"step_factor": True}, {"chunk": 4}, {"chunk": 2.5}):
        with pytest.raises(ValueError):
            errbound.compress(x, "sperr", rel=1e-3, **bad)


def test_damaged_speck_section_is_detected():
    x = _smooth((30, 40, 20))
    blob = errbound.compress(x, "sperr", rel=1e-3)
    header, sections = errbound.stream.unpack(blob)
    codec = sperr.SperrCodec()
    damaged = dict(sections)
    body = bytearray(sections["speck"])
    body[len(body) // 2] ^= 0x10
    damaged["speck"] = bytes(body)
    with pytest.raises(CorruptStreamError):
        codec.decode(header.stages, damaged, x.shape, x.dtype, header.abs_bound)


@pytest.mark.parametrize("target", [30.0, 60.0, 95.0])
def test_direct_psnr_lands_within_half_a_decibel(target):
    x = _smooth((50, 60, 40))
    blob = errbound.compress(x, "sperr", psnr=target)
    got = psnr_of(x, errbound.decompress(blob))
    assert target <= got <= target + 0.5
    assert errbound.info(blob)["codec"] == "sperr"


@pytest.mark.filterwarnings("error")
@pytest.mark.parametrize("target", [1.0, 3.0])
def test_a_low_psnr_target_on_float32_raises_no_warning(target):
    # the step search compared its (then huge) step with a float32 eps, and numpy warned
    # "overflow encountered in cast" to every caller asking for a few dB
    x = np.random.default_rng(0).standard_normal((8, 6, 8)).astype(np.float32)
    got = psnr_of(x, errbound.decompress(errbound.compress(x, "sperr", psnr=target)))
    assert got >= target


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(2, 4096), (2, 2, 512), (2, 2, 2, 128)])
def test_a_psnr_target_over_a_constant_chunk_beside_a_spike(shape, dtype):
    """A constant chunk leaves the summed error flat in the step: the step search ran past
    the float range (OverflowError) on two chunks, one a lone spike, one constant."""
    x = np.zeros(shape, dtype)
    x.reshape(-1)[5] = 1.0
    half = [slice(None)] * len(shape)
    half[-1] = slice(shape[-1] // 2, None)
    x[tuple(half)] = 1e9
    for target in (10.0, 30.0, 60.0):
        blob = errbound.compress(x, "sperr", psnr=target)
        assert psnr_of(x, errbound.decompress(blob)) >= target


@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(
    chunks=st.lists(
        st.tuples(st.sampled_from(["constant", "spike", "zeros", "noise"]), st.floats(-3, 9), st.booleans()),
        min_size=2,
        max_size=4,
    ),
    target=st.floats(5.0, 120.0),
    dtype=st.sampled_from([np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_psnr_targets_hold_over_chunks_of_any_kind(chunks, target, dtype, seed):
    """Property: a PSNR target holds (or the array is stored exactly) whatever each chunk
    holds, at magnitudes 1e-3..1e9 apart; chunks of 8 per side make each 8 x 8 block one
    chunk (a constant chunk beside a lone spike made the step search overflow)."""
    rng = np.random.default_rng(seed)
    blocks = []
    for kind, exponent, negative in chunks:
        level = (-1.0 if negative else 1.0) * 10.0**exponent
        block = np.zeros((8, 8))
        if kind == "constant":
            block[:] = level
        elif kind == "spike":
            block[rng.integers(8), rng.integers(8)] = level
        elif kind == "noise":
            block = rng.standard_normal((8, 8)) * level
        blocks.append(block)
    x = np.concatenate(blocks, axis=1).astype(dtype)
    y = errbound.decompress(errbound.compress(x, "sperr", psnr=target, chunk=8))
    if float(x.max()) > float(x.min()):
        assert psnr_of(x, y) >= target
    else:
        np.testing.assert_array_equal(y, x)


# --------------------------------------------------------------------------- shared fields

FIELDS = field_names()


@pytest.mark.parametrize(
    "name",
    FIELDS or [pytest.param("<no shared data>", marks=pytest.mark.skip(reason="shared data folder not present"))],
)
def test_bound_on_shared_field_float32_and_float64(name):
    data = load_field(name)
    for dtype in (np.float32, np.float64):
        x = data.astype(dtype)
        for rel in (1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
            blob = errbound.compress(x, "sperr", rel=rel)
            check_roundtrip(x, errbound.decompress(blob), "rel", rel)
            if rel >= 1e-4 and x.ndim >= 2:
                assert len(blob) < x.nbytes / 3
