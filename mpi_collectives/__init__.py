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
  an ulp of the result for float32), the ranks combine the integer codes exactly (plain
  integer messages inside a node, losslessly compressed between nodes: a ring, recursive
  doubling or halving, or a tree), and the sum is decoded once: the same bits on every rank,
  whatever the algorithm, layout or order of arrival. MAX and MIN use a step <= 2 * bound
  (no 1/N). NaN and +-Inf inputs are reduced exactly in float64, IEEE style: a NaN on any
  rank gives NaN, for MAX and MIN too (MPICH's plain MAX/MIN compute ``a > b ? a : b``, so
  a NaN survives or vanishes with the order of the operands). Integer-valued inputs come
  back exact when the step is below 1.
* Bcast, Scatter, Gather, Allgather, Alltoall: each block is compressed once at its source
  (``codec``, default "fz") and the compressed bytes are forwarded between nodes; inside a
  node data moves as floats. A rank's own block stays exact, and so do blocks between ranks
  of one node, except in Allgather, where every rank holds the decoded version of every
  block so that all results are the same bytes, and in Bcast, where every receiver holds
  the decoded values (and the root too with ``consistent=True``).
* ``rel``: the bound is rel times the global value range of the collective's input (every
  rank's data for reductions, Gather, Allgather, Alltoall; the root's for Bcast and Scatter).
  It is found by the small agreement that every compressed collective starts with to check
  that the ranks agree on count, datatype, op and root; with ``abs`` that call only checks.
* Not compressed, plain MPI unchanged: every collective of a job on one node (unless
  ``adapt=False``), messages under ``min_bytes`` (default 512 KiB), one rank, non-float
  data, derived datatypes, displacements, device buffers, other ops (PROD, user ops),
  lowercase (pickle) methods, and any bound below the float precision of the result.
  Bitwise/logical/*LOC ops on float buffers raise UnsupportedOperationError.
* Errors are collective (:mod:`.guard`): different settings at construction, different
  counts, datatypes, ops or roots (also where some ranks' messages are under ``min_bytes``
  and others' are not), a read-only or non-contiguous buffer on one rank, and an exception
  inside one rank's compressed work (MemoryError, say) raise the same exception, with the
  same message, on every rank within seconds; no rank is left waiting.

Speed (docs/collectives.md). Large messages are pipelined: cut into chunks (``segment_bytes``)
that are compressed, sent, forwarded and decoded independently on one thread per rank, so
compute and transfer overlap. Construction finds the nodes (``comm.nodes``), compiles the
kernels and, where compression can run, measures the compressor and the link between nodes;
the cost model then chooses each collective's path from the first call on (``adapt=True``),
and measured times correct it. Chunking never changes a reduction's result, nor the fz
codec's.

Built on errbound's public API only (``errbound.compress``/``decompress`` and ``errbound.quantized``).
"""

from .comm import DEFAULT_MIN_BYTES, CompressedComm
from .errors import (
    CollectiveError,
    CollectiveFailedError,
    InvalidBufferError,
    MismatchError,
    SettingsError,
    SettingsMismatchError,
    UnsupportedOperationError,
)
from .stats import Stats
from .topology import Topology
from .transport.nonblocking import CompressedRequest

__all__ = [
    "CompressedComm",
    "CompressedRequest",
    "DEFAULT_MIN_BYTES",
    "Stats",
    "Topology",
    "CollectiveError",
    "CollectiveFailedError",
    "InvalidBufferError",
    "MismatchError",
    "SettingsError",
    "SettingsMismatchError",
    "UnsupportedOperationError",
]
