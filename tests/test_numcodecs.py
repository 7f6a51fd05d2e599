"""errbound's codecs as numcodecs codecs: found through the entry point, round trips within the
bound, ``out=``, and configs that survive JSON."""

from __future__ import annotations

import json

import numpy as np
import pytest

numcodecs = pytest.importorskip("numcodecs")

import errbound  # noqa: E402
from errbound.integrations.numcodecs import CODECS, Errbound, ErrboundSZ  # noqa: E402


def smooth(shape=(24, 40), dtype=np.float32):
    grids = np.meshgrid(*(np.linspace(0, 3, n) for n in shape), indexing="ij")
    return (np.sin(grids[0]) * np.cos(grids[-1])).astype(dtype)


@pytest.mark.parametrize("codec_id", sorted(CODECS))
def test_every_codec_is_found_through_the_entry_point(codec_id):
    config = {"id": codec_id, "abs": 1e-3}
    if codec_id == "errbound":
        config["codec"] = "sz"
    codec = numcodecs.get_codec(config)
    assert type(codec) is CODECS[codec_id]
    assert codec.get_config() == config


@pytest.mark.parametrize("codec_id", ["errbound_sz", "errbound_fz", "errbound_zfp"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_within_the_bound_and_into_out(codec_id, dtype):
    x = smooth(dtype=dtype)
    codec = numcodecs.get_codec({"id": codec_id, "abs": 1e-3})
    blob = codec.encode(x)
    y = codec.decode(blob)
    assert y.dtype == x.dtype and y.shape == x.shape and np.abs(y - x).max() <= 1e-3
    out = np.empty(x.size, dtype)  # zarr hands over flat or shaped buffers
    assert codec.decode(blob, out=out) is out
    np.testing.assert_array_equal(out.reshape(x.shape), y)
    assert codec.decode(memoryview(blob)).shape == x.shape


def test_config_survives_json_and_equality_follows_it():
    codec = Errbound("zfp", pw_rel=1e-2)
    again = numcodecs.get_codec(json.loads(json.dumps(codec.get_config())))
    assert again == codec and again != Errbound("sz", pw_rel=1e-2)
    assert repr(ErrboundSZ(psnr=40)) == "ErrboundSZ(psnr=40.0)"


def test_bad_bounds_codecs_and_dtypes_are_refused():
    with pytest.raises(errbound.BoundError):
        ErrboundSZ()
    with pytest.raises(errbound.UnknownCodecError):
        Errbound("nope", abs=1)
    with pytest.raises(errbound.UnsupportedInputError, match="float32/float64"):
        ErrboundSZ(abs=1).encode(np.arange(10))
    with pytest.raises(errbound.CorruptStreamError):
        ErrboundSZ(abs=1).decode(b"not a stream at all")
    for config in ({"id": "errbound_sz", "rel": 1e-3, "rell": 1}, {"id": "errbound_sz", "codec": "zfp", "abs": 1}):
        with pytest.raises(errbound.CodecOptionError, match="unknown keys"):
            numcodecs.get_codec(config)  # a config read from a file


def test_decoding_into_an_out_of_another_float_dtype_is_refused_not_reinterpreted():
    """zarr 2 decodes into its chunk (out=): a float64 stream in a float32 array's chunk (from
    another array, or forged) copied byte for byte would read as other numbers."""
    codec = ErrboundSZ(abs=1e-3)
    blob = codec.encode(np.linspace(0, 1, 500))
    with pytest.raises(errbound.UnsupportedInputError, match="float64 values, out= is a float32"):
        codec.decode(blob, out=np.empty(1000, np.float32))
    swapped = np.empty(500, ">f8")  # the same values in the other byte order are fine
    codec.decode(blob, out=swapped)
    np.testing.assert_array_equal(swapped, codec.decode(blob))
    raw = bytearray(4000)  # and a plain byte buffer gets the bytes
    codec.decode(blob, out=raw)
    assert np.frombuffer(raw, np.float64).tolist() == codec.decode(blob).tolist()


def test_zarr_stores_arrays_with_the_codec(tmp_path):
    zarr = pytest.importorskip("zarr")
    x = smooth((30, 50))
    codec = ErrboundSZ(abs=1e-3)
    if int(zarr.__version__.split(".")[0]) >= 3:
        z = zarr.create_array(
            str(tmp_path / "z.zarr"), shape=x.shape, dtype=x.dtype, chunks=(10, 50), zarr_format=2, compressors=codec
        )
    else:
        z = zarr.open(
            str(tmp_path / "z.zarr"), mode="w", shape=x.shape, dtype=x.dtype, chunks=(10, 50), compressor=codec
        )
    z[...] = x
    assert np.abs(zarr.open(str(tmp_path / "z.zarr"), mode="r")[...] - x).max() <= 1e-3
