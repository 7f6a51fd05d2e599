"""Collectives that move data without combining it (Bcast, Gather, Scatter, Allgather,
Alltoall): each block compressed once at its source (``blockcodec``), the compressed bytes
forwarded (``collectives``)."""

from .collectives import allgather, alltoall, bcast, gather, scatter

__all__ = ["bcast", "gather", "scatter", "allgather", "alltoall"]
