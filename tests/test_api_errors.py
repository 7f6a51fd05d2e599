"""Bad input gets a clear errbound exception that names the problem (and is a ValueError, as
numpy users expect); decompress(out=) works and refuses a wrong buffer; the registry and
errbound.info report what they should."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import LOSSY_CODECS, MODES, check_roundtrip

import errbound
from errbound import stream
from errbound.errors import (
    BoundError,
    CorruptStreamError,
    ErrboundError,
    UnknownCodecError,
    UnsupportedInputError,
    UnsupportedStreamError,
)

GOOD = np.linspace(0, 1, 60, dtype=np.float32).reshape(6, 10)


def test_error_classes_are_value_errors():
    for cls in (BoundError, UnsupportedInputError, UnknownCodecError, CorruptStreamError, UnsupportedStreamError):
        assert issubclass(cls, ErrboundError)
        assert issubclass(cls, ValueError)
    assert issubclass(UnsupportedStreamError, CorruptStreamError)
    for name in (
        "ErrboundError",
        "BoundError",
        "UnsupportedInputError",
        "UnknownCodecError",
        "CorruptStreamError",
        "UnsupportedStreamError",
    ):
        assert getattr(errbound, name) is getattr(errbound.errors, name)


# --------------------------------------------------------------------------- the array


@pytest.mark.parametrize(
    "dtype",
    [
        np.int8,
        np.int32,
        np.int64,
        np.uint8,
        np.uint64,
        np.bool_,
        np.float16,
        np.complex64,
        np.complex128,
        np.longdouble,
        object,
        "U3",
        "S4",
        "M8[s]",
        [("a", "<f4")],
    ],
    ids=lambda d: np.dtype(d).str,
)
def test_unsupported_dtype(dtype):
    data = np.zeros((3, 4), dtype=dtype)
    if np.dtype(dtype) == np.dtype(np.longdouble) and np.dtype(np.longdouble).itemsize == 8:
        pytest.skip("long double is float64 on this platform")  # pragma: no cover
    with pytest.raises(UnsupportedInputError, match=r"(?i)unsupported dtype .*float32 and float64"):
        errbound.compress(data, abs=1e-3)


@pytest.mark.parametrize("ndim", [5, 6, 8])
def test_too_many_dimensions(ndim):
    data = np.zeros((2,) * ndim, np.float32)
    with pytest.raises(UnsupportedInputError, match=rf"{ndim}-D array.*0 to 4 dimensions"):
        errbound.compress(data, abs=1e-3)


@pytest.mark.parametrize(
    "data",
    [[1.0, 2.0], 1.5, np.float32(1.5), None, "abc", b"\x00" * 8, memoryview(b"\x00" * 8), (1.0,)],
    ids=["list", "float", "numpy-scalar", "None", "str", "bytes", "memoryview", "tuple"],
)
def test_not_an_array(data):
    with pytest.raises(
        UnsupportedInputError, match=r"expected a numpy array of float32 or float64, got " + type(data).__name__
    ):
        errbound.compress(data, abs=1e-3)


def test_input_errors_come_before_bound_errors():
    with pytest.raises(UnsupportedInputError, match="dtype"):
        errbound.compress(np.zeros(3, np.int32))  # no bound either


# --------------------------------------------------------------------------- the bound


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", [0, 0.0, -0.0, -1e-3, -5])
def test_nonpositive_bound(mode, value):
    with pytest.raises(BoundError, match=rf"^{mode} (bound must be > 0|target must be positive)"):
        errbound.compress(GOOD, **{mode: value})


@pytest.mark.parametrize("mode", MODES)
def test_nan_bound(mode):
    with pytest.raises(BoundError, match=rf"^{mode} bound is NaN"):
        errbound.compress(GOOD, **{mode: float("nan")})
    with pytest.raises(BoundError, match=rf"^{mode} bound is NaN"):
        errbound.compress(GOOD, **{mode: np.float32("nan")})


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("value", [math.inf, -math.inf])
def test_infinite_bound(mode, value):
    with pytest.raises(BoundError, match=rf"^{mode} bound is infinite"):
        errbound.compress(GOOD, **{mode: value})


@pytest.mark.parametrize("mode", MODES)
def test_an_integer_bound_beyond_the_float_range(mode):
    with pytest.raises(BoundError, match=rf"^{mode} bound is too large for a float \(an integer of 401 digits\)"):
        errbound.compress(GOOD, **{mode: 10**400})


@pytest.mark.parametrize(
    "value",
    ["abc", True, False, 1 + 2j, [0.1], object(), np.array([0.1, 0.2])],
    ids=["str", "True", "False", "complex", "list", "object", "array"],
)
def test_bound_that_is_not_a_number(value):
    with pytest.raises(BoundError, match=r"^abs bound must be a number, got "):
        errbound.compress(GOOD, abs=value)


def test_two_bounds():
    with pytest.raises(BoundError, match=r"more than one error bound given \(abs, rel\)"):
        errbound.compress(GOOD, abs=1e-3, rel=1e-3)
    with pytest.raises(BoundError, match=r"more than one error bound given \(abs, rel, pw_rel, psnr\)"):
        errbound.compress(GOOD, abs=1, rel=1, pw_rel=0.1, psnr=40)
    with pytest.raises(BoundError, match=r"more than one error bound given \(pw_rel, psnr\)"):
        errbound.compress(GOOD, pw_rel=0.1, psnr=40)


def test_no_bound():
    with pytest.raises(BoundError, match=r"no error bound given: pass exactly one of abs=, rel=, pw_rel=, psnr="):
        errbound.compress(GOOD)
    with pytest.raises(BoundError, match=r"no error bound given"):
        errbound.compress(GOOD, "zfp", abs=None, rel=None)


@pytest.mark.parametrize("value", [1, 1.0, 1.5, 100])
def test_pw_rel_of_one_or_more(value):
    with pytest.raises(BoundError, match=r"pw_rel bound must be < 1"):
        errbound.compress(GOOD, pw_rel=value)


def test_bound_accepts_numpy_and_integer_numbers():
    for value in (np.float32(0.01), np.float64(0.01), np.array(0.01), 1, np.int64(2)):
        check_roundtrip(GOOD, errbound.decompress(errbound.compress(GOOD, abs=value)), "abs", float(value))


# --------------------------------------------------------------------------- the codec


@pytest.mark.parametrize(
    "name",
    ["nope", "SZ", "", "sz3", None, 5, ("sz",), ["sz"]],
    ids=["nope", "SZ", "empty", "sz3", "None", "int", "tuple", "list"],
)
def test_unknown_codec(name):
    with pytest.raises(UnknownCodecError, match=r"(?i)(unknown codec|codec must be a codec name)"):
        errbound.compress(GOOD, name, abs=1e-3)


def test_unknown_codec_message_lists_the_registered_codecs():
    with pytest.raises(UnknownCodecError, match=r"unknown codec 'nope'; registered codecs: .*sz.*zfp"):
        errbound.compress(GOOD, "nope", abs=1e-3)
    with pytest.raises(UnknownCodecError):
        errbound.get_codec("nope")


def test_codecs_lists_sz_and_zfp():
    registry = errbound.codecs()
    assert {"sz", "zfp", "raw"} <= set(registry)
    assert set(LOSSY_CODECS) == set(registry) - {"raw"}
    for name, cls in registry.items():
        assert issubclass(cls, errbound.Codec)
        assert cls.name == name
        assert isinstance(cls.version, int) and cls.version >= 1
        assert cls.stage_names, f"codec {name} lists no stages"
        assert errbound.get_codec(name) is cls


# --------------------------------------------------------------------------- out=


@pytest.mark.parametrize("codec", LOSSY_CODECS)
@pytest.mark.parametrize("order", ["C", "F"])
def test_out_receives_the_result(codec, order):
    x = np.asarray(np.cos(np.arange(120.0)).reshape(8, 15), order=order)
    blob = errbound.compress(x, codec, abs=1e-5)
    expected = errbound.decompress(blob)
    for out in (np.empty((8, 15)), np.empty((8, 15), order="F"), np.empty((8, 30))[:, ::2]):
        got = errbound.decompress(blob, out=out)
        assert got is out
        np.testing.assert_array_equal(out, expected)
        check_roundtrip(x, np.ascontiguousarray(out) if order == "C" else np.asfortranarray(out), "abs", 1e-5)


def test_out_for_0d_and_empty_arrays():
    blob = errbound.compress(np.array(3.5, np.float32), abs=0.1)
    out = np.zeros((), np.float32)
    assert errbound.decompress(blob, out=out) is out and abs(float(out) - 3.5) <= 0.1
    blob = errbound.compress(np.zeros((3, 0)), abs=0.1)
    out = np.zeros((3, 0))
    assert errbound.decompress(blob, out=out) is out


@pytest.mark.parametrize(
    "out,problem",
    [
        (np.empty((6, 10), np.float64), "dtype"),
        (np.empty((10, 6), np.float32), "shape"),
        (np.empty(60, np.float32), "shape"),
        (np.empty((6, 10), ">f4"), "byte order"),
        (np.empty((6, 10), np.int32), "dtype"),
        ([[0.0] * 10] * 6, "not an array"),
        ("buffer", "not an array"),
    ],
    ids=["float64", "transposed", "flat", "big-endian", "int32", "list", "str"],
)
def test_wrong_out_is_rejected(out, problem):
    blob = errbound.compress(GOOD, abs=1e-3)
    with pytest.raises(UnsupportedInputError, match=r"out= must be a numpy array of shape \(6, 10\) and dtype float32"):
        errbound.decompress(blob, out=out)


def test_read_only_out_is_rejected():
    blob = errbound.compress(GOOD, abs=1e-3)
    out = np.empty((6, 10), np.float32)
    out.flags.writeable = False
    with pytest.raises(UnsupportedInputError, match="read-only"):
        errbound.decompress(blob, out=out)


# --------------------------------------------------------------------------- info


@pytest.mark.parametrize("codec", LOSSY_CODECS)
def test_info_fields(codec):
    x = np.asfortranarray(np.sin(np.arange(600.0)).reshape(20, 30))
    blob = errbound.compress(x, codec, rel=1e-3)
    meta = errbound.info(blob)
    header, sections = stream.unpack(blob)
    assert meta["codec"] in (codec, "raw")
    assert meta["codec"] == header.codec
    assert isinstance(meta["codec_version"], int)
    assert meta["dtype"] == "float64"
    assert meta["shape"] == (20, 30)
    assert meta["order"] == "F"
    assert meta["bound"] == {"mode": "rel", "value": 1e-3}
    assert meta["abs_bound"] == pytest.approx(1e-3 * (x.max() - x.min()))
    assert isinstance(meta["stages"], list) and all("name" in s and "version" in s for s in meta["stages"])
    assert meta["sections"] == {name: len(view) for name, view in sections.items()}
    assert meta["original_bytes"] == x.nbytes
    assert meta["compressed_bytes"] == len(blob)
    assert meta["ratio"] == pytest.approx(x.nbytes / len(blob))
    assert meta["format_version"] == f"{stream.FORMAT_MAJOR}.{stream.FORMAT_MINOR}"


def test_info_of_each_mode_and_of_the_raw_fallback():
    x = np.linspace(-1, 1, 500, dtype=np.float32)
    for mode, value in (("abs", 1e-2), ("pw_rel", 1e-2), ("psnr", 50.0)):
        meta = errbound.info(errbound.compress(x, **{mode: value}))
        assert meta["bound"] == {"mode": mode, "value": value}
        assert meta["dtype"] == "float32" and meta["shape"] == (500,) and meta["order"] == "C"
        assert meta["abs_bound"] > 0
    meta = errbound.info(errbound.compress(np.zeros((0, 4), np.float32), abs=1.0))
    assert meta["codec"] == "raw" and meta["shape"] == (0, 4) and meta["original_bytes"] == 0
    meta = errbound.info(errbound.compress(np.array(1.0), abs=1.0))
    assert meta["shape"] == () and meta["original_bytes"] == 8


def test_info_rejects_what_decompress_rejects():
    with pytest.raises(CorruptStreamError):
        errbound.info(b"not a stream at all")
    with pytest.raises(CorruptStreamError):
        errbound.info("a str")


def test_unknown_codec_options_raise_codec_option_error():
    x = np.zeros(16, np.float32)
    with pytest.raises(errbound.CodecOptionError, match="predictor"):
        errbound.compress(x, "sz", abs=1e-3, predictor="bogus")
    with pytest.raises(errbound.CodecOptionError, match="foo"):
        errbound.compress(x, "sz", abs=1e-3, foo=1)


def test_a_bound_given_as_a_string_is_rejected():
    with pytest.raises(errbound.BoundError, match="must be a number"):
        errbound.compress(np.zeros(16, np.float32), abs="0.1")


def test_masked_arrays_are_rejected_with_advice():
    masked = np.ma.masked_array(np.zeros(16, np.float32), mask=np.arange(16) % 2 == 0)
    with pytest.raises(errbound.UnsupportedInputError, match="masked"):
        errbound.compress(masked, abs=1e-3)
