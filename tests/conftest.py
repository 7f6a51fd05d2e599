"""Shared test configuration: the hypothesis profile, the shared data fields, the codec list
and the checks every round-trip test makes (the bound, shape, dtype, memory order and the
exact round trip of NaN, +-Inf and -0.0)."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

import errbound

# --------------------------------------------------------------------------- hypothesis

# Deterministic and database-free, so CI runs the same examples every time; bounded example
# counts keep the whole suite within its time budget on two cores. Tests pick their own
# max_examples on top of this profile.
_COMMON = dict(
    database=None,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile("errbound", derandomize=True, max_examples=25, **_COMMON)
# For a bug hunt: ERRBOUND_HYPOTHESIS_PROFILE=explore ERRBOUND_PROPERTY_EXAMPLES=500 pytest ...
settings.register_profile("explore", derandomize=False, max_examples=200, **_COMMON)
settings.load_profile(os.environ.get("ERRBOUND_HYPOTHESIS_PROFILE", "errbound"))
#: examples per property test (times codecs x modes x dtypes)
PROPERTY_EXAMPLES = int(os.environ.get("ERRBOUND_PROPERTY_EXAMPLES", "30"))

# --------------------------------------------------------------------------- codecs and modes

MODES = ("abs", "rel", "pw_rel", "psnr")


def lossy_codecs() -> list[str]:
    """Every registered codec except the lossless fallback, so codecs added later are tested
    automatically. No codec may opt out of a bound mode: the Codec contract has no attribute
    for that (the modes are implemented once, in ``errbound.api``, for every codec)."""
    return [name for name in errbound.codecs() if name != "raw"]


LOSSY_CODECS = lossy_codecs()
#: every registered codec, the lossless one included: a bound mode must hold for each of them
#: (raw + pw_rel once decoded its log magnitudes as values because the property tests left raw out)
ALL_CODECS = list(errbound.codecs())
DTYPES = (np.float32, np.float64)

# --------------------------------------------------------------------------- shared data

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
_FIELD_NAME = re.compile(r"^(?P<stem>.+)_(?P<shape>\d+(?:x\d+)*)\.(?P<kind>f32|f64)$")


def shared_data_dir() -> Path | None:
    return SHARED_DATA if SHARED_DATA.is_dir() else None


def field_names() -> list[str]:
    """Names of the ``name_AxBxC.f32|f64`` files in the shared data folder (empty without it)."""
    folder = shared_data_dir()
    if folder is None:
        return []
    return sorted(p.name for p in folder.iterdir() if _FIELD_NAME.match(p.name))


def load_field(name: str) -> np.ndarray:
    """Read a raw little-endian C-order field whose shape and dtype are in its file name."""
    folder = shared_data_dir()
    if folder is None or not (folder / name).is_file():
        pytest.skip("shared data folder not present")
    m = _FIELD_NAME.match(name)
    assert m, f"not a field file name: {name}"
    dtype = "<f4" if m["kind"] == "f32" else "<f8"
    shape = tuple(int(n) for n in m["shape"].split("x"))
    data = np.fromfile(folder / name, dtype=dtype)
    assert data.size == math.prod(shape), f"{name}: {data.size} values for shape {shape}"
    return data.reshape(shape)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; tests that need it are skipped cleanly when it is absent."""
    folder = shared_data_dir()
    if folder is None:
        pytest.skip("shared data folder not present")
    return folder


# --------------------------------------------------------------------------- checks


def uint_view(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.view(np.uint32 if a.dtype.itemsize == 4 else np.uint64)


def bits(a: np.ndarray) -> np.ndarray:
    """The values' bit patterns in native byte order (for exact comparisons of NaN and -0.0)."""
    a = np.asarray(a)
    return uint_view(a.astype(a.dtype.newbyteorder("="), copy=False)).reshape(-1)


def finite_range(a: np.ndarray) -> float:
    f = np.asarray(a, np.float64).reshape(-1)
    f = f[np.isfinite(f)]
    if f.size == 0:
        return 0.0
    with np.errstate(over="ignore"):
        return float(f.max() - f.min())


def psnr_of(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR over finite values: 20 log10(range) - 10 log10(MSE), computed independently."""
    a = np.asarray(original, np.float64).reshape(-1)
    b = np.asarray(decoded, np.float64).reshape(-1)
    keep = np.isfinite(a)
    a, b = a[keep], b[keep]
    if a.size == 0:
        return math.inf
    with np.errstate(over="ignore", invalid="ignore"):
        mse = float(np.mean((a - b) ** 2))
    if mse == 0:
        return math.inf
    value_range = float(a.max() - a.min())
    if value_range == 0 or not math.isfinite(mse):
        return -math.inf
    return 20 * math.log10(value_range) - 10 * math.log10(mse)


def expected_order(original: np.ndarray) -> str:
    """The memory order the result must have: F for a Fortran-ordered input of >= 2 dims."""
    if original.ndim >= 2 and original.flags.f_contiguous and not original.flags.c_contiguous:
        return "F"
    return "C"


def check_roundtrip(
    original: np.ndarray, decoded: np.ndarray, mode: str, value: float, blob: bytes | None = None
) -> None:
    """Every guarantee of a round trip, with a message that says which one failed and where."""
    assert isinstance(decoded, np.ndarray), type(decoded)
    assert decoded.shape == original.shape, f"shape {decoded.shape} != {original.shape}"
    assert decoded.dtype == original.dtype, f"dtype {decoded.dtype} != {original.dtype}"
    if expected_order(original) == "F":
        assert decoded.flags.f_contiguous, "Fortran-ordered input came back not Fortran-ordered"
    else:
        assert decoded.flags.c_contiguous, "C-ordered (or strided) input came back not C-contiguous"

    x = np.asarray(original).reshape(-1)
    y = np.asarray(decoded).reshape(-1)
    xb, yb = bits(x), bits(y)
    xf = x.astype(np.float64)
    yf = y.astype(np.float64)

    # NaN (payload included), +-Inf and -0.0 come back bit for bit, in every mode;
    # in pw_rel mode every zero does (|x - x'| <= p * 0 leaves no room).
    special = ~np.isfinite(xf) | ((xf == 0) & np.signbit(xf))
    if mode == "pw_rel":
        special |= xf == 0
    bad = np.flatnonzero(special & (xb != yb))
    assert bad.size == 0, f"{bad.size} special values not bit-exact, first at {bad[0]}: {x[bad[0]]!r} -> {y[bad[0]]!r}"
    finite = np.isfinite(xf)
    assert np.isfinite(yf[finite]).all(), "a finite value came back as NaN or Inf"

    with np.errstate(over="ignore", invalid="ignore"):
        err = np.abs(yf - xf)
    if mode == "psnr":
        got = psnr_of(x, y)
        assert got >= value, f"PSNR {got} dB < target {value} dB"
        return
    if mode == "abs":
        limit = np.full(x.shape, float(value))
    elif mode == "rel":
        limit = np.full(x.shape, float(value) * finite_range(x))
    elif mode == "pw_rel":
        limit = float(value) * np.abs(xf)
    else:  # pragma: no cover
        raise AssertionError(mode)
    with np.errstate(invalid="ignore"):
        miss = np.flatnonzero(finite & ~(err <= limit))
    if miss.size:
        i = miss[np.argmax(err[miss] - limit[miss])]
        raise AssertionError(
            f"{miss.size} of {x.size} values miss the {mode}={value!r} bound; worst at flat index {i}: "
            f"{x[i]!r} -> {y[i]!r}, |error| {err[i]!r} > limit {limit[i]!r}"
        )


def roundtrip(array: np.ndarray, codec: str, mode: str, value: float, **options):
    """compress + decompress + every check; returns (blob, decoded)."""
    blob = errbound.compress(array, codec, **{mode: value}, **options)
    assert isinstance(blob, bytes)
    decoded = errbound.decompress(blob)
    check_roundtrip(array, decoded, mode, value, blob)
    return blob, decoded
