"""The `sz` codec (interpolation/Lorenzo prediction + quantization + Huffman + zstd).

``codec`` assembles the stages; ``policy`` decides which predictor and level-wise bound an
array gets. :func:`encode_stages`, :func:`decode_stages` and :func:`estimated_bytes` are
public for codecs that code a residual with the sz pipeline (``hlr``).
"""

from .codec import SZCodec, decode_stages, encode_stages
from .policy import choose_predictor, estimated_bytes

__all__ = ["SZCodec", "encode_stages", "decode_stages", "choose_predictor", "estimated_bytes"]
