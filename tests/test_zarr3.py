"""errbound.zarr: errbound codecs as zarr v3 array-to-bytes codecs, through real zarr-python 3.

Every codec writes an array with edge chunks in zarr's default format; a fresh process, which
has errbound installed but never imports it, opens the store by the codec names in its metadata
and reads a part that crosses chunk edges; every value comes back within its bound. Configs
round-trip through JSON; rel bounds ignore zarr's fill padding; float64, big-endian and sharded
arrays work; xarray's to_zarr/open_zarr in format 3.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

zarr = pytest.importorskip("zarr", minversion="3")

import errbound  # noqa: E402
from errbound.errors import UnsupportedInputError  # noqa: E402

CODECS = [
    errbound.zarr.SZ,
    errbound.zarr.FZ,
    errbound.zarr.SPERR,
    errbound.zarr.HLR,
    errbound.zarr.ZFP,
    lambda **bound: errbound.zarr.Errbound("sz", **bound),
]
SHAPE, CHUNKS = (13, 40, 45), (5, 16, 16)  # edge chunks on every axis
PART = (slice(3, 9), slice(10, 37), slice(14, 45))


def field(shape=SHAPE, dtype=np.float32, offset=0.0):
    grids = np.meshgrid(*[np.linspace(0, 2, n) for n in shape], indexing="ij")
    noise = np.random.default_rng(7).standard_normal(shape) * 0.01
    return (offset + sum(np.cos(g * (2 + i)) for i, g in enumerate(grids)) + noise).astype(dtype)


def create(store, data, serializer, **options):
    z = zarr.create_array(
        store, shape=data.shape, chunks=CHUNKS, dtype=data.dtype, serializer=serializer, compressors=None, **options
    )
    z[...] = data
    return z


def test_every_codec_round_trips_and_a_fresh_process_reads_part_of_it(tmp_path):
    data = field()
    bounds = {}
    for i, make in enumerate(CODECS):
        codec = make(abs=0.01)
        create(str(tmp_path / f"{i}.zarr"), data, codec)
        bounds[i] = 0.01
        assert (
            codec.to_dict()["name"]
            in zarr.open_array(str(tmp_path / f"{i}.zarr")).metadata.to_dict()["codecs"][0]["name"]
        )
    script = """
        import sys
        import numpy as np, zarr
        folder, count = sys.argv[1], int(sys.argv[2])
        assert "errbound" not in sys.modules
        part = (slice(3, 9), slice(10, 37), slice(14, 45))
        for i in range(count):
            z = zarr.open_array(f"{folder}/{i}.zarr", mode="r")
            np.save(f"{folder}/{i}-part.npy", z[part])
            np.save(f"{folder}/{i}-all.npy", z[...])
        """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONSTARTUP"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path), str(len(CODECS))],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    for i in range(len(CODECS)):
        part, whole = np.load(tmp_path / f"{i}-part.npy"), np.load(tmp_path / f"{i}-all.npy")
        assert part.dtype == whole.dtype == np.float32 and whole.shape == SHAPE
        np.testing.assert_array_equal(part, whole[PART])
        err = np.abs(whole.astype(np.float64) - data).max()
        assert 0 < err <= bounds[i], (CODECS[i], err)


@pytest.mark.parametrize(
    "codec",
    [
        errbound.zarr.SZ(rel=1e-3),
        errbound.zarr.FZ(abs=0.5),
        errbound.zarr.SPERR(psnr=70),
        errbound.zarr.HLR(pw_rel=1e-2),
        errbound.zarr.ZFP(rel=1e-4, abs_bound=0.25),
        errbound.zarr.Errbound("fz", rel=1e-2),
    ],
    ids=repr,
)
def test_configs_round_trip_through_json_and_the_registry(codec):
    from zarr.registry import get_codec_class

    doc = json.loads(json.dumps(codec.to_dict()))
    cls = get_codec_class(doc["name"])  # found through the entry points
    assert cls is type(codec)
    again = cls.from_dict(doc)
    assert again == codec and again.to_dict() == codec.to_dict() and hash(again) == hash(codec)


def test_bad_configs_and_dtypes_are_refused(tmp_path):
    with pytest.raises(errbound.CodecOptionError, match="unknown configuration"):
        errbound.zarr.SZ.from_dict({"name": "errbound.sz", "configuration": {"rel": 1e-3, "rell": 1}})
    with pytest.raises(errbound.CodecOptionError, match="unknown configuration"):
        errbound.zarr.SZ.from_dict({"name": "errbound.sz", "configuration": {"rel": 1e-3, "codec": "fz"}})
    # metadata from a file: errbound errors naming the problem, not zarr's or Python's own
    with pytest.raises(errbound.CodecOptionError, match="errbound.sz"):
        errbound.zarr.SZ.from_dict({"name": "errbound.sz", "configuration": None})
    for wrong in ("x", [1], True):
        with pytest.raises(UnsupportedInputError, match="abs_bound must be a finite number"):
            errbound.zarr.SZ.from_dict({"name": "errbound.sz", "configuration": {"rel": 1e-3, "abs_bound": wrong}})
    with pytest.raises(errbound.BoundError):
        errbound.zarr.SZ(abs=0.1, rel=0.1)
    with pytest.raises(errbound.UnknownCodecError):
        errbound.zarr.Errbound("nope", abs=0.1)
    with pytest.raises(UnsupportedInputError, match="float32/float64"):
        zarr.create_array(str(tmp_path / "i.zarr"), shape=(10,), dtype="i4", serializer=errbound.zarr.SZ(abs=1))


def test_rel_uses_the_chunk_range_without_the_fill_padding(tmp_path):
    # values near 1000 in a 40x45 array whose edge chunks zarr pads with its fill value 0: with
    # the padding counted, the chunk range (and the error) would be ~100x larger
    data = field((40, 45), np.float64, offset=1000.0)
    z = zarr.create_array(
        str(tmp_path / "r.zarr"), shape=data.shape, chunks=(16, 16), dtype=data.dtype, fill_value=0.0,
        serializer=errbound.zarr.SZ(rel=1e-3), compressors=None,
    )  # fmt: skip
    z[...] = data
    got = zarr.open_array(str(tmp_path / "r.zarr"))[...]
    assert np.abs(got - data).max() <= 1e-3 * np.ptp(data)
    exact = errbound.zarr.SZ(rel=1e-3, data=data)  # rel of the whole array, as one absolute bound
    assert exact.abs_bound == pytest.approx(1e-3 * np.ptp(data))


def test_float64_big_endian_and_sharded_arrays(tmp_path):
    data = field(dtype=np.float64)
    z = create(str(tmp_path / "f8.zarr"), data, errbound.zarr.SPERR(abs=1e-6))
    assert np.abs(z[...] - data).max() <= 1e-6 and z.dtype == np.float64
    big = field().astype(">f4")
    z = create(str(tmp_path / "be.zarr"), big, errbound.zarr.FZ(abs=1e-3))
    assert z[...].dtype == np.dtype(">f4")  # in the byte order asked for
    got = zarr.open_array(str(tmp_path / "be.zarr"))[...]  # zarr 3 stores "float32": read back native
    assert got.dtype == np.float32 and np.abs(got.astype(np.float64) - big).max() <= 1e-3
    z = create(str(tmp_path / "sh.zarr"), field(), errbound.zarr.SZ(abs=1e-3), shards=(10, 32, 32))
    assert np.abs(zarr.open_array(str(tmp_path / "sh.zarr"))[PART] - field()[PART]).max() <= 1e-3
    nan = field()
    nan[2, 3:7, 5] = np.nan
    z = create(str(tmp_path / "nan.zarr"), nan, errbound.zarr.SZ(rel=1e-3))
    got = zarr.open_array(str(tmp_path / "nan.zarr"))[...]
    assert np.array_equal(np.isnan(got), np.isnan(nan))


def test_xarray_to_zarr_and_open_zarr_in_format_3(tmp_path):
    xr = pytest.importorskip("xarray")
    t = field()
    ds = xr.Dataset(
        {"T": (("lev", "lat", "lon"), t, {"units": "K"}), "T64": (("lev", "lat", "lon"), t.astype(np.float64))},
        coords={"lat": np.linspace(-90, 90, SHAPE[1])},
        attrs={"title": "errbound zarr 3 test"},
    )
    encoding = {
        "T": {"serializer": errbound.zarr.SZ(abs=0.01), "compressors": None, "chunks": CHUNKS},
        "T64": {"serializer": errbound.zarr.ZFP(rel=1e-4, data=t), "chunks": CHUNKS},
    }
    ds.to_zarr(tmp_path / "x.zarr", zarr_format=3, encoding=encoding, consolidated=False)
    with xr.open_zarr(tmp_path / "x.zarr", consolidated=False) as back:
        assert back.attrs["title"] == "errbound zarr 3 test" and back["T"].attrs["units"] == "K"
        assert back["T"].encoding["serializer"] == errbound.zarr.SZ(abs=0.01)
        assert np.abs(back["T"].values.astype(np.float64) - t).max() <= 0.01
        assert np.abs(back["T64"].values - t).max() <= 1e-4 * np.ptp(t)
        assert np.abs(back["T"][2:4, 5:30].values - t[2:4, 5:30]).max() <= 0.01


def test_damaged_or_foreign_chunks_raise_errbound_errors(tmp_path):
    z = create(str(tmp_path / "d.zarr"), field(), errbound.zarr.SZ(abs=0.01))
    chunk = tmp_path / "d.zarr" / "c" / "0" / "0" / "0"
    assert chunk.is_file()
    chunk.write_bytes(b"not an errbound stream")
    with pytest.raises(errbound.CorruptStreamError):
        z[:2, :2, :2]
    chunk.write_bytes(errbound.compress(field((40, 40, 40)), "sz", abs=0.01))  # a stream of a larger array
    with pytest.raises(errbound.ErrboundError, match="declares|decodes to"):
        zarr.open_array(str(tmp_path / "d.zarr"))[:2, :2, :2]
    np.testing.assert_allclose(z[6:, 20:, 20:], field()[6:, 20:, 20:], atol=0.01)  # the other chunks still read


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fz_keeps_the_bound_when_parts_of_a_chunk_are_written_one_after_another(tmp_path, dtype):
    """zarr writes part of a chunk by decoding it, merging and encoding it again, so earlier
    values are coded twice (README: write whole chunks). fz's values sit on a fixed grid of
    its absolute bound and code to themselves: eight row blocks into one chunk keep it."""
    x = np.random.default_rng(1).random((64, 64)).astype(dtype)
    eb = 1e-2
    for serializer in (errbound.zarr.FZ(abs=eb), errbound.zarr.FZ(rel=eb, data=x)):
        z = zarr.create_array(
            str(tmp_path / "p.zarr"), shape=x.shape, chunks=x.shape, dtype=dtype,
            serializer=serializer, compressors=None, overwrite=True,
        )  # fmt: skip
        for i in range(0, 64, 8):
            z[i : i + 8] = x[i : i + 8]
        bound = serializer.abs_bound or eb
        assert np.abs(z[...].astype(np.float64) - x).max() <= bound
