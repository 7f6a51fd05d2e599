"""The `raw` codec: zstd, lossless. The fallback when a bound is zero or lossy coding would
not pay, and what ``codec="raw"`` stores under any bound."""

from __future__ import annotations

import math

import numpy as np

from ..codec import Codec, register
from ..errors import CorruptStreamError
from ..stages.coders.zstd import ZstdLossless
from ..stream import section


@register
class RawCodec(Codec):
    name = "raw"
    version = 1
    stage_names = ("zstd",)

    def encode(self, data, eb):
        lossless = ZstdLossless()
        return [lossless.record()], [("data", lossless.compress(data.tobytes()))]

    def decode(self, stages, sections, shape, dtype, eb):
        lossless = ZstdLossless.load(stages)
        count = math.prod(shape)
        raw = lossless.decompress(section(sections, "data"), count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise CorruptStreamError("raw section has the wrong length for the array shape")
        return np.frombuffer(raw, dtype).reshape(shape).copy()
