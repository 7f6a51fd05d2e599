"""The `sz` codec (interpolation/Lorenzo prediction + quantization + Huffman + zstd).

``codec`` assembles the stages; ``policy`` decides which predictor and level-wise bound an
array gets. :func:`encode_stages`, :func:`decode_stages` and :func:`estimated_bytes` are
public for codecs that code a residual with the sz pipeline (``hlr``); :func:`entropy_code`
and :func:`lossless_for` for ``auto``, which sizes sz's codes of several sample blocks as one
stream.
"""

from .codec import SZCodec, decode_stages, encode_stages, entropy_code, lossless_for
from .policy import choose_predictor, estimated_bytes

__all__ = [
    "SZCodec",
    "encode_stages",
    "decode_stages",
    "entropy_code",
    "lossless_for",
    "choose_predictor",
    "estimated_bytes",
]
