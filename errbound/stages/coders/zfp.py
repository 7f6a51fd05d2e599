"""ZFP's fixed-accuracy mode through zfpy: the ``zfp`` codec's coder, and ``hlr``'s coder of
low-rank factors.

zfpy's tolerance is a bound in exact arithmetic; whoever uses this stage checks the result
in the output dtype (the ``zfp`` codec through the shared verification pass, ``hlr`` through
its corrections).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import CorruptStreamError
from ...stage import Stage


@dataclass
class ZfpAccuracy(Stage):
    """Stage: zfp fixed accuracy with absolute ``tolerance``, by the zfpy ``library``."""

    name = "zfp-accuracy"
    optional = frozenset({"library"})

    tolerance: float
    library: str = "zfpy"

    def __post_init__(self):
        self.tolerance = float(self.tolerance)


def encode(values: np.ndarray, tolerance: float) -> bytes:
    """A C-contiguous float32/float64 array (1-4 D) as a zfp stream with its header."""
    import zfpy

    if not values.size:  # zfpy 1.0.1 dies of a bus error on an empty array
        raise ValueError("no values to encode")
    return zfpy.compress_numpy(np.ascontiguousarray(values), tolerance=tolerance, write_header=True)


def decode(section, shape: tuple[int, ...], dtype: np.dtype, what: str = "zfp section") -> np.ndarray:
    """The array of ``shape`` and ``dtype`` a stream of :func:`encode` holds."""
    import zfpy

    # zfp's bit stream reader does not know where its buffer ends: a forged short section
    # would make it read past the end, so it reads zeros from padding instead
    section = bytes(section)
    count = math.prod(shape)
    padded = bytearray(len(section) + 2 * count * np.dtype(dtype).itemsize + 4096)
    padded[: len(section)] = section
    try:
        out = zfpy.decompress_numpy(bytes(padded))
    except Exception as exc:  # zfpy raises bare Exceptions on bad headers
        raise CorruptStreamError(f"{what} cannot be decoded: {exc}") from None
    if out.dtype != dtype or out.size != count:
        raise CorruptStreamError(f"{what} does not match the stream header")
    return out.reshape(shape)
