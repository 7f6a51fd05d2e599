"""The `zfp` codec's tolerance search (errbound/codecs/zfp/policy.py).

zfp's fixed-accuracy mode is given a multiple of the bound; these tests hold the search to
what makes that safe and worth it: the sampled blocks code exactly as they do inside the
array, the pick is (close to) the best multiple on the whole array, every value stays
within the bound whatever is picked (specials, tiny and huge bounds, every mode, dtype and
dimensionality), and ``tolerance="bound"`` still writes zfpy's own stream."""

from __future__ import annotations

import math

import numpy as np
import pytest
import zfpy
from conftest import DTYPES, MODES, PROPERTY_EXAMPLES, roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

import errbound
from errbound.codecs.zfp import policy
from errbound.errors import CorruptStreamError
from errbound.stages.coders import zfp
from errbound.stream import pack, unpack


def smooth(shape, dtype, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    x = sum(np.sin((1.0 + k) * g + k) for k, g in enumerate(grids)) + noise * rng.standard_normal(shape)
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1301,), (70, 71), (29, 28, 30), (16, 17, 18, 19)])
def test_sampled_blocks_code_as_they_do_inside_the_array(shape, dtype):
    # zfp codes each block on its own in fixed-accuracy mode: the sample's reconstruction
    # is, bit for bit, the array's reconstruction at the same blocks
    x = smooth(shape, dtype)
    eb = 1e-3 * float(np.ptp(x))
    sample = policy.sample_blocks(x)
    assert sample is not None and sample.size < x.size / 4
    for multiple in (1, 4, 16):
        tol = policy.tolerance(eb, multiple)
        whole = zfp.decode(zfp.encode(x, tol), x.shape, x.dtype)
        alone = zfp.decode(zfp.encode(sample, tol), sample.shape, sample.dtype)
        assert np.array_equal(policy.sample_blocks(whole).view(np.uint8), alone.view(np.uint8))


@pytest.mark.parametrize("shape", [(64, 64, 64, 64), (512, 512, 512), (8, 1 << 16, 1 << 13)])
def test_the_sample_fits_zfps_header(shape):
    # the blocks are stacked along one axis: a 64^4 array's 1/32 share would be 8192 blocks
    # there, and 4-D zfp headers hold 4096 (zfpy raised RuntimeError on such arrays)
    sample = policy.sample_blocks(np.broadcast_to(np.float32(0), shape))
    assert sample is not None and sample.ndim == len(shape)
    assert all(n <= zfp.SIZE_LIMIT[sample.ndim] for n in sample.shape)
    assert sample.shape[0] >= policy.BLOCK * policy.SAMPLE_MIN_BLOCKS


def test_a_large_4d_array_compresses():
    x = smooth((64, 64, 64, 64), np.float32, seed=9)  # 64 MiB: the sample is capped
    roundtrip(x, "zfp", "rel", 1e-3)


def test_too_few_blocks_give_no_sample():
    assert policy.sample_blocks(np.zeros((30, 30), np.float32)) is None  # 49 blocks
    assert policy.sample_blocks(np.zeros(3, np.float32)) is None  # no whole block


@pytest.mark.parametrize("eb", [1e-3, 0.75, 1.0, 2.0**-1022, 1e300])
def test_tolerance_is_a_multiple_of_the_bounds_bit_plane(eb):
    _, exponent = math.frexp(eb)
    assert policy.tolerance(eb, 1) == eb
    for multiple in (2, 8):
        tol = policy.tolerance(eb, multiple)
        assert tol == math.ldexp(multiple, exponent - 1) or (tol == math.inf and eb > 1e300)
    assert policy.tolerance(1e308, 1 << 16) == math.inf


@pytest.mark.parametrize("shape,dtype", [((131072,), np.float64), ((300, 280), np.float32), ((48, 48, 48), np.float32)])
def test_search_finds_the_best_multiple_of_the_whole_array(shape, dtype):
    x = smooth(shape, dtype, seed=3)
    assert x.size >= policy.SEARCH_MIN_VALUES
    for rel in (1e-2, 1e-4):
        eb = rel * float(np.ptp(x))
        sizes = {m: policy.coded_size(x, eb, m) for m in (1, 2, 4, 8, 16, 32, 64)}
        chosen = policy.choose_tolerance(x, eb)
        picked = {policy.tolerance(eb, m): m for m in sizes}.get(chosen)
        assert picked is not None, f"picked tolerance {chosen} = {chosen / eb:.1f} eb, beyond the multiples tried"
        assert sizes[picked] <= 1.03 * min(sizes.values()), (rel, picked, sizes)
        assert sizes[picked] < 0.95 * sizes[1]  # and it pays


def test_tuned_streams_are_smaller_and_within_the_bound():
    x = smooth((48, 48, 48), np.float32, seed=5)
    for rel in (1e-2, 1e-3, 1e-4):
        tuned, _ = roundtrip(x, "zfp", "rel", rel)
        plain, _ = roundtrip(x, "zfp", "rel", rel, tolerance="bound")
        assert len(tuned) < 0.85 * len(plain), rel
        header, _ = unpack(tuned)
        (record,) = header.stages
        assert record["params"]["tolerance"] > header.abs_bound  # what was given to zfpy is recorded


def test_bound_tolerance_writes_zfpys_own_stream():
    x = smooth((40, 50), np.float64, seed=6)
    eb = 1e-3
    header, sections = unpack(errbound.compress(x, "zfp", abs=eb, tolerance="bound"))
    assert bytes(sections["zfp"]) == zfpy.compress_numpy(x, tolerance=eb, write_header=True)
    assert header.stages[0]["params"]["tolerance"] == eb


def test_unknown_tolerance_option_is_refused():
    with pytest.raises(ValueError, match="zfp tolerance"):
        errbound.compress(np.zeros(10), "zfp", abs=1e-3, tolerance="loose")


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 1), (1, 1, 5000), (30, 1, 40), (6, 1, 7, 1)])
def test_axes_of_size_one_are_not_coded(shape):
    # zfp pads every axis to a block of 4: a unit axis coded as such cost up to twice the bytes
    squeezed = tuple(n for n in shape if n != 1) or (1,)
    x = smooth(squeezed, np.float32, seed=7).reshape(shape)
    blob, _ = roundtrip(x, "zfp", "rel", 1e-3)
    same, _ = roundtrip(x.reshape(squeezed), "zfp", "rel", 1e-3)
    header, sections = unpack(blob)
    assert header.codec_version == 2 and header.stages[0]["params"]["shape"] == list(squeezed)
    assert bytes(sections["zfp"]) == bytes(unpack(same)[1]["zfp"])


@pytest.mark.parametrize("mode,value", [("abs", 1e-3), ("pw_rel", 1e-2), ("psnr", 70.0)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_coded_shapes_keep_the_bound_in_fortran_order_with_specials(mode, value, dtype):
    # a Fortran array's kernel layout is its axes reversed: the stage names that order
    x = np.asfortranarray(smooth((300, 1, 230), dtype, seed=10))
    x[3, 0, 5], x[7, 0, 9], x[11, 0, 1], x[200, 0, 100] = np.nan, np.inf, -np.inf, -0.0
    blob, _ = roundtrip(x, "zfp", mode, value)
    header, _ = unpack(blob)
    zfp_record = next(r for r in header.stages if r["name"] == "zfp-accuracy")
    assert header.codec_version == 2 and zfp_record["params"]["shape"] == [230, 300]


def test_a_shape_of_the_same_count_in_another_order_is_refused():
    x = smooth((1, 120, 90), np.float32, seed=11)
    header, sections = unpack(errbound.compress(x, "zfp", rel=1e-3))
    assert header.stages[0]["params"]["shape"] == [120, 90]
    for forged in ([90, 120], [10800], [120, 1, 90], [4, 30, 90]):
        header.stages[0]["params"]["shape"] = forged
        with pytest.raises(CorruptStreamError):
            errbound.decompress(pack(header, list(sections.items())))


@pytest.mark.parametrize(
    "shape,coded",
    [
        ((2, 96, 192), (192, 192)),
        ((17, 3, 192), (17, 576)),
        ((17, 96, 2), (17, 192)),
        ((65536, 2), (131072,)),
        ((2, 3), (6,)),
        ((4096, 2, 2, 2), (4096, 8)),
        ((5, 6, 7, 8), (5, 6, 7, 8)),
    ],
)
def test_axes_of_two_or_three_values_are_merged_into_a_neighbour(shape, coded):
    assert zfp.coded_shape(shape) == coded


@pytest.mark.parametrize("shape", [(2, 96, 192), (40, 3, 100), (60, 70, 2)])
def test_merging_thin_axes_pays(shape):
    # zfp pads a 2- or 3-value axis to 4: the merged shape codes the same values in fewer bytes
    x = smooth(shape, np.float32, seed=12)
    eb = 1e-3 * float(np.ptp(x))
    roundtrip(x, "zfp", "abs", eb)
    for multiple in (1, 4):  # the same tolerance for both shapes: only the shape differs
        tol = policy.tolerance(eb, multiple)
        merged = zfp.encode(x.reshape(zfp.coded_shape(shape)), tol)
        assert len(merged) < 0.9 * len(zfp.encode(x, tol))


def test_sizes_beyond_zfps_header_are_merged_into_slower_axes():
    # zfp's header holds 16 bits per size in 3-D: zfpy could not write this array at all
    x = smooth((4, 5, 70000), np.float32, seed=8)
    blob, _ = roundtrip(x, "zfp", "rel", 1e-3)
    assert unpack(blob)[0].stages[0]["params"]["shape"] == [20, 70000]
    assert zfp.coded_shape((5000, 4, 5, 7)) == (20000, 5, 7)  # 4-D: 12 bits per size
    assert zfp.coded_shape((70000, 100, 100)) == (7000000, 100)
    assert zfp.coded_shape((70000, 70000, 30000)) == (70000 * 70000 * 30000,)


def test_streams_coded_in_their_own_shape_stay_version_1():
    # older errbounds read them; only a stream that names its coded shape needs v2
    header, _ = unpack(errbound.compress(smooth((30, 40), np.float64), "zfp", abs=1e-3))
    assert header.codec_version == 1 and "shape" not in header.stages[0]["params"]


@st.composite
def searched_arrays(draw):
    """Arrays that take the search path (SEARCH_MIN_VALUES is lowered for them), noisy or
    smooth, with specials, in every dtype, 1-4 dimensions and both memory orders, some with
    an axis of 1-3 values (a coded shape other than their own)."""
    ndim = draw(st.integers(1, 4))
    side = {1: (1100, 3000), 2: (64, 90), 3: (28, 36), 4: (16, 19)}[ndim]  # >= 256 blocks
    shape = [draw(st.integers(*side)) for _ in range(ndim)]
    thin = draw(st.sampled_from([None, 1, 2, 3])) if ndim < 4 else None
    if thin is not None:
        shape.insert(draw(st.integers(0, ndim)), thin)
    dtype = draw(st.sampled_from(DTYPES))
    seed = draw(st.integers(0, 2**31))
    rng = np.random.default_rng(seed)
    x = smooth(tuple(shape), np.float64, seed, noise=draw(st.sampled_from([0.0, 0.01, 1.0])))
    x = (x * draw(st.sampled_from([1.0, 1e-30, 1e30]))).astype(dtype)
    assert policy.sample_blocks(x.reshape(zfp.coded_shape(x.shape))) is not None
    flat = x.reshape(-1)
    for pos in rng.choice(x.size, size=int(rng.integers(0, 6)), replace=False):
        flat[pos] = rng.choice([np.nan, np.inf, -np.inf, -0.0])
    return np.asfortranarray(x) if draw(st.booleans()) else x


def test_bound_holds_whatever_the_search_picks(monkeypatch):
    # small arrays take the search here (the threshold is lowered for this test only)
    monkeypatch.setattr(policy, "SEARCH_MIN_VALUES", 1024)

    @settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
    @given(x=searched_arrays(), mode=st.sampled_from(MODES), exponent=st.integers(-6, -1), ulps=st.booleans())
    def holds(x, mode, exponent, ulps):
        if ulps and mode == "abs":  # a few ulps of the largest finite value
            finite = np.abs(x[np.isfinite(x)])
            value = 3 * float(np.spacing(finite.max().astype(x.dtype))) if finite.size else 1e-3
        else:
            value = {"psnr": 20.0 * -exponent}.get(mode, 10.0**exponent)
        roundtrip(x, "zfp", mode, value)

    holds()
