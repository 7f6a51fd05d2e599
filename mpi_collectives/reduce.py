"""Reductions of quantized data: exact integer arithmetic between one quantize and one decode.

Every rank quantizes its input once on the common grid of :mod:`.bounds`; the ranks then
reduce the integer codes exactly (encoded losslessly on the wire) and decode the result
once. Integer addition is associative, so the result is the same bits on every rank, for
every algorithm and arrival order. Non-finite inputs are the exception: their positions
are agreed on, their codes zeroed, and their exact values reduced in float64 in rank order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from errbound import quantized as qz

from . import bounds, exchange
from .bounds import MAX, MIN, SUM, Grid, Settings
from .compute import compute
from .errors import MismatchError, UnsupportedOperationError

# recursive doubling (log2 N hops of whole vectors) below this many bytes, ring above
DOUBLING_MAX_BYTES = 256 * 1024

_COMBINE: dict[int, Callable] = {SUM: np.add, MAX: np.maximum, MIN: np.minimum}


@dataclass
class Plan:
    """What the agreement step decided for one reduction."""

    code: int
    grid: Grid
    nonfinite: bool
    dtype: np.dtype
    shape: tuple[int, ...]  # how to see the array for segmenting: the same rows on every rank


def plan(comm: MPI.Intracomm, what: str, x: np.ndarray, code: int, settings: Settings,
         block_shape: tuple[int, ...], root: int = 0) -> Plan | None:
    """Agree with the other ranks; None means: use plain MPI (every rank returns None together)."""
    compressible = code in (SUM, MAX, MIN)
    lo, hi, nonfinite = bounds.finite_stats(x) if compressible else (0.0, 0.0, False)
    gmax_local = max(-lo, hi, 0.0) if hi >= lo else 0.0
    rows = block_shape[0] if len(block_shape) > 1 else 0
    gmax, ghi, neg_glo, any_nonfinite, max_rows, neg_min_rows = bounds.agree(
        comm, what,
        {"count": x.size, "datatype size": bounds.dtype_code(x.dtype), "op": code, "root": root},
        [gmax_local, hi, -lo, float(nonfinite), rows, -rows],
    )
    if code == bounds.INVALID:
        raise UnsupportedOperationError(
            f"{what}: this reduction op is not defined for float data (use SUM, MAX, MIN, PROD or a user op)")
    if not compressible:
        return None
    bound = bounds.resolve_bound(settings, -neg_glo, ghi)
    grid = bounds.reduction_grid(code, comm.Get_size(), bound, gmax, x.dtype)
    if grid is None:
        return None
    # ranks may view the same count as different shapes; segments must be cut alike everywhere
    shape = block_shape if rows > 0 and max_rows == -neg_min_rows else (x.size,)
    return Plan(code, grid, bool(any_nonfinite), x.dtype, shape)


def quantize_codes(x: np.ndarray, grid: Grid) -> np.ndarray:
    """x's integer codes on the grid (non-finite points: arbitrary codes, see _nonfinite)."""
    with compute():
        q = qz.quantize(x, grid.step / 2, grid.int_dtype)
    # quantize() lists points whose reconstruction misses the bound *in the input dtype* as
    # outliers but keeps their codes; here only the codes matter: |q * step - x| <= step / 2
    # up to the float64 wobble that the grid reserves. Non-finite values are handled by
    # _nonfinite(); no code overflows, because the grid was sized from the global max.
    return q.codes


@dataclass
class _Exact:
    """Positions with a non-finite input somewhere, and their reduction in float64."""

    index: np.ndarray
    value: np.ndarray


def _nonfinite(comm: MPI.Intracomm, x: np.ndarray, codes: np.ndarray, code: int) -> _Exact:
    mine = np.flatnonzero(~np.isfinite(x))
    index = np.unique(np.concatenate(comm.allgather(mine)))
    values = comm.allgather(x[index].astype(np.float64))
    result = values[0].copy()
    with np.errstate(invalid="ignore", over="ignore"):
        for v in values[1:]:  # rank order: the same operations, hence bits, on every rank
            result = _COMBINE[code](result, v)
    codes[index] = 0
    return _Exact(index, result)


def _encode(codes: np.ndarray, shape: tuple[int, ...]) -> bytes:
    if codes.size == 0:
        return b""
    with compute():
        return qz.encode_codes(codes, shape)


def _decode(payload, count: int, int_dtype: np.dtype) -> np.ndarray:
    if count == 0:
        return np.empty(0, int_dtype)
    with compute():
        codes = qz.decode_codes(payload).reshape(-1)
    if codes.size != count or codes.dtype != int_dtype:
        raise MismatchError(f"received {codes.size} {codes.dtype} codes where {count} {int_dtype} were expected")
    return codes


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


class _Traffic:
    """Counts what this rank sent, against what the same messages would have been as floats."""

    def __init__(self, stats, itemsize: int):
        self.stats, self.itemsize = stats, itemsize

    def __call__(self, payload, values: int) -> None:
        self.stats.add(sent=len(payload), raw=values * self.itemsize)


def _ring_reduce_scatter(comm, codes, segs: Segments, code, count_sent: _Traffic) -> None:
    """After N-1 steps, segment r of `codes` on rank r holds the reduction over all ranks."""
    rank, size = comm.Get_rank(), comm.Get_size()
    right, left = (rank + 1) % size, (rank - 1) % size
    combine = _COMBINE[code]
    for step in range(size - 1):
        send, recv = (rank - step - 1) % size, (rank - step - 2) % size
        payload = _encode(codes[segs.slice(send)], segs.shapes[send])
        count_sent(payload, segs.starts[send + 1] - segs.starts[send])
        incoming = exchange.sendrecv_bytes(comm, payload, right, left, exchange.TAG_RING)
        target = codes[segs.slice(recv)]
        combine(target, _decode(incoming, target.size, codes.dtype), out=target)


def _ring_allgather(comm, codes, segs: Segments, count_sent: _Traffic) -> None:
    """Spread every rank's reduced segment: encoded once, forwarded unchanged."""
    rank, size = comm.Get_rank(), comm.Get_size()
    right, left = (rank + 1) % size, (rank - 1) % size
    payloads = [None] * size
    payloads[rank] = _encode(codes[segs.slice(rank)], segs.shapes[rank])
    for step in range(size - 1):
        send, recv = (rank - step) % size, (rank - step - 1) % size
        count_sent(payloads[send], segs.starts[send + 1] - segs.starts[send])
        payloads[recv] = exchange.sendrecv_bytes(comm, payloads[send], right, left, exchange.TAG_RING)
    for i in range(size):
        if i != rank:
            target = codes[segs.slice(i)]
            target[...] = _decode(payloads[i], target.size, codes.dtype)


def _recursive_doubling(comm, codes, shape, code, count_sent: _Traffic) -> None:
    """log2 N exchanges of the whole vector with rank ^ 2**k (N a power of two)."""
    rank, size = comm.Get_rank(), comm.Get_size()
    combine = _COMBINE[code]
    distance = 1
    while distance < size:
        partner = rank ^ distance
        payload = _encode(codes, shape)
        count_sent(payload, codes.size)
        incoming = exchange.sendrecv_bytes(comm, payload, partner, partner, exchange.TAG_DOUBLING)
        combine(codes, _decode(incoming, codes.size, codes.dtype), out=codes)
        distance <<= 1


def use_doubling(settings: Settings, nranks: int, nbytes: int) -> bool:
    power_of_two = nranks & (nranks - 1) == 0
    if settings.algorithm == "auto":
        return power_of_two and nbytes <= DOUBLING_MAX_BYTES
    return power_of_two and settings.algorithm == "doubling"


def _write(out: np.ndarray, codes: np.ndarray, p: Plan, exact: _Exact | None, offset: int = 0) -> None:
    """out = codes * step in the output dtype, with the exactly reduced non-finite points."""
    out[...] = p.grid.decode(codes, p.dtype)
    if exact is not None and exact.index.size:
        inside = (exact.index >= offset) & (exact.index < offset + out.size)
        with np.errstate(invalid="ignore", over="ignore"):
            out[exact.index[inside] - offset] = exact.value[inside].astype(p.dtype)


def _prepare(comm, x, p: Plan) -> tuple[np.ndarray, _Exact | None]:
    codes = quantize_codes(x, p.grid)
    exact = _nonfinite(comm, x, codes, p.code) if p.nonfinite else None
    return codes, exact


def allreduce(comm, x: np.ndarray, out: np.ndarray, p: Plan, settings: Settings, stats) -> None:
    """out (on every rank) = the reduction of every rank's x, within the bound."""
    codes, exact = _prepare(comm, x, p)
    traffic = _Traffic(stats, x.dtype.itemsize)
    if use_doubling(settings, comm.Get_size(), x.nbytes):
        _recursive_doubling(comm, codes, p.shape, p.code, traffic)
    else:
        segs = even_segments(x.size, comm.Get_size(), p.shape)
        _ring_reduce_scatter(comm, codes, segs, p.code, traffic)
        _ring_allgather(comm, codes, segs, traffic)
    _write(out, codes, p, exact)


def reduce(comm, x: np.ndarray, out: np.ndarray | None, p: Plan, root: int, stats) -> None:
    """out (at root) = the reduction: a ring reduce-scatter, then the segments to the root."""
    codes, exact = _prepare(comm, x, p)
    traffic = _Traffic(stats, x.dtype.itemsize)
    rank = comm.Get_rank()
    segs = even_segments(x.size, comm.Get_size(), p.shape)
    _ring_reduce_scatter(comm, codes, segs, p.code, traffic)
    payload = b"" if rank == root else _encode(codes[segs.slice(rank)], segs.shapes[rank])
    if rank != root:
        traffic(payload, segs.starts[rank + 1] - segs.starts[rank])
    payloads = exchange.gather_bytes(comm, payload, root)
    if rank == root:
        for i, data in enumerate(payloads):
            if i != root:
                target = codes[segs.slice(i)]
                target[...] = _decode(data, target.size, codes.dtype)
        _write(out, codes, p, exact)


def reduce_scatter_block(comm, x: np.ndarray, out: np.ndarray, p: Plan, count: int,
                         block_shape: tuple[int, ...], stats) -> None:
    """out (on rank r) = block r of the reduction."""
    codes, exact = _prepare(comm, x, p)
    rank = comm.Get_rank()
    segs = block_segments(count, comm.Get_size(), block_shape)
    _ring_reduce_scatter(comm, codes, segs, p.code, _Traffic(stats, x.dtype.itemsize))
    _write(out, codes[segs.slice(rank)], p, exact, offset=segs.starts[rank])
