"""Property tests of the central guarantee: for every codec (the lossless one included), bound mode, dtype, number of
dimensions (0-4) and memory layout (C, Fortran, strided view), decompress(compress(x)) keeps
every value within the bound (checked in the output dtype), keeps shape, dtype and memory
order, and returns NaN, +-Inf and -0.0 bit for bit. Bounds go from 1e-1 down to a few ulps."""

from __future__ import annotations

import zlib

import numpy as np
import pytest
from conftest import ALL_CODECS, DTYPES, MODES, PROPERTY_EXAMPLES, expected_order, roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

import errbound

MAX_SIDE = {0: 1, 1: 160, 2: 14, 3: 7, 4: 5}
LAYOUTS = ("C", "F", "strided")
NAN_PAYLOAD = {np.float32: np.uint32(0x7FC12345), np.float64: np.uint64(0xFFF8000000012345)}


def smooth_field(shape, dtype, rng, scale, offset, noise, specials):
    """Smooth (sum of sines over the axes) + white noise, scaled; optionally with specials."""
    n = int(np.prod(shape))
    if len(shape) == 0:
        base = np.array(rng.standard_normal())
    else:
        grids = np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shape], indexing="ij")
        base = np.zeros(shape)
        for g in grids:
            base = base + rng.uniform(0.2, 1.0) * np.sin(rng.uniform(0.01, 1.5) * g + rng.uniform(0, 6.3))
        base = base + noise * rng.standard_normal(shape)
    with np.errstate(over="ignore"):
        x = ((base + offset) * scale).astype(dtype)
    x = np.asarray(x)
    if specials and n:
        flat = x.reshape(-1)
        choices = [np.nan, np.inf, -np.inf, -0.0, 0.0, "payload"]
        for pos in rng.choice(n, size=min(n, int(rng.integers(1, 6))), replace=False):
            c = choices[int(rng.integers(len(choices)))]
            if c == "payload":
                flat[pos : pos + 1].view(NAN_PAYLOAD[dtype].dtype)[0] = NAN_PAYLOAD[dtype]
            else:
                flat[pos] = c
    return x


def in_layout(base: np.ndarray, layout: str) -> np.ndarray:
    if layout == "C" or base.ndim == 0:
        return np.ascontiguousarray(base) if base.ndim else base.copy()
    if layout == "F":
        out = np.asfortranarray(base)
        if sum(n > 1 for n in base.shape) >= 2:
            assert out.flags.f_contiguous and not out.flags.c_contiguous
        return out
    # every other element of a larger buffer along each axis, the last axis walked backwards
    big = np.zeros(tuple(2 * n + 1 for n in base.shape), base.dtype)
    view = big[tuple(slice(1, None, 2) for _ in base.shape)][..., ::-1]
    view[...] = base
    assert view.shape == base.shape and (base.size <= 1 or not view.flags.c_contiguous)
    return view


def draw_bound(draw, mode: str, x: np.ndarray) -> float:
    """From 1e-1 down to a few ulps of the data."""
    dtype = x.dtype
    finite = x[np.isfinite(x)].astype(np.float64)
    top = float(np.max(np.abs(finite))) if finite.size else 1.0
    rng_ = float(finite.max() - finite.min()) if finite.size else 0.0
    ulp = float(np.spacing(dtype.type(top))) if top > 0 else float(np.finfo(dtype).smallest_subnormal)
    tight = draw(st.booleans())
    if mode == "psnr":
        return float(draw(st.integers(10, 200 if tight else 120)))
    if mode == "pw_rel":
        if tight:
            return float(draw(st.integers(1, 16))) * float(np.finfo(dtype).eps)
        return 10.0 ** -draw(st.floats(1, 6.5))
    if tight:
        k = draw(st.integers(1, 16))
        if mode == "abs":
            return k * ulp
        return k * ulp / rng_ if rng_ > 0 else 1e-7
    frac = 10.0 ** -draw(st.floats(1, 7.5))
    return frac * (top or 1.0) if mode == "abs" else frac


@st.composite
def cases(draw, dtype):
    ndim = draw(st.integers(0, 4))
    shape = tuple(draw(st.integers(1, MAX_SIDE[ndim])) for _ in range(ndim))
    layout = draw(st.sampled_from(LAYOUTS))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = 10.0 ** draw(st.integers(-25, 25) if dtype is np.float64 else st.integers(-15, 15))
    offset = draw(st.sampled_from([0.0, 0.5, 3.0, -40.0]))
    noise = draw(st.sampled_from([0.0, 1e-3, 0.05, 1.0]))
    specials = draw(st.booleans())
    rng = np.random.default_rng(seed)
    base = smooth_field(shape, dtype, rng, scale, offset, noise, specials)
    return in_layout(base, layout)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("codec", ALL_CODECS)
@settings(max_examples=PROPERTY_EXAMPLES)
@given(data=st.data())
def test_bound_holds_for_random_fields(codec, mode, dtype, data):
    x = data.draw(cases(dtype), label="array")
    value = draw_bound(data.draw, mode, x)
    data.draw(st.just(value), label=f"{mode} bound")
    before = x.copy()
    roundtrip(x, codec, mode, value)
    np.testing.assert_array_equal(x, before)  # the input is never modified


# A fixed grid so every (codec, mode, dtype, ndim, layout) combination runs on every CI run,
# whatever hypothesis happens to draw.
GRID_SHAPES = {0: (), 1: (45,), 2: (9, 13), 3: (5, 6, 7), 4: (3, 4, 5, 6)}
GRID = [
    (ndim, layout)
    for ndim in GRID_SHAPES
    for layout in LAYOUTS
    if not (ndim == 0 and layout != "C") and not (ndim == 1 and layout == "F")
]


def grid_bounds(mode, x):
    top = float(np.max(np.abs(x)))
    ulp = float(np.spacing(x.dtype.type(top)))
    rng_ = float(x.max()) - float(x.min())
    return {
        "abs": [1e-1, 3 * ulp],
        "rel": [1e-1, 3 * ulp / rng_ if rng_ else 1e-7],
        "pw_rel": [1e-1, 4 * float(np.finfo(x.dtype).eps)],
        "psnr": [30.0, 140.0],
    }[mode]


@pytest.mark.parametrize("ndim,layout", GRID, ids=[f"{n}d-{lay}" for n, lay in GRID])
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("codec", ALL_CODECS)
def test_bound_holds_on_every_layout(codec, mode, dtype, ndim, layout):
    rng = np.random.default_rng(1000 + ndim)
    base = smooth_field(GRID_SHAPES[ndim], dtype, rng, 7.0, 3.0, 0.01, specials=False)
    if base.size > 3:  # one of each special value, away from the first point
        flat = base.reshape(-1)
        flat[1], flat[-1], flat[base.size // 2] = np.nan, -0.0, -np.inf
    x = in_layout(base, layout)
    assert expected_order(x) == ("F" if layout == "F" and ndim >= 2 else "C")
    for value in grid_bounds(mode, np.where(np.isfinite(x), x, 0).astype(dtype)):
        roundtrip(x, codec, mode, value)


@pytest.mark.parametrize("codec", ALL_CODECS)
def test_big_endian_input_round_trips_in_its_own_byte_order(codec):
    x = smooth_field((20, 30), np.float64, np.random.default_rng(5), 1.0, 0.0, 0.01, True)
    for dtype in (">f4", ">f8"):
        y = np.asfortranarray(x.astype(dtype))
        for mode, value in (("abs", 1e-4), ("pw_rel", 1e-3)):
            _, out = roundtrip(y, codec, mode, value)
            assert out.dtype == np.dtype(dtype)


# Shapes past the anchor grid of the interpolation predictor (stored exact anchors every
# 4096 / 128 / 32 / 16 points in 1-4 effective dimensions) and past the size where the sz
# policy starts to sample blocks instead of trying the whole array.
LARGE_SHAPES = {
    "1d-anchored": (4096 * 2 + 3,),
    "2d-anchored": (131, 7),
    "3d-anchored": (33, 5, 3),
    "4d-anchored": (17, 3, 2, 3),
    "2d-sampled": (290, 260),
    "3d-sampled": (50, 40, 36),
}


@pytest.mark.parametrize("shape_name", list(LARGE_SHAPES))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("codec", ALL_CODECS)
def test_bound_holds_on_anchored_and_sampled_shapes(codec, dtype, shape_name):
    rng = np.random.default_rng(zlib.crc32(shape_name.encode()))
    x = smooth_field(LARGE_SHAPES[shape_name], dtype, rng, 50.0, 1.0, 0.02, specials=True)
    top = float(np.max(np.abs(x[np.isfinite(x)])))
    ulp = float(np.spacing(dtype(top)))
    for mode, value in (
        ("abs", 1e-2 * top),
        ("abs", 5 * ulp),
        ("rel", 1e-5),
        ("pw_rel", 1e-3),
        ("pw_rel", 8 * float(np.finfo(dtype).eps)),
        ("psnr", 70.0),
    ):
        roundtrip(x, codec, mode, value)
    roundtrip(np.asfortranarray(x), codec, "abs", 1e-3 * top)


@pytest.mark.parametrize("codec", ALL_CODECS)
def test_read_only_and_subclassed_input(codec):
    x = smooth_field((30, 40), np.float32, np.random.default_rng(9), 3.0, 0.0, 0.01, True)
    ro = np.frombuffer(x.tobytes(), np.float32).reshape(30, 40)
    assert not ro.flags.writeable
    roundtrip(ro, codec, "abs", 1e-3)
    roundtrip(ro, codec, "pw_rel", 1e-3)
    sub = x.view(_Subclass)
    blob, out = roundtrip(sub, codec, "abs", 1e-3)
    assert type(out) is np.ndarray


class _Subclass(np.ndarray):
    pass


@st.composite
def long_cases(draw, dtype):
    """Arrays of RANS_MIN_CODES to 4x that many values (1-3 D, every layout): there ``sz``'s
    ratio-first coding tries rANS, gated on Huffman + zstd 3, beside zstd at BEST_ZSTD_LEVEL."""
    from errbound.codecs.sz.policy import RANS_MIN_CODES

    ndim = draw(st.integers(1, 3))
    size = draw(st.integers(RANS_MIN_CODES, 4 * RANS_MIN_CODES))
    lead = [draw(st.integers(2, 24)) for _ in range(ndim - 1)]
    shape = (*lead, -(-size // max(int(np.prod(lead)), 1)))
    layout = draw(st.sampled_from(LAYOUTS if ndim > 1 else ("C", "strided")))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = 10.0 ** draw(st.integers(-25, 25) if dtype is np.float64 else st.integers(-15, 15))
    noise = draw(st.sampled_from([0.0, 1e-3, 0.05, 1.0]))
    specials = draw(st.booleans())
    base = smooth_field(shape, dtype, np.random.default_rng(seed), scale, 0.5, noise, specials)
    return in_layout(base, layout)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(data=st.data())
def test_bound_holds_for_ratio_first_sz_past_the_rans_threshold(mode, dtype, data):
    from errbound.codecs.sz.policy import BEST_ZSTD_LEVEL

    x = data.draw(long_cases(dtype), label="array")
    value = draw_bound(data.draw, mode, x)
    data.draw(st.just(value), label=f"{mode} bound")
    blob, _ = roundtrip(x, "sz", mode, value, entropy="best")
    meta = errbound.info(blob)
    if meta["codec"] == "sz":  # not stored exactly (bounds below a few ulps)
        assert [s["params"]["level"] for s in meta["stages"] if s["name"] == "zstd"] == [BEST_ZSTD_LEVEL]


@st.composite
def sampled_cases(draw, dtype):
    """Arrays that ``auto`` chooses for from a sample (WHOLE_BELOW to 4x that many values),
    1-4 D, with short axes (the blocks then keep their volume along the others), every layout."""
    from errbound.codecs.auto import WHOLE_BELOW

    ndim = draw(st.integers(1, 4))
    size = draw(st.integers(WHOLE_BELOW, 4 * WHOLE_BELOW))
    lead = [draw(st.sampled_from([2, 3, 5, 16, 40])) for _ in range(ndim - 1)]
    shape = (*lead, -(-size // max(int(np.prod(lead)), 1)))
    if draw(st.booleans()):
        shape = shape[::-1]  # the short axes last
    layout = draw(st.sampled_from(LAYOUTS if ndim > 1 else ("C", "strided")))
    seed = draw(st.integers(0, 2**32 - 1))
    noise = draw(st.sampled_from([0.0, 1e-3, 0.05]))
    specials = draw(st.booleans())
    base = smooth_field(shape, dtype, np.random.default_rng(seed), 1.0, 0.5, noise, specials)
    return in_layout(base, layout)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("mode", MODES)
@settings(max_examples=max(PROPERTY_EXAMPLES // 4, 3), deadline=None)
@given(data=st.data())
def test_bound_holds_for_auto_chosen_from_a_sample(mode, dtype, data):
    """``auto``'s sampled path (block shapes for short axes, one header a sample, the wide
    final round for small samples; for psnr also sperr's own search) keeps every bound."""
    x = data.draw(sampled_cases(dtype), label="array")
    value = draw_bound(data.draw, mode, x)
    data.draw(st.just(value), label=f"{mode} bound")
    blob, _ = roundtrip(x, "auto", mode, value)
    picked = [s["params"]["codec"] for s in errbound.info(blob)["stages"] if s["name"] == "auto"]
    assert picked in ([], ["fz"], ["sz"], ["sperr"], ["hlr"])  # none where stored exactly
