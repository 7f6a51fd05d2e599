"""The `fz` codec (prequantization + integer Lorenzo + bit shuffle + zstd), on the CPU
(``codec``) and on a CUDA GPU (``gpu``), stream for stream."""

from .codec import FZCodec

__all__ = ["FZCodec"]
