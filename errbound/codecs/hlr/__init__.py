"""The `hlr` codec (hierarchical low-rank tiles + `sz` residual + exact corrections):
``codec`` assembles the stages, ``policy`` searches for the cheapest plan."""

from .codec import HLRCodec

__all__ = ["HLRCodec"]
