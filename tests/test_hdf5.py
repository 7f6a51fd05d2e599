"""The errbound HDF5 filter (errbound.hdf5) through real h5py: round trips, partial reads, the
bound against the dataset's range, stored parameters, and failures that stay failures."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

import errbound.hdf5 as eh  # noqa: E402

import errbound  # noqa: E402
from errbound.integrations.hdf5 import chunks as chunk_codec  # noqa: E402


def smooth(shape, dtype=np.float32, offset=0.0, seed=3):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.linspace(0, 4, n) for n in shape), indexing="ij")
    return (offset + np.sin(grids[0]) * np.cos(grids[-1]) + 0.01 * rng.standard_normal(shape)).astype(dtype)


def max_err(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


@pytest.mark.parametrize("codec", ["sz", "zfp"])
@pytest.mark.parametrize("dtype", [np.float32, np.dtype(">f8")])
def test_write_close_reopen_full_and_partial_reads_stay_within_abs_bound(tmp_path, codec, dtype):
    x = smooth((30, 41, 50), dtype)
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("T", data=x, chunks=(8, 16, 50), **eh.filter(codec=codec, abs=1e-3))
    with h5py.File(path, "r") as f:
        ds = f["T"]
        assert ds.dtype == np.dtype(dtype) and ds.shape == x.shape
        assert ds.id.get_storage_size() < x.nbytes / 2
        full = ds[...]
        assert max_err(full, x) <= 1e-3
        part = ds[3:5, 10:37, 7]  # crosses chunk borders, touches edge chunks
        np.testing.assert_array_equal(part, full[3:5, 10:37, 7])
        np.testing.assert_array_equal(ds[29, 40], full[29, 40])


def test_five_dimensional_chunks_are_folded_for_the_codec(tmp_path):
    x = smooth((3, 4, 5, 6, 7)).astype(np.float64)
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(2, 4, 5, 6, 7), **eh.filter(codec="sz", abs=1e-4))
    with h5py.File(tmp_path / "f.h5") as f:
        assert max_err(f["x"][...], x) <= 1e-4 and max_err(f["x"][2, 1:3], x[2, 1:3]) <= 1e-4


def test_rel_bound_holds_against_dataset_range_although_edge_chunks_are_padded_with_zero(tmp_path):
    # data in [1000, 1001]; HDF5 pads the edge chunks with the fill value 0, far outside the data,
    # so a range taken over the padded chunk would allow errors ~1000x the bound
    x = smooth((30, 41, 50), offset=1000.5) * 0.5 + 500
    value_range = float(x.max() - x.min())
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("T", data=x, chunks=(8, 16, 48), **eh.filter(codec="sz", rel=1e-3))
        f.create_dataset("P", data=x, chunks=(8, 16, 48), fillvalue=-1e30, **eh.filter(codec="sz", psnr=50))
    with h5py.File(tmp_path / "f.h5") as f:
        assert max_err(f["T"][...], x) <= 1e-3 * value_range
        p = f["P"][...]
        mse = np.mean((p.astype(np.float64) - x) ** 2)
        assert 20 * np.log10(value_range) - 10 * np.log10(mse) >= 50


def test_rel_with_data_becomes_one_absolute_bound_from_the_whole_range(tmp_path):
    x = smooth((20, 64, 64))
    kwargs = eh.filter(codec="sz", rel=1e-2, data=x)
    params = eh.parse_cd_values(kwargs["compression_opts"])
    assert params.abs_bound == pytest.approx(1e-2 * float(x.max() - x.min()))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("T", data=x, chunks=(5, 64, 64), **kwargs)
    with h5py.File(tmp_path / "f.h5") as f:
        assert max_err(f["T"][...], x) <= params.abs_bound


def test_parameters_record_codec_bound_dtype_and_chunk_shape(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as f:
        ds = f.create_dataset(
            "T", data=smooth((10, 20)), chunks=(5, 20), fillvalue=np.nan, **eh.filter(codec="zfp", pw_rel=1e-2)
        )
        code, flags, values, name = ds.id.get_create_plist().get_filter(0)
    assert code == eh.FILTER_ID == 0xEB00 and b"errbound" in name
    params = eh.parse_cd_values(values)
    assert (params.codec, params.mode, params.value) == ("zfp", "pw_rel", 1e-2)
    assert params.dtype == np.dtype("<f4") and params.chunks == (5, 20) and np.isnan(params.pad)
    # parameters cut short or with an impossible rank (an edited file) name the problem
    for bad in (values[:9], values[:11], [*values[:9], 0, *values[-2:]]):
        with pytest.raises(errbound.CorruptStreamError, match="truncated|inconsistent"):
            eh.parse_cd_values(bad)


def test_nan_inf_negative_zero_and_pw_rel_zeros_come_back_exactly(tmp_path):
    x = smooth((16, 40)).astype(np.float64)
    x[0, :4] = [np.nan, np.inf, -np.inf, -0.0]
    x[5, 5:9] = 0.0
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("a", data=x, chunks=(8, 40), **eh.filter(codec="sz", abs=1e-2))
        f.create_dataset("p", data=x, chunks=(8, 40), **eh.filter(codec="sz", pw_rel=1e-3))
    with h5py.File(tmp_path / "f.h5") as f:
        for name in ("a", "p"):
            y = f[name][...]
            assert np.isnan(y[0, 0]) and y[0, 1] == np.inf and y[0, 2] == -np.inf
            assert y[0, 3] == 0 and np.signbit(y[0, 3])
        p = f["p"][...]
        assert np.all(p[5, 5:9] == 0)
        finite = np.isfinite(x)
        assert np.all(np.abs(p[finite] - x[finite]) <= 1e-3 * np.abs(x[finite]))


def test_integer_datasets_are_refused_at_creation(tmp_path):
    with h5py.File(tmp_path / "f.h5", "w") as f, pytest.raises((ValueError, OSError)):
        f.create_dataset("i", data=np.arange(100), chunks=(10,), **eh.filter(abs=1))


def test_filter_call_checks_its_arguments():
    with pytest.raises(errbound.BoundError):
        eh.filter(codec="sz")
    with pytest.raises(errbound.UnknownCodecError):
        eh.filter(codec="nope", abs=1)
    with pytest.raises(errbound.BoundError):
        eh.filter(abs=1, rel=1e-3)


def test_a_damaged_chunk_fails_the_read_instead_of_decoding_wrong_numbers(tmp_path):
    x = smooth((16, 64))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("T", data=x, chunks=(8, 64), **eh.filter(abs=1e-3))
    with h5py.File(tmp_path / "f.h5", "a") as f:
        mask, blob = f["T"].id.read_direct_chunk((8, 0))
        damaged = bytearray(blob)
        damaged[len(damaged) // 2] ^= 0x10
        f["T"].id.write_direct_chunk((8, 0), bytes(damaged), filter_mask=mask)
    with h5py.File(tmp_path / "f.h5") as f:
        assert max_err(f["T"][:8], x[:8]) <= 1e-3  # the intact chunk still reads
        with pytest.raises(OSError):
            f["T"][8:]
    assert isinstance(eh.last_error, errbound.CorruptStreamError)


def test_an_exception_inside_the_encoder_stores_the_chunk_exactly(tmp_path, monkeypatch):
    # h5py sets the filter as optional: a failed encode makes HDF5 store the chunk unfiltered
    def boom(chunk, params):
        raise RuntimeError("encoder failure")

    monkeypatch.setattr(chunk_codec, "encode_chunk", boom)  # what every filter callback calls
    x = smooth((8, 32))
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("T", data=x, chunks=(8, 32), **eh.filter(abs=0.5))
    monkeypatch.undo()
    with h5py.File(tmp_path / "f.h5") as f:
        np.testing.assert_array_equal(f["T"][...], x)
    assert isinstance(eh.last_error, RuntimeError)


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_without_errbound_shape_dtype_and_attributes_read_but_data_gives_the_missing_filter_error(tmp_path):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("T", data=smooth((10, 20)), chunks=(5, 20), **eh.filter(abs=1e-3))
        ds.attrs["units"] = "K"
    code = f"""
import json, sys, h5py
assert "errbound" not in sys.modules
f = h5py.File({str(path)!r}, "r")
ds = f["T"]
print(json.dumps({{"shape": ds.shape, "dtype": str(ds.dtype), "units": ds.attrs["units"],
                  "filter": ds.id.get_create_plist().get_filter(0)[0], "avail": bool(h5py.h5z.filter_avail(0xEB00))}}))
try:
    ds[...]
except OSError as exc:
    print("READ-ERROR", exc)
"""
    res = _run(code)
    assert res.returncode == 0, res.stderr
    meta = json.loads(res.stdout.splitlines()[0])
    assert meta == {"shape": [10, 20], "dtype": "float32", "units": "K", "filter": 0xEB00, "avail": False}
    assert "READ-ERROR" in res.stdout and ("plugin" in res.stdout or "filter" in res.stdout)


def test_import_errbound_registers_the_filter_when_h5py_comes_later_and_does_not_import_it(tmp_path):
    path = tmp_path / "f.h5"
    x = smooth((10, 20))
    with h5py.File(path, "w") as f:
        f.create_dataset("T", data=x, chunks=(5, 20), **eh.filter(abs=1e-3))
    code = f"""
import sys, errbound
assert "h5py" not in sys.modules, "import errbound imported h5py"
import h5py
print(float(abs(h5py.File({str(path)!r}, "r")["T"][...] - __import__("numpy").load({str(tmp_path / "x.npy")!r})).max()))
"""
    np.save(tmp_path / "x.npy", x)
    res = _run(code)
    assert res.returncode == 0, res.stderr
    assert float(res.stdout) <= 1e-3
