"""The `zfp` codec: ZFP's fixed-accuracy mode through zfpy, inside the errbound container.

zfpy's tolerance is a bound in exact arithmetic, and a conservative one: by default the
codec gives zfpy the larger tolerance (a power-of-two multiple of the bound's bit plane)
that ``policy`` finds smallest once patched. Either way the shared check in ``api`` decodes
the result and stores every point that misses the bound in the output dtype as an exact
patch, so the bound holds on every value. Decoding needs only zfp's own stream and the
shape it was coded in: streams of every tolerance decode the same way.
"""

from __future__ import annotations

import math

from ...codec import Codec, register
from ...errors import CorruptStreamError
from ...stages.coders import zfp
from ...stream import section
from . import policy

TOLERANCES = ("tuned", "bound")


@register
class ZfpCodec(Codec):
    name = "zfp"
    # v2: the stage may name the shape zfp coded (axes of 1-3 values folded away, slow axes
    # merged where zfp's header cannot hold a size: see coded_shape); streams without it stay v1
    version = 2
    stage_names = ("zfp-accuracy",)
    checks_bound = False

    def __init__(self, tolerance: str = "tuned"):
        """tolerance: "tuned" (a power-of-two multiple of the bound's bit plane, searched on
        sampled blocks of arrays of at least 65536 values, a fixed multiple by dimensionality
        below: 1.06-2.46x the ratio on the shared fields) or "bound" (zfpy's tolerance is the
        bound itself: zfpy's own stream of the coded shape)."""
        if tolerance not in TOLERANCES:
            raise ValueError(f"zfp tolerance must be one of {list(TOLERANCES)}, got {tolerance!r}")
        self.tolerance = tolerance

    @classmethod
    def stream_version(cls, stages):
        return 1 if zfp.ZfpAccuracy.load(stages).shape is None else 2

    def encode(self, data, eb):
        coded = zfp.coded_shape(data.shape)
        view = data.reshape(coded)
        tol = eb if self.tolerance == "bound" else policy.choose_tolerance(view, eb)
        stage = zfp.ZfpAccuracy(tol, shape=None if coded == tuple(data.shape) else list(coded))
        return [stage.record()], [("zfp", zfp.encode(view, tol))]

    def decode(self, stages, sections, shape, dtype, eb):
        stage = zfp.ZfpAccuracy.load(stages)
        coded = tuple(shape) if stage.shape is None else tuple(stage.shape)
        if math.prod(coded) != math.prod(shape):
            raise CorruptStreamError(f"zfp-accuracy stage codes a {coded} array, the stream holds {tuple(shape)}")
        return zfp.decode(section(sections, "zfp"), coded, dtype).reshape(shape)
