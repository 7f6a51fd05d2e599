"""Lossless storage: the fallback when a bound is zero or a lossy codec would not pay."""

from __future__ import annotations

import numpy as np

from ..codec import Codec, load_stage, register, stage_record
from ..errors import CorruptStreamError
from ..stages.lossless import ZstdLossless


@register
class RawCodec(Codec):
    name = "raw"
    version = 1
    stage_names = ("zstd",)

    def encode(self, data, eb):
        lossless = ZstdLossless()
        return [stage_record(lossless)], [("data", lossless.compress(data.tobytes()))]

    def decode(self, stages, sections, shape, dtype, eb):
        lossless = load_stage(stages, ZstdLossless)
        count = int(np.prod(shape, dtype=np.int64))
        if "data" not in sections:
            raise CorruptStreamError("stream lacks the 'data' section")
        raw = lossless.decompress(sections["data"], count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise CorruptStreamError("raw section has the wrong length for the array shape")
        return np.frombuffer(raw, dtype).reshape(shape).copy()
