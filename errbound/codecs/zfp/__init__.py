"""The `zfp` codec (ZFP's fixed-accuracy mode through zfpy, exact patches where it misses).

``codec`` assembles the stage; ``policy`` decides the tolerance zfpy is given for an array.
"""

from .codec import ZfpCodec

__all__ = ["ZfpCodec"]
