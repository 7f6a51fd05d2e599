"""ZFP's fixed-accuracy mode through zfpy: the ``zfp`` codec's coder, and ``hlr``'s coder of
low-rank factors.

zfpy's tolerance is a bound in exact arithmetic; whoever uses this stage checks the result
in the output dtype (the ``zfp`` codec through the shared verification pass, ``hlr`` through
its corrections).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache

import numpy as np

from ...errors import CorruptStreamError
from ...stage import Stage


@dataclass
class ZfpAccuracy(Stage):
    """Stage: zfp fixed accuracy with absolute ``tolerance``, by the zfpy ``library``, on
    the array viewed as ``shape`` (C order), or as its own shape where ``shape`` is None (not
    written then: such records read the same in every version)."""

    name = "zfp-accuracy"
    optional = frozenset({"library", "shape"})

    tolerance: float
    library: str = "zfpy"
    shape: list[int] | None = None

    def __post_init__(self):
        self.tolerance = float(self.tolerance)
        if self.shape is not None:
            sizes = self.shape
            if (
                not isinstance(sizes, (list, tuple))
                or not 1 <= len(sizes) <= 4
                or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 1 for n in sizes)
            ):
                raise ValueError(f"shape {sizes!r} is not 1-4 sizes of at least 1")
            self.shape = [int(n) for n in sizes]

    def params(self) -> dict:
        params = super().params()
        if self.shape is None:
            del params["shape"]
        return params


# bits per size in zfp's header (zfp_write_header), by number of dimensions, and the most
# values along one axis it can describe
_SIZE_BITS = {1: 48, 2: 24, 3: 16, 4: 12}
SIZE_LIMIT = {dims: 1 << bits for dims, bits in _SIZE_BITS.items()}
BLOCK = 4  # values per axis of one zfp block


def coded_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape zfp codes an array of ``shape`` (the kernel layout's C order: a Fortran
    array's axes reversed) as. zfp pads every axis to its block of 4, so

    - axes of size 1 are dropped (a (1, n) array coded as 2-D took twice the bytes of the
      same n values in 1-D, a (1, ny, nx) slice up to 5.7x; the HDF5 filter and the zarr 3
      codecs drop them before any codec, numcodecs and the API did not);
    - repeatedly, the smallest axis of 2 or 3 values is merged into its faster neighbour
      (the fastest axis into its slower one), so that the values fill whole blocks: 1.03-1.87x
      the ratio in 35 of 36 slabs of 2-3 layers cut along each axis of the six shared 3-D
      fields, 0.98x in one;
    - the slowest axes are merged until every size fits zfp's header (3-D sizes above
      65536 cannot be written at all)."""
    dims = [int(n) for n in shape if n != 1] or [1]
    while len(dims) > 1 and min(dims) < BLOCK:
        j = dims.index(min(dims))
        j = j if j + 1 < len(dims) else j - 1
        dims[j : j + 2] = [dims[j] * dims[j + 1]]
    while len(dims) > 1 and any(n > SIZE_LIMIT[len(dims)] for n in dims):
        dims[:2] = [dims[0] * dims[1]]
    if len(dims) > 4:  # the container allows 4 dimensions: never reached, kept for safety
        raise ValueError(f"zfp codes at most 4 dimensions, not {tuple(shape)}")
    return tuple(dims)


def encode(values: np.ndarray, tolerance: float) -> bytes:
    """A C-contiguous float32/float64 array (1-4 D) as a zfp stream with its header."""
    import zfpy

    if not values.size:  # zfpy 1.0.1 dies of a bus error on an empty array
        raise ValueError("no values to encode")
    return zfpy.compress_numpy(np.ascontiguousarray(values), tolerance=tolerance, write_header=True)


# zfp's header (zfp_write_header): 32 bits of magic ("zfp" + codec version), 52 bits of field
# metadata (scalar type, dimensionality, sizes), then the mode: 12 bits, or 64 where the short
# form cannot hold it. Bits are read from little-endian 64-bit words, least significant first.
_TYPES = {np.dtype(np.float32): 3, np.dtype(np.float64): 4}  # zfp_type_float, zfp_type_double
_MODE_SHORT_MAX = 4094
_ACCURACY_SHORT = range(2177, _MODE_SHORT_MAX + 1)  # fixed-accuracy modes in the short form
_MAX_BITS = 16658  # ZFP_MAX_BITS: the most bits one block may take in fixed-accuracy mode


@cache
def _codec_version() -> int:
    import zfpy

    return zfpy.compress_numpy(np.zeros(4), tolerance=1.0, write_header=True)[3]


def check_header(section, shape: tuple[int, ...], dtype: np.dtype, what: str) -> None:
    """Refuse a zfp stream whose own header disagrees with the container (scalar type, number
    and sizes of the dimensions) or whose mode is not fixed accuracy: zfp trusts its header
    for every size it allocates and reads, and only fixed accuracy bounds what one block may
    read (so that the padding in :func:`decode` is always enough)."""
    head = bytes(section[:24])
    if len(head) < 12 or head[:3] != b"zfp" or head[3] != _codec_version():
        raise CorruptStreamError(f"{what} has no zfp header this zfpy reads")
    bits = int.from_bytes(head.ljust(24, b"\0"), "little")
    meta = (bits >> 32) & ((1 << 52) - 1)
    scalar, dims = (meta & 3) + 1, ((meta >> 2) & 3) + 1
    width = _SIZE_BITS[dims]
    sizes = tuple(((meta >> (4 + width * k)) & ((1 << width) - 1)) + 1 for k in range(dims))  # nx first
    if scalar != _TYPES.get(np.dtype(dtype)) or sizes[::-1] != tuple(shape):
        raise CorruptStreamError(
            f"{what}'s zfp header describes a {sizes[::-1]} array of zfp type {scalar}, "
            f"the stream a {tuple(shape)} {np.dtype(dtype)} one"
        )
    mode = (bits >> 84) & 0xFFF
    if mode > _MODE_SHORT_MAX:  # long form: minbits, maxbits, maxprec, minexp
        if len(section) < 19:
            raise CorruptStreamError(f"{what}'s zfp header is truncated")
        mode = (bits >> 84) & ((1 << 64) - 1)
        minbits, maxbits, maxprec = (mode >> 12 & 0x7FFF) + 1, (mode >> 27 & 0x7FFF) + 1, (mode >> 42 & 0x7F) + 1
        if (minbits, maxbits, maxprec) != (1, _MAX_BITS, 64):
            raise CorruptStreamError(f"{what}'s zfp header names a mode errbound never writes")
    elif mode not in _ACCURACY_SHORT:
        raise CorruptStreamError(f"{what}'s zfp header names a mode errbound never writes")


def decode(section, shape: tuple[int, ...], dtype: np.dtype, what: str = "zfp section") -> np.ndarray:
    """The array of ``shape`` and ``dtype`` a stream of :func:`encode` holds.

    zfp's bit stream reader does not know where its buffer ends, so the section is padded
    with zeros: once the header is checked, a block reads at most ``_MAX_BITS`` bits and a
    block that starts in the zeros reads one, so the padding covers any forged section."""
    import zfpy

    shape = tuple(int(n) for n in shape)
    check_header(section, shape, dtype, what)
    count = math.prod(shape)
    padded = b"".join((section, bytes(count // 4 + _MAX_BITS // 8 + 4096)))  # one copy of the section
    try:
        out = zfpy.decompress_numpy(padded)
    except Exception as exc:  # zfpy raises bare Exceptions on bad headers
        raise CorruptStreamError(f"{what} cannot be decoded: {exc}") from None
    if out.dtype != dtype or out.size != count:
        raise CorruptStreamError(f"{what} does not match the stream header")
    return out.reshape(shape)
