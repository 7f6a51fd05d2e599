"""Compressed MPI collectives for mpi4py, with a guaranteed bound on the final result.

    from mpi4py import MPI
    from mpi_collectives import CompressedComm

    comm = CompressedComm(MPI.COMM_WORLD, rel=1e-3)
    comm.Allreduce(MPI.IN_PLACE, field, op=MPI.SUM)   # |field - exact sum| <= bound, on every rank

Or, without changing a program: ``mpiexec -n 4 python -m mpi_collectives --rel 1e-3 app.py``.

Error contract. The bound applies to the *final* result, compared with the exact result
(computed in float64 or wider): |result - exact| <= bound for every element, on every rank.

* Allreduce, Reduce, Reduce_scatter_block with SUM: each rank quantizes its input once on a
  common grid (step <= 2 * bound / N for N ranks, less a reserve for float rounding: half
  an ulp of the result for float32), the ranks add the integer codes exactly (losslessly encoded; ring
  reduce-scatter + allgather, or recursive doubling for small messages on power-of-two N),
  and the sum is decoded once: the same bits on every rank, whatever the algorithm or the
  order of arrival. MAX and MIN use a step <= 2 * bound (no 1/N). NaN and +-Inf inputs are
  reduced exactly in float64. Integer-valued inputs come back exact when the step is below 1.
* Bcast, Scatter, Gather, Allgather, Alltoall: each block is compressed once at its source
  (``codec``, default "fz") and the compressed bytes are forwarded (binomial tree for
  Bcast); a rank's own block stays exact, except in Allgather, where every rank decodes
  every block so that all results are the same bytes, and in Bcast with ``consistent=True``.
* ``rel``: the bound is rel times the global value range of the collective's input (every
  rank's data for reductions, Gather, Allgather, Alltoall; the root's for Bcast and Scatter).
  It is found by the small Allreduce that every compressed collective starts with to check
  that the ranks agree on count, datatype, op and root; with ``abs`` that call only checks.
* Not compressed, plain MPI unchanged: messages under ``min_bytes`` (default 512 KiB), one
  rank, non-float data, derived datatypes, displacements, device buffers, other ops (PROD,
  user ops), lowercase (pickle) methods, and any bound below the float precision of the
  result. Bitwise/logical/*LOC ops on float buffers raise UnsupportedOperationError.
* Errors are collective: different settings at construction, or different counts,
  datatypes, ops or roots in a compressed collective, raise the same exception on every
  rank. All ranks must describe a compressed message the same way (a contiguous float
  buffer of the same size on every rank), as MPI itself requires for matching signatures.

Speed (docs/collectives.md). Large messages are pipelined: cut into chunks (``segment_bytes``)
that are compressed, sent, forwarded and decoded independently on one thread per rank, so
compute and transfer overlap; Allreduce/Reduce/Reduce_scatter_block run a ring, Bcast a
chain (a binary tree for many ranks; one chunk: binomial tree), Allgather a ring. Chunking
never changes a reduction's result, nor the fz codec's. ``adapt=True`` times the compressed
path against plain MPI per collective and size and keeps the faster: compression only pays
where the link is slower than the compressor.

Built on errbound's public API only (``errbound.compress``/``decompress`` and ``errbound.quantized``).
"""

from .comm import DEFAULT_MIN_BYTES, CompressedComm
from .errors import (
    CollectiveError,
    MismatchError,
    SettingsError,
    SettingsMismatchError,
    UnsupportedOperationError,
)
from .stats import Stats
from .transport.nonblocking import CompressedRequest

__all__ = [
    "CompressedComm",
    "CompressedRequest",
    "DEFAULT_MIN_BYTES",
    "Stats",
    "CollectiveError",
    "MismatchError",
    "SettingsError",
    "SettingsMismatchError",
    "UnsupportedOperationError",
]
