"""Reductions (Allreduce, Reduce, Reduce_scatter_block) of quantized data: every rank
quantizes once on a common grid (``grid``), the integer codes (``codes``) are combined
exactly inside each node and, compressed, between nodes (a pipelined ``ring`` or one of the
``algorithms`` in log2 steps), and the result is decoded once (``reduce`` plans and runs them)."""

from .reduce import Plan, Reduction, make_plan, maxima

__all__ = ["Plan", "Reduction", "make_plan", "maxima"]
