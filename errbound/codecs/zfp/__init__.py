"""The `zfp` codec (ZFP's fixed-accuracy mode through zfpy, exact patches where it misses).

``codec`` assembles the stage; ``policy`` decides the tolerance zfpy is given for an array.
"""

from .codec import ZfpCodec
from .policy import choose_tolerance

__all__ = ["ZfpCodec", "choose_tolerance"]
