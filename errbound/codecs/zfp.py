"""`zfp`: ZFP's fixed-accuracy mode through zfpy, inside the errbound container.

zfpy's tolerance is a bound in exact arithmetic; the shared check in ``api`` decodes the
result and stores every point that misses the bound in the output dtype as an exact patch.
"""

from __future__ import annotations

import numpy as np

from ..codec import Codec, load_stage, register
from ..errors import CorruptStreamError

NAME = "zfp-accuracy"
VERSION = 1


class ZfpAccuracy:
    name = NAME
    version = VERSION

    def __init__(self, tolerance: float):
        self.tolerance = float(tolerance)

    def params(self) -> dict:
        return {"tolerance": self.tolerance, "library": "zfpy"}

    @classmethod
    def from_params(cls, p: dict) -> ZfpAccuracy:
        return cls(p["tolerance"])


@register
class ZfpCodec(Codec):
    name = "zfp"
    version = 1
    stage_names = ("zfp-accuracy",)
    checks_bound = False

    def encode(self, data, eb):
        import zfpy

        stage = ZfpAccuracy(eb)
        return [{"name": stage.name, "version": stage.version, "params": stage.params()}], [
            ("zfp", zfpy.compress_numpy(np.ascontiguousarray(data), tolerance=eb, write_header=True))
        ]

    def decode(self, stages, sections, shape, dtype, eb):
        import zfpy

        load_stage(stages, ZfpAccuracy)
        if "zfp" not in sections:
            raise CorruptStreamError("stream lacks the 'zfp' section")
        # zfp's bit stream reader does not know where its buffer ends: a forged short section
        # would make it read past the end, so it reads zeros from padding instead
        section = bytes(sections["zfp"])
        padded = bytearray(len(section) + 2 * int(np.prod(shape)) * dtype.itemsize + 4096)
        padded[:len(section)] = section
        try:
            out = zfpy.decompress_numpy(bytes(padded))
        except Exception as exc:  # zfpy raises bare Exceptions on bad headers
            raise CorruptStreamError(f"zfp section cannot be decoded: {exc}") from None
        if out.dtype != dtype or out.size != int(np.prod(shape)):
            raise CorruptStreamError("zfp section does not match the stream header")
        return out.reshape(shape)
