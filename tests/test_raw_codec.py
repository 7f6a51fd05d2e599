"""The lossless ``raw`` codec under every bound mode, through every entry point.

errbound 0.2.0 encoded ``codec="raw", pw_rel=...`` as the pw_rel transform's log magnitudes but
decoded the stream as if it held the values themselves: wrong numbers for float64, and a
``CorruptStreamError`` (the data lost) for float32 or arrays with NaN/Inf. The property tests
had left ``raw`` out of their codec list. Now ``raw`` stores the values exactly whatever the
bound, and the 0.2.0 streams decode through the inverse transform (their fixtures are in
``tests/fixtures/streams``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import DTYPES, MODES, bits, check_roundtrip

import errbound


def _specials(dtype) -> np.ndarray:
    x = np.linspace(1e-3, 1, 4096).astype(dtype)
    x[::7] *= -1
    x[5], x[9], x[11], x[13] = np.nan, np.inf, -0.0, 0.0
    return x


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("mode,value", [("abs", 1e-3), ("rel", 1e-3), ("pw_rel", 0.01), ("psnr", 60.0)])
def test_raw_is_exact_under_every_bound(mode, value, dtype):
    x = _specials(dtype)
    blob = errbound.compress(x, codec="raw", **{mode: value})
    y = errbound.decompress(blob)
    np.testing.assert_array_equal(bits(x), bits(y))
    assert errbound.info(blob)["codec"] == "raw"
    check_roundtrip(x, y, mode, value)


def test_the_reported_case_decodes_to_the_values():
    x = np.linspace(1e-3, 1, 4096)
    y = errbound.decompress(errbound.compress(x, codec="raw", pw_rel=0.01))
    assert y[0] == x[0] == 1e-3  # was -9.97 (log2 of 1e-3)
    np.testing.assert_array_equal(x, y)


def test_raw_pw_rel_through_the_command_line(tmp_path):
    x = _specials(np.float32)
    np.save(tmp_path / "x.npy", x)
    cli = [sys.executable, "-m", "errbound.cli"]
    res = subprocess.run(
        [*cli, "compress", tmp_path / "x.npy", "-o", tmp_path / "x.eb", "--codec", "raw", "--pw-rel", "0.01"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    res = subprocess.run(
        [*cli, "decompress", tmp_path / "x.eb", "-o", tmp_path / "y.npy"], capture_output=True, text=True, timeout=120
    )
    assert res.returncode == 0, res.stderr
    np.testing.assert_array_equal(bits(x), bits(np.load(tmp_path / "y.npy")))


@pytest.mark.parametrize("mode", MODES)
def test_raw_through_numcodecs(mode):
    numcodecs = pytest.importorskip("numcodecs")
    value = {"abs": 1e-3, "rel": 1e-3, "pw_rel": 0.01, "psnr": 60.0}[mode]
    codec = numcodecs.get_codec({"id": "errbound", "codec": "raw", mode: value})
    x = _specials(np.float64).reshape(64, 64)
    np.testing.assert_array_equal(bits(x), bits(codec.decode(codec.encode(x)).reshape(x.shape)))
