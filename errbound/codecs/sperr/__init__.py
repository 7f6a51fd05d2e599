"""The `sperr` codec (CDF 9/7 wavelet + SPECK + outlier correction): ``codec`` assembles
the stages, ``policy`` chooses chunks, steps and the transform's axis grouping."""

from .codec import SperrCodec

__all__ = ["SperrCodec"]
