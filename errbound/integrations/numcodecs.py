"""errbound codecs as numcodecs ``Codec`` classes, for zarr format 2, xarray and anything numcodecs-aware.

    import numcodecs, zarr
    codec = numcodecs.get_codec({"id": "errbound_sz", "rel": 1e-3})   # found by entry point
    z = zarr.create_array("out.zarr", shape=x.shape, dtype=x.dtype, chunks=(16, 96, 192),
                          zarr_format=2, compressors=codec)          # zarr-python 3, format 2
    z[:] = x                            # zarr-python 2: zarr.array(x, chunks=..., compressor=codec)

zarr's default format 3 takes lossy codecs as array-to-bytes codecs, not numcodecs codecs: use
:mod:`errbound.zarr` there (``serializer=errbound.zarr.SZ(rel=1e-3)``).

One class per built-in codec (``errbound_sz``, ``errbound_fz``, ``errbound_zfp``, ...), each
registered through the ``numcodecs.codecs`` entry point, plus ``errbound`` whose ``codec``
parameter names any registered errbound codec. The config is the bound (exactly one of ``abs``,
``rel``, ``pw_rel``, ``psnr``) and round-trips through JSON.

The bound applies to each buffer ``encode`` is given -- for zarr, one chunk, including the fill
values zarr pads edge chunks with. ``abs`` and ``pw_rel`` are pointwise and mean the same for
chunks and for the whole array; ``rel`` and ``psnr`` are taken from each chunk's own range, so
for a dataset-wide meaning convert them first (``abs = rel * (max - min)``). A write to part
of a chunk re-encodes the chunk's other values: write whole chunks, or use ``errbound_fz`` with
``abs`` (README, "Write whole chunks").
"""

from __future__ import annotations

import numpy as np
from numcodecs.abc import Codec
from numcodecs.compat import ensure_contiguous_ndarray_like, ndarray_copy

from ..api import compress, decompress
from ..bounds import MODES, parse_bound
from ..codec import get_codec
from ..errors import CodecOptionError, UnsupportedInputError


class Errbound(Codec):
    """Any errbound codec with one error bound, as a numcodecs codec."""

    codec_id = "errbound"

    def __init__(self, codec: str = "sz", *, abs=None, rel=None, pw_rel=None, psnr=None):  # noqa: A002
        get_codec(codec)  # UnknownCodecError names the registered ones
        bound = parse_bound(abs=abs, rel=rel, pw_rel=pw_rel, psnr=psnr)
        self.codec, self.mode, self.value = codec, bound.mode, bound.value

    def encode(self, buf) -> bytes:
        """Compress a float32/float64 array (any shape; numcodecs may hand over a flat buffer)."""
        array = np.asarray(buf) if isinstance(buf, np.ndarray) else ensure_contiguous_ndarray_like(buf)
        if array.dtype.kind != "f" or array.dtype.itemsize not in (4, 8):
            raise UnsupportedInputError(
                f"{self.codec_id} compresses float32/float64 arrays, got {array.dtype} "
                "(store other arrays with a lossless codec)"
            )
        return compress(array, self.codec, **{self.mode: self.value})

    #: the largest chunk ``decode`` accepts without ``out`` (streams come from files: a forged
    #: few hundred bytes may declare terabytes); with ``out``, its size is the limit
    max_decoded_bytes = 1 << 31

    def decode(self, buf, out=None):
        """Decode a stream; into ``out`` (any buffer of the right size) when given."""
        limit = self.max_decoded_bytes if out is None else memoryview(out).nbytes
        array = decompress(ensure_contiguous_ndarray_like(buf), max_bytes=limit)
        if out is None:
            return array
        if isinstance(out, np.ndarray) and out.dtype.kind == "f" and out.dtype != array.dtype:
            # ndarray_copy copies bytes: float64 values into a float32 chunk would be read as
            # other numbers (a chunk of another array, or a forged one)
            if out.dtype.itemsize != array.dtype.itemsize:
                raise UnsupportedInputError(
                    f"{self.codec_id}: the stream holds {array.dtype} values, out= is a {out.dtype} array"
                )
            array = array.astype(out.dtype)  # the other byte order: the same values
        return ndarray_copy(array, out)

    @classmethod
    def from_config(cls, config: dict) -> Errbound:
        """The codec of a stored config; a key it does not have raises CodecOptionError (a
        config from a file: numcodecs' default gives a bare TypeError)."""
        known = {"id", *MODES} | ({"codec"} if cls is Errbound else set())
        unknown = sorted(set(config) - known)
        if unknown:
            raise CodecOptionError(
                f"{cls.codec_id} config has unknown keys {unknown}; it takes {sorted(known - {'id'})}"
            )
        return cls(**{k: v for k, v in config.items() if k != "id"})

    def get_config(self) -> dict:
        config = {"id": self.codec_id, self.mode: self.value}
        if type(self) is Errbound:
            config["codec"] = self.codec
        return config

    def __repr__(self) -> str:
        codec = f"codec={self.codec!r}, " if type(self) is Errbound else ""
        return f"{type(self).__name__}({codec}{self.mode}={self.value!r})"


def _fixed(name: str) -> type[Errbound]:
    def __init__(self, *, abs=None, rel=None, pw_rel=None, psnr=None):  # noqa: A002, N807
        Errbound.__init__(self, name, abs=abs, rel=rel, pw_rel=pw_rel, psnr=psnr)

    doc = f"errbound's ``{name}`` codec with one error bound ({', '.join(MODES)}), as a numcodecs codec."
    return type(
        f"Errbound{name.upper()}",
        (Errbound,),
        {"codec_id": f"errbound_{name}", "__init__": __init__, "__doc__": doc, "__module__": __name__},
    )


ErrboundSZ = _fixed("sz")
ErrboundFZ = _fixed("fz")
ErrboundZFP = _fixed("zfp")
ErrboundSPERR = _fixed("sperr")
ErrboundHLR = _fixed("hlr")

#: every class above, by codec_id (what the entry points in pyproject.toml name)
CODECS = {cls.codec_id: cls for cls in (Errbound, ErrboundSZ, ErrboundFZ, ErrboundZFP, ErrboundSPERR, ErrboundHLR)}
