"""Reductions (Allreduce, Reduce, Reduce_scatter_block) of quantized data: every rank
quantizes once on a common grid (``grid``), the integer codes (``codes``) are added exactly
on their way around a ring (``ring``) or by recursive doubling, and the result is decoded
once (``reduce`` plans and runs them)."""

from .reduce import Plan, allreduce, plan, reduce, reduce_scatter_block

__all__ = ["Plan", "plan", "allreduce", "reduce", "reduce_scatter_block"]
