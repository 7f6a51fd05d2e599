"""Reductions of quantized data: exact integer arithmetic between one quantize and one decode.

Every rank quantizes its input once on the common grid of :mod:`.bounds`; the ranks then
reduce the integer codes exactly (encoded losslessly on the wire) and decode the result
once. Integer addition is associative, so the result is the same bits on every rank, for
every algorithm and arrival order. Non-finite inputs are the exception: their positions
are agreed on, their codes zeroed, and their exact values reduced in float64 in rank order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from .. import settings as agreement
from ..errors import UnsupportedOperationError
from ..settings import MAX, MIN, SUM, Settings
from ..stats import Stats
from ..transport import chunks, exchange
from ..transport.chunks import row_layout
from .codes import COMBINE, Exact, decode, encode, quantize_codes, write
from .grid import Grid, reduction_grid
from .ring import ALLREDUCE, REDUCE, REDUCE_SCATTER, RingReduction

# recursive doubling (log2 N hops of whole vectors) below this many bytes, ring above
DOUBLING_MAX_BYTES = 256 * 1024


@dataclass
class Plan:
    """What the agreement step decided for one reduction."""

    code: int
    grid: Grid
    nonfinite: bool
    dtype: np.dtype
    shape: tuple[int, ...]  # how to see the array for segmenting: the same rows on every rank
    row_size: int = 1  # values per row of `shape`, the same on every rank (1: flat)


def plan(
    comm: MPI.Intracomm,
    what: str,
    x: np.ndarray,
    code: int,
    settings: Settings,
    block_shape: tuple[int, ...],
    root: int = 0,
) -> Plan | None:
    """Agree with the other ranks; None means: use plain MPI (every rank returns None together)."""
    compressible = code in (SUM, MAX, MIN)
    lo, hi, nonfinite = agreement.finite_stats(x) if compressible else (0.0, 0.0, False)
    gmax_local = max(-lo, hi, 0.0) if hi >= lo else 0.0
    row_size, _ = row_layout(block_shape)
    gmax, ghi, neg_glo, any_nonfinite, max_row, neg_min_row = agreement.agree(
        comm,
        what,
        {"count": x.size, "datatype size": agreement.dtype_code(x.dtype), "op": code, "root": root},
        [gmax_local, hi, -lo, float(nonfinite), row_size, -row_size],
    )
    if code == agreement.INVALID:
        raise UnsupportedOperationError(
            f"{what}: this reduction op is not defined for float data (use SUM, MAX, MIN, PROD or a user op)"
        )
    if not compressible:
        return None
    bound = agreement.resolve_bound(settings, -neg_glo, ghi)
    grid = reduction_grid(code, comm.Get_size(), bound, gmax, x.dtype)
    if grid is None:
        return None
    # ranks may view the same count as different shapes; segments must be cut alike everywhere
    if row_size > 1 and max_row == -neg_min_row:
        return Plan(code, grid, bool(any_nonfinite), x.dtype, block_shape, row_size)
    return Plan(code, grid, bool(any_nonfinite), x.dtype, (x.size,))


@dataclass
class Segments:
    """A partition of the flat array into one segment per rank, whole rows where possible."""

    starts: list[int]
    shapes: list[tuple[int, ...]]

    def slice(self, i: int) -> slice:
        return slice(self.starts[i], self.starts[i + 1])


def even_segments(count: int, nranks: int, block_shape: tuple[int, ...]) -> Segments:
    """Split count values into nranks nearly equal segments; along the first axis of
    block_shape when it has enough rows, so each segment keeps its neighbours in all dims."""
    rows = block_shape[0] if len(block_shape) > 1 and block_shape[0] >= nranks else count
    row_size = count // rows
    cuts = [(rows * i // nranks) * row_size for i in range(nranks + 1)]
    trailing = tuple(block_shape[1:]) if row_size > 1 else ()
    shapes = [((cuts[i + 1] - cuts[i]) // row_size, *trailing) for i in range(nranks)]
    return Segments(cuts, shapes)


def block_segments(count: int, nranks: int, block_shape: tuple[int, ...]) -> Segments:
    """Segment i = block i (Reduce_scatter_block)."""
    return Segments([i * count for i in range(nranks + 1)], [block_shape] * nranks)


def _recursive_doubling(comm, codes, shape, code, stats: Stats) -> None:
    """log2 N exchanges of the whole vector with rank ^ 2**k (N a power of two)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    distance = 1
    while distance < size:
        partner = rank ^ distance
        payload = encode(codes, shape)
        stats.add(sent=len(payload), raw=codes.size * codes.dtype.itemsize, messages=1)
        incoming = exchange.sendrecv_bytes(comm, payload, partner, partner, exchange.TAG_DOUBLING)
        COMBINE[code](codes, decode(incoming, codes.size, codes.dtype), out=codes)
        distance <<= 1


def use_doubling(settings: Settings, nranks: int, nbytes: int) -> bool:
    power_of_two = nranks & (nranks - 1) == 0
    if settings.algorithm == "auto":
        return power_of_two and nbytes <= DOUBLING_MAX_BYTES
    return power_of_two and settings.algorithm == "doubling"


def _exact(comm, x: np.ndarray, p: Plan) -> Exact | None:
    return Exact.gather(comm, x, p.code) if p.nonfinite else None


def _ring(
    comm, x: np.ndarray, p: Plan, settings: Settings, starts: list[int], block_shape: tuple[int, ...], stats: Stats
) -> RingReduction:
    """A ring over blocks [starts[b], starts[b+1]), cut into chunks of whole rows of block_shape
    where every rank has the same row size."""
    row_size, trailing = row_layout(block_shape)
    if row_size != p.row_size:
        row_size, trailing = 1, ()
    target = chunks.target_values(settings.segment_bytes, x.dtype.itemsize, x.size // comm.Get_size(), chunks.REDUCTION)
    return RingReduction(comm, x, p.grid, p.code, starts, row_size, trailing, target, _exact(comm, x, p), stats)


def allreduce(comm, x: np.ndarray, out: np.ndarray, p: Plan, settings: Settings, stats: Stats) -> None:
    """out (on every rank) = the reduction of every rank's x, within the bound."""
    if use_doubling(settings, comm.Get_size(), x.nbytes):
        exact = _exact(comm, x, p)
        codes = quantize_codes(x, p.grid)
        if exact is not None:
            exact.zero(codes, 0)
        _recursive_doubling(comm, codes, p.shape, p.code, stats)
        write(out, codes, p.grid, exact)
        return
    segs = even_segments(x.size, comm.Get_size(), p.shape)
    _ring(comm, x, p, settings, segs.starts, p.shape, stats).run(ALLREDUCE, out)


def reduce(comm, x: np.ndarray, out: np.ndarray | None, p: Plan, root: int, settings: Settings, stats: Stats) -> None:
    """out (at root) = the reduction: a ring reduce-scatter, each final chunk then to the root."""
    segs = even_segments(x.size, comm.Get_size(), p.shape)
    _ring(comm, x, p, settings, segs.starts, p.shape, stats).run(REDUCE, out, root=root)


def reduce_scatter_block(
    comm,
    x: np.ndarray,
    out: np.ndarray,
    p: Plan,
    count: int,
    block_shape: tuple[int, ...],
    settings: Settings,
    stats: Stats,
) -> None:
    """out (on rank r) = block r of the reduction."""
    segs = block_segments(count, comm.Get_size(), block_shape)
    ring = _ring(comm, x, p, settings, segs.starts, block_shape, stats)
    ring.run(REDUCE_SCATTER, out, out_start=segs.starts[comm.Get_rank()])
