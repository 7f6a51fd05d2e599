"""errbound codecs as zarr v3 codecs (public as ``errbound.zarr``), for zarr-python 3's default format.

    import zarr, errbound
    z = zarr.create_array("out.zarr", shape=x.shape, chunks=(4, 96, 192), dtype=x.dtype,
                          serializer=errbound.zarr.SZ(rel=1e-3), compressors=None)
    z[:] = x
    zarr.open_array("out.zarr")[3:5]         # any process with errbound installed, no import needed

    ds.to_zarr("out.zarr", zarr_format=3, encoding={"T": {"serializer": errbound.zarr.SZ(abs=0.01)}})

A lossy codec turns an array into bytes, so in zarr 3 it is the array's ``serializer`` (an
array-to-bytes codec, in place of the default ``bytes`` codec). Its streams end in their own
entropy coder, so zarr's default zstd compressor after it gains little (``compressors=None``
skips it); a ``shards=`` layout may hold it like any serializer. One class per codec -- :class:`SZ`, :class:`FZ`,
:class:`SPERR`, :class:`HLR`, :class:`ZFP` -- and :class:`Errbound`, whose ``codec`` names any
registered errbound codec. Their metadata (``{"name": "errbound.sz", "configuration":
{"rel": 0.001}}``) round-trips through JSON, and zarr finds the classes through the
``zarr.codecs`` entry points, so a reader needs errbound installed, not imported.

Bounds: exactly one of ``abs``, ``rel``, ``pw_rel``, ``psnr``, as in :func:`errbound.compress`.
zarr shows a codec one chunk at a time, so ``rel`` and ``psnr`` use each chunk's own finite
range -- without the fill value zarr pads edge chunks with -- which is never larger than the
array's, so ``rel`` holds against the array's range too (conservatively). For rel meaning the
array's range exactly, pass the data: ``SZ(rel=1e-3, data=x)`` stores the absolute bound it
implies (``abs_bound``) beside the rel bound, and every chunk uses that. A chunk of constant
values is stored exactly. Decoding checks that a chunk comes back with the array's dtype and
chunk shape; values come back in the array's byte order.

zarr writes part of a chunk by decoding it, merging and encoding it again: write whole chunks,
or use :class:`FZ` with a fixed absolute bound, whose values code to themselves (see the README,
"Write whole chunks").

The chunk codec itself (length-1 axes dropped so predictors see real neighbours, the bound per
chunk, constant chunks kept exact) is the HDF5 filter's: :mod:`errbound.integrations.hdf5.chunks`.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.abc.codec import ArrayBytesCodec
from zarr.core.common import parse_named_configuration

from ..api import decompress
from ..bounds import MODES, finite_range, parse_bound
from ..codec import get_codec
from ..errors import CodecOptionError, CorruptStreamError, UnsupportedInputError
from .hdf5.chunks import FilterParams, encode_chunk

if TYPE_CHECKING:
    from zarr.core.array_spec import ArraySpec
    from zarr.core.buffer import Buffer, NDBuffer

NAME_PREFIX = "errbound"


def _float_dtype(dtype) -> np.dtype:
    """The numpy dtype of a zarr data type, when errbound can code it (IEEE float32/float64)."""
    native = dtype.to_native_dtype() if hasattr(dtype, "to_native_dtype") else np.dtype(dtype)
    if native.kind != "f" or native.itemsize not in (4, 8):
        raise UnsupportedInputError(
            f"errbound's zarr codecs code float32/float64 arrays, not {native} (use zarr's own codecs for it)"
        )
    return native


@dataclass(frozen=True)
class Errbound(ArrayBytesCodec):
    """Any errbound codec with one error bound, as a zarr v3 array-to-bytes codec."""

    is_fixed_size = False
    codec: str
    mode: str
    value: float
    abs_bound: float | None

    def __init__(
        self,
        codec: str = "sz",
        *,
        abs=None,  # noqa: A002 - the public keyword
        rel=None,
        pw_rel=None,
        psnr=None,
        abs_bound: float | None = None,
        data=None,
    ) -> None:
        get_codec(codec)  # UnknownCodecError names the registered ones
        bound = parse_bound(abs=abs, rel=rel, pw_rel=pw_rel, psnr=psnr)
        if data is not None and abs_bound is None and bound.mode in ("rel", "psnr"):
            value_range = finite_range(np.asarray(data))
            abs_bound = bound.value * value_range if bound.mode == "rel" else value_range * 10 ** (-bound.value / 20)
        if abs_bound is not None:
            if bound.mode not in ("rel", "psnr"):
                raise UnsupportedInputError("abs_bound goes with a rel or psnr bound")
            number = isinstance(abs_bound, (int, float, np.integer, np.floating)) and not isinstance(abs_bound, bool)
            value = (
                float(abs_bound) if number and -1e308 < abs_bound < 1e308 else math.nan
            )  # the builtin abs is this method's bound argument
            if not (value >= 0 and math.isfinite(value)):
                raise UnsupportedInputError(f"abs_bound must be a finite number >= 0, got {abs_bound!r}")
            abs_bound = value
        for name, value in (("codec", codec), ("mode", bound.mode), ("value", bound.value), ("abs_bound", abs_bound)):
            object.__setattr__(self, name, value)

    # -- metadata --------------------------------------------------------------------------

    @property
    def codec_name(self) -> str:
        return NAME_PREFIX if type(self) is Errbound else f"{NAME_PREFIX}.{self.codec}"

    def _configuration(self) -> dict[str, Any]:
        config: dict[str, Any] = {"codec": self.codec} if type(self) is Errbound else {}
        config[self.mode] = self.value
        if self.abs_bound is not None:
            config["abs_bound"] = self.abs_bound
        return config

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.codec_name, "configuration": self._configuration()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        expected = NAME_PREFIX if cls is Errbound else f"{NAME_PREFIX}.{cls.fixed_codec}"
        try:
            _, config = parse_named_configuration(data, expected)
        except (TypeError, ValueError) as exc:  # zarr's own errors name no errbound type
            raise CodecOptionError(f"{expected}: {exc}") from None
        if not isinstance(config, dict):
            raise CodecOptionError(f"{expected}: configuration must be a mapping, got {config!r:.80}")
        unknown = set(config) - {"codec", "abs_bound", *MODES}
        if unknown or (cls is not Errbound and "codec" in config):
            raise CodecOptionError(f"{expected}: unknown configuration keys {sorted(unknown or {'codec'})}")
        return cls(**config)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self._configuration().items())})"

    # -- checks ----------------------------------------------------------------------------

    def validate(self, *, shape, dtype, chunk_grid) -> None:
        _float_dtype(dtype)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError  # streams have data-dependent sizes

    # -- coding ----------------------------------------------------------------------------

    def _params(self, chunk_spec: ArraySpec) -> FilterParams:
        fill = chunk_spec.fill_value
        try:
            pad = float(fill) if fill is not None else 0.0
        except (TypeError, ValueError):
            pad = 0.0
        return FilterParams(self.codec, self.mode, self.value, self.abs_bound or 0.0, pad=pad)

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        dtype = _float_dtype(chunk_spec.dtype)
        values = np.asarray(chunk_array.as_numpy_array(), dtype=dtype.newbyteorder("="))
        stream = encode_chunk(values.reshape(chunk_spec.shape), self._params(chunk_spec))
        return chunk_spec.prototype.buffer.from_bytes(stream)

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        dtype = _float_dtype(chunk_spec.dtype)
        count = math.prod(chunk_spec.shape)
        # a stream that declares more than a chunk is refused before anything is allocated
        values = decompress(chunk_bytes.as_numpy_array(), max_bytes=count * dtype.itemsize)
        if values.dtype.kind != "f" or values.dtype.itemsize != dtype.itemsize or values.size != count:
            raise CorruptStreamError(
                f"zarr chunk decodes to {values.size} {values.dtype} values, the array expects {count} {dtype}"
            )
        out = np.ascontiguousarray(values.reshape(chunk_spec.shape), dtype=dtype)  # byte order: exact
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(out)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_array, chunk_spec)

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)


def _fixed(name: str) -> type[Errbound]:
    def __init__(self, *, abs=None, rel=None, pw_rel=None, psnr=None, abs_bound=None, data=None):  # noqa: A002, N807
        Errbound.__init__(self, name, abs=abs, rel=rel, pw_rel=pw_rel, psnr=psnr, abs_bound=abs_bound, data=data)

    doc = (
        f"errbound's ``{name}`` codec with one error bound ({', '.join(MODES)}), as a zarr v3 "
        f"array-to-bytes codec (``{NAME_PREFIX}.{name}`` in the array's metadata)."
    )
    namespace = {"__init__": __init__, "__doc__": doc, "__module__": __name__, "fixed_codec": name}
    return dataclass(frozen=True, init=False, repr=False)(type(name.upper(), (Errbound,), namespace))


SZ = _fixed("sz")
FZ = _fixed("fz")
SPERR = _fixed("sperr")
HLR = _fixed("hlr")
ZFP = _fixed("zfp")

#: every class above, by the name in zarr metadata (what the entry points in pyproject.toml name)
CODECS = {
    NAME_PREFIX: Errbound,
    **{f"{NAME_PREFIX}.{cls.fixed_codec}": cls for cls in (SZ, FZ, SPERR, HLR, ZFP)},
}
