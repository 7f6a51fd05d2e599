"""The `zfp` codec: ZFP's fixed-accuracy mode through zfpy, inside the errbound container.

zfpy's tolerance is a bound in exact arithmetic, and a conservative one: by default the
codec gives zfpy the larger tolerance that ``policy`` finds smallest once patched. Either
way the shared check in ``api`` decodes the result and stores every point that misses the
bound in the output dtype as an exact patch, so the bound holds on every value. Decoding
needs only zfp's own stream: streams of every tolerance decode the same way.
"""

from __future__ import annotations

from ...codec import Codec, register
from ...stages.coders import zfp
from ...stream import section
from . import policy

TOLERANCES = ("tuned", "bound")


@register
class ZfpCodec(Codec):
    name = "zfp"
    version = 1
    stage_names = ("zfp-accuracy",)
    checks_bound = False

    def __init__(self, tolerance: str = "tuned"):
        """tolerance: "tuned" (a multiple of the bound searched on sampled blocks, smaller
        streams: 1.1-2.3x the ratio on the shared fields) or "bound" (zfpy's tolerance is
        the bound itself, the stream zfpy alone would write)."""
        if tolerance not in TOLERANCES:
            raise ValueError(f"zfp tolerance must be one of {list(TOLERANCES)}, got {tolerance!r}")
        self.tolerance = tolerance

    def encode(self, data, eb):
        tol = eb if self.tolerance == "bound" else policy.choose_tolerance(data, eb)
        stage = zfp.ZfpAccuracy(tol)
        return [stage.record()], [("zfp", zfp.encode(data, tol))]

    def decode(self, stages, sections, shape, dtype, eb):
        zfp.ZfpAccuracy.load(stages)
        return zfp.decode(section(sections, "zfp"), shape, dtype)
