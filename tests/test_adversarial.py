"""Named adversarial arrays through every lossy codec and every bound mode: constants, empty
arrays, single values, huge dynamic range, denormals, sign flips, spikes, NaN/Inf mixes,
values near the float maximum, bounds larger than the data, and incompressible noise."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import ALL_CODECS, DTYPES, MODES, roundtrip

RNG_SEED = 20240611


def _huge_range(dtype, n=600):
    rng = np.random.default_rng(RNG_SEED)
    return (10.0 ** rng.uniform(-30, 30, n)) * rng.choice([-1.0, 1.0], n)  # within float32 range too


def _denormals(dtype, n=400):
    rng = np.random.default_rng(RNG_SEED + 1)
    tiny = np.finfo(dtype).smallest_subnormal
    return rng.integers(-300, 300, n) * np.float64(tiny)  # exact multiples of the smallest step


def _near_max(dtype, n=500):
    rng = np.random.default_rng(RNG_SEED + 2)
    big = float(np.finfo(dtype).max)
    x = big * rng.uniform(0.9, 1.0, n) * rng.choice([-1.0, 1.0], n)
    x[::7] = big  # exact maxima next to each other: a prediction 2a - b overflows
    x[1::7] = -big
    return x


def _smooth_near_max(dtype, n=300):
    big = float(np.finfo(dtype).max)
    return big * (0.999 - 0.0005 * np.cos(np.linspace(0, 20, n)))


def _mixed_nan(dtype, n=300):
    rng = np.random.default_rng(RNG_SEED + 3)
    x = np.sin(np.linspace(0, 9, n)) * 100
    x[rng.random(n) < 0.3] = np.nan
    return x


def _inf_mix(dtype, n=300):
    rng = np.random.default_rng(RNG_SEED + 4)
    x = np.cos(np.linspace(0, 9, n)) * 5
    r = rng.random(n)
    x[r < 0.15] = np.inf
    x[r > 0.85] = -np.inf
    return x


def _everything_special(dtype):
    return np.array([np.nan, np.inf, -np.inf, -0.0, 0.0, 1.0, -1.0, np.nan, -0.0, 3e-30, -2e30] * 9)


def _spike(dtype, n=257):
    x = np.zeros(n)
    x[n // 2] = 1e6
    return x


def _spike_3d(dtype):
    x = np.zeros((9, 10, 11))
    x[4, 5, 6] = -3e4
    return x


def _alternating(dtype, n=500):
    return np.where(np.arange(n) % 2, 1.0, -1.0) * (1 + 1e-3 * np.arange(n))


def _alternating_2d(dtype):
    i, j = np.indices((31, 29))
    return np.where((i + j) % 2, 1e3, -1e3)


def _step(dtype, n=400):
    return np.where(np.arange(n) < n // 2, -5e5, 7e5) + np.linspace(0, 1, n)


def _ramp_large_offset(dtype, n=500):
    return 1e7 + np.arange(n) * 0.125


ADVERSARIAL = {
    "zeros": lambda dt: np.zeros((13, 17)),
    "negative_zeros": lambda dt: np.full((6, 7, 5), -0.0),
    "mixed_signed_zeros": lambda dt: np.where(np.arange(200) % 3 == 0, -0.0, 0.0),
    "constant": lambda dt: np.full((40, 30), 3.25),
    "constant_negative_4d": lambda dt: np.full((3, 4, 5, 6), -1e-3),
    "empty_1d": lambda dt: np.zeros((0,)),
    "empty_2d": lambda dt: np.zeros((3, 0)),
    "empty_4d": lambda dt: np.zeros((2, 0, 3, 1)),
    "one_element": lambda dt: np.array([1.5]),
    "one_element_4d": lambda dt: np.full((1, 1, 1, 1), -7.0),
    "zero_d": lambda dt: np.array(2.5),
    "zero_d_nan": lambda dt: np.array(np.nan),
    "zero_d_negative_zero": lambda dt: np.array(-0.0),
    "huge_dynamic_range": _huge_range,
    "denormals": _denormals,
    "alternating_signs": _alternating,
    "checkerboard": _alternating_2d,
    "spike_in_zeros": _spike,
    "spike_in_zeros_3d": _spike_3d,
    "step": _step,
    "large_offset_ramp": _ramp_large_offset,
    "all_nan": lambda dt: np.full((5, 9), np.nan),
    "nan_and_finite": _mixed_nan,
    "inf_and_finite": _inf_mix,
    "all_inf": lambda dt: np.where(np.arange(64) % 2, np.inf, -np.inf),
    "every_special": _everything_special,
    "near_float_max": _near_max,
    "smooth_near_float_max": _smooth_near_max,
    "long_thin": lambda dt: np.sin(np.linspace(0, 30, 5000)).reshape(5000, 1),
    "unit_axes": lambda dt: np.cos(np.linspace(0, 3, 60)).reshape(1, 60, 1, 1),
}


def make(name, dtype):
    with np.errstate(over="ignore"):
        x = np.asarray(ADVERSARIAL[name](dtype)).astype(dtype)
    assert not np.isinf(x[np.isfinite(ADVERSARIAL[name](dtype))]).any(), f"{name} overflows {dtype}"
    return x


def default_bounds(mode, x):
    """A typical bound and a tight one (a few ulps of the data where the data allow)."""
    finite = x[np.isfinite(x)].astype(np.float64)
    top = float(np.abs(finite).max()) if finite.size else 1.0
    with np.errstate(over="ignore"):
        ulp = float(np.spacing(x.dtype.type(top))) if top else float(np.finfo(x.dtype).smallest_subnormal)
        span = float(finite.max() - finite.min()) if finite.size else 0.0
    if mode == "abs":
        return [1e-3 * top if top else 1e-3, 2 * ulp, 1e-3]
    if mode == "rel":
        return [1e-3, 2 * ulp / span if 0 < span < np.inf else 1e-9]
    if mode == "pw_rel":
        return [1e-3, 2 * float(np.finfo(x.dtype).eps)]
    return [40.0, 120.0]


@pytest.mark.parametrize("name", list(ADVERSARIAL))
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("codec", ALL_CODECS)
def test_adversarial_array(codec, mode, dtype, name):
    x = make(name, dtype)
    for value in default_bounds(mode, x):
        if value <= 0 or not np.isfinite(value):
            continue
        roundtrip(x, codec, mode, value)
        if x.ndim >= 2:
            roundtrip(np.asfortranarray(x), codec, mode, value)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("codec", ALL_CODECS)
def test_bounds_larger_than_the_data_range(codec, dtype):
    x = make("large_offset_ramp", dtype)
    span = float(x.max()) - float(x.min())
    for mode, value in (
        ("abs", 10 * span),
        ("abs", 1e20),
        ("rel", 5.0),
        ("rel", 1e6),
        ("pw_rel", 0.999999),
        ("pw_rel", 0.5),
        ("psnr", 1.0),
        ("psnr", 1e-3),
    ):
        roundtrip(x, codec, mode, value)
    small = make("denormals", dtype)
    roundtrip(small, codec, "abs", 1.0)
    roundtrip(small, codec, "abs", float(np.finfo(dtype).max))  # a bound at the float maximum


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("codec", ALL_CODECS)
def test_incompressible_noise_does_not_expand(codec, mode, dtype):
    rng = np.random.default_rng(RNG_SEED + 9)
    x = rng.standard_normal((64, 80)).astype(dtype) * dtype(1e3)
    tiny = {
        "abs": float(np.spacing(dtype(1e3))) * 0.5,
        "rel": 1e-12,
        "pw_rel": float(np.finfo(dtype).eps),
        "psnr": 250.0,
    }[mode]
    blob, _ = roundtrip(x, codec, mode, tiny)
    assert len(blob) <= x.nbytes + 1024, f"{len(blob)} bytes for {x.nbytes} bytes of noise"


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("codec", ALL_CODECS)
def test_constant_array_compresses_well(codec, dtype):
    x = np.full((64, 64), dtype(2.75))
    blob, _ = roundtrip(x, codec, "abs", 1e-3)
    assert len(blob) < x.nbytes // 4


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("codec", ALL_CODECS)
def test_bounds_in_the_subnormal_range(codec, dtype):
    """Bounds so small that the codecs' float64 step arithmetic would underflow to zero
    (sz once raised ZeroDivisionError at abs=5e-324 or rel=1e-3 on float64 denormals)."""
    x = make("denormals", dtype)
    for value in (
        5e-324,
        1e-323,
        3e-323,
        1e-320,
        1e-310,
        2.2250738585072014e-308,
        3e-308,
        1e-300,
        1.5e-45,
        3e-45,
        1e-40,
        1e-38,
    ):
        roundtrip(x, codec, "abs", value)
    roundtrip(x, codec, "rel", 1e-3)
    roundtrip(x, codec, "rel", 1e-9)
    smooth = (np.sin(np.linspace(0, 6, 300)) * 1e-300).astype(dtype)
    for value in (1e-310, 1e-305, 1e-302):
        roundtrip(smooth, codec, "abs", value)
