"""Point-wise relative bound for every codec, through one shared log transform.

|x' - x| <= p |x|  holds when  |log2|x'| - log2|x|| <= log2(1 + p)  and the signs agree, so
the codec compresses y = log2|x| with an absolute bound and the sign and zero masks travel
as bitmaps. Zeros come back exactly (with their sign); NaN, +-Inf and any point whose
reconstruction misses the bound after the cast to the output dtype become exact patches.

exp2 comes from the platform's libm and may differ by an ulp between machines, so the
encoder accepts a point only if it would still meet the bound one output ulp away.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...errors import CorruptStreamError
from ...stage import Stage
from ..coders.zstd import ZstdLossless

# keep a little of log2(1+p) back for the float64 rounding of log2/exp2 themselves
LOG_BOUND_SHRINK = 1.0 - 1e-6


@dataclass
class PointwiseRelative(Stage):
    """Stage: the codec coded log2 of the magnitudes within log2(1 + ``ratio``)."""

    name = "pw_rel"

    ratio: float

    def __post_init__(self):
        self.ratio = float(self.ratio)

    def log_bound(self) -> float:
        return math.log2(1.0 + self.ratio) * LOG_BOUND_SHRINK

    def forward(self, x: np.ndarray):
        """Return (log magnitudes as float64, sign bits, zero mask, indices that must be patched)."""
        flat = x.reshape(-1)
        signs = np.signbit(flat)
        zeros = flat == 0
        nonfinite = ~np.isfinite(flat)
        regular = ~(zeros | nonfinite)
        with np.errstate(divide="ignore", invalid="ignore"):
            y = np.log2(np.abs(flat.astype(np.float64)))
        if not regular.all():
            # forward-fill the points the codec must not care about, so they cost ~nothing
            idx = np.where(regular, np.arange(flat.size), 0)
            np.maximum.accumulate(idx, out=idx)
            first = np.flatnonzero(regular)
            fill = y[first[0]] if first.size else 0.0
            y = np.where(regular, y, y[idx])
            y[: first[0] if first.size else flat.size] = fill
        return y.reshape(x.shape), signs, zeros, np.flatnonzero(nonfinite)

    @staticmethod
    def inverse(y: np.ndarray, signs: np.ndarray, zeros: np.ndarray, dtype: np.dtype) -> np.ndarray:
        with np.errstate(over="ignore"):
            mag = np.exp2(y.reshape(-1)).astype(dtype)
        out = np.where(signs, -mag, mag)
        out[zeros] = np.where(signs[zeros], dtype.type(-0.0), dtype.type(0.0))
        return out

    def failures(self, x: np.ndarray, decoded: np.ndarray) -> np.ndarray:
        """Indices of finite nonzero points that miss the bound, with one ulp of slack for libm."""
        xf = x.reshape(-1).astype(np.float64)
        df = decoded.reshape(-1)
        with np.errstate(invalid="ignore", over="ignore"):
            slack = np.spacing(np.abs(df)).astype(np.float64)
            ok = np.abs(df.astype(np.float64) - xf) + slack <= self.ratio * np.abs(xf)
        ok |= ~np.isfinite(xf) | (xf == 0)  # handled by masks and patches already
        return np.flatnonzero(~ok)


def pack_mask(mask: np.ndarray, lossless: ZstdLossless) -> bytes:
    return lossless.compress(np.packbits(mask).tobytes())


def unpack_mask(section, size: int, lossless: ZstdLossless) -> np.ndarray:
    nbytes = (size + 7) // 8
    raw = lossless.decompress(section, nbytes)
    if len(raw) != nbytes:
        raise CorruptStreamError("bitmap section has the wrong length")
    return np.unpackbits(np.frombuffer(raw, np.uint8), count=size).astype(bool)
