"""The `zfp` codec: ZFP's fixed-accuracy mode through zfpy, inside the errbound container.

zfpy's tolerance is a bound in exact arithmetic; the shared check in ``api`` decodes the
result and stores every point that misses the bound in the output dtype as an exact patch.
"""

from __future__ import annotations

from ..codec import Codec, register
from ..stages.coders import zfp
from ..stream import section


@register
class ZfpCodec(Codec):
    name = "zfp"
    version = 1
    stage_names = ("zfp-accuracy",)
    checks_bound = False

    def encode(self, data, eb):
        stage = zfp.ZfpAccuracy(eb)
        return [stage.record()], [("zfp", zfp.encode(data, eb))]

    def decode(self, stages, sections, shape, dtype, eb):
        zfp.ZfpAccuracy.load(stages)
        return zfp.decode(section(sections, "zfp"), shape, dtype)
