"""Collectives that move data without combining it: each block is compressed once, at its
source (:mod:`.blockcodec`); compressed bytes are what travels and what is forwarded.

With ``rel``, the bound is rel times the value range of all the data the collective moves
(the root's buffer for Bcast and Scatter; every rank's blocks for Gather, Allgather and
Alltoall, found by the same small Allreduce that checks sizes, datatypes and roots).

Large Bcasts and Allgathers are pipelined (:mod:`.mailbox`): the message is cut into chunks
that are compressed, sent, forwarded and decoded independently, so the root compresses chunk
k+1 while chunk k is on the wire and receivers decode while the next chunk arrives. Bcast
then runs down a chain (every link carries the compressed message once; N-1 chunk times to
fill) or, for many ranks, a binary tree (twice per link, log2 N to fill), and a message of
one chunk takes the binomial tree; Allgather passes chunks around a ring. A rank that
compresses a block also writes what the receivers will decode where that is part of the
contract (Allgather, consistent Bcast), without decoding its own bytes.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from mpi4py import MPI

from .. import costmodel
from .. import settings as agreement
from ..buffers import Buffer
from ..settings import Settings
from ..stats import Stats
from ..transport import chunks, exchange
from ..transport.chunks import Chunk, row_layout
from ..transport.mailbox import Mailbox, drive
from . import blockcodec

_TAG_BCAST = 1


def _compress(
    values: np.ndarray, shape: tuple[int, ...], bound: float, codec: str, reconstruct: np.ndarray | None = None
) -> bytes:
    return blockcodec.encode(values, shape, bound, codec, reconstruct)


def _decompress_into(payload, target: np.ndarray) -> None:
    blockcodec.decode(payload, target)


def _range(settings: Settings, *arrays: np.ndarray) -> list[float]:
    """[max, -min] of the finite values, for the agreement vector (only rel needs them)."""
    lo, hi = np.inf, -np.inf
    if settings.rel is not None:
        for a in arrays:
            a_lo, a_hi, _ = agreement.finite_stats(a)
            lo, hi = min(lo, a_lo), max(hi, a_hi)
    return [hi, -lo]


def _bound(comm, what: str, settings: Settings, count: int, dtype: np.dtype, root: int, *local: np.ndarray) -> float:
    hi, neg_lo = agreement.agree(
        comm,
        what,
        {"count": count, "datatype size": agreement.dtype_code(dtype), "root": root},
        _range(settings, *local),
    )
    return agreement.resolve_bound(settings, -neg_lo, hi)


def bcast_algorithm(settings: Settings, nranks: int, nchunks: int) -> str:
    """The binomial tree for a message of one chunk (nothing to pipeline), else the pipelined
    tree that the cost model says fills faster (a chain, or a binary tree for many ranks)."""
    if settings.bcast_algorithm != "auto":
        return settings.bcast_algorithm
    if nchunks < chunks.MIN_PIPELINE_CHUNKS:
        return "binomial"
    return costmodel.bcast_tree(nranks, nchunks)


def bcast(comm: MPI.Intracomm, buf: Buffer, root: int, settings: Settings, consistent: bool, stats: Stats) -> bool:
    """False: the bound is zero (rel on constant data) and the caller uses plain MPI."""
    rank = comm.Get_rank()
    mine = (buf.flat,) if rank == root else ()
    row_size, trailing = row_layout(buf.block_shape) if rank == root else (0, ())
    hi, neg_lo, root_row = agreement.agree(
        comm,
        "Bcast",
        {"count": buf.count, "datatype size": agreement.dtype_code(buf.flat.dtype), "root": root},
        [*_range(settings, *mine), row_size],
    )  # only the root's row size counts: the others give 0
    bound = agreement.resolve_bound(settings, -neg_lo, hi)
    if not bound > 0:
        return False
    parts = chunks.split(
        0,
        buf.count,
        int(root_row),
        trailing,
        chunks.target_values(settings.segment_bytes, buf.flat.dtype.itemsize, buf.count),
    )
    algorithm = bcast_algorithm(settings, comm.Get_size(), len(parts))
    stats.add(calls=1)
    if algorithm == "binomial":
        payload = None
        if rank == root:
            keep = buf.flat if consistent else None
            payload = _compress(buf.flat, buf.block_shape, bound, settings.codec, keep)
        payload, sends = exchange.bcast_bytes(comm, payload, root)
        stats.add(sent=sends * len(payload), raw=sends * buf.flat.nbytes, messages=sends)
        if rank != root:
            _decompress_into(payload, buf.flat)
        return True
    _PipelinedBcast(comm, buf.flat, root, parts, 1 if algorithm == "chain" else 2, stats).run(
        bound, settings.codec, consistent
    )
    return True


class _PipelinedBcast:
    """Chunks down a tree of fan-out k over ranks relative to the root (k=1: a chain)."""

    def __init__(self, comm: MPI.Intracomm, flat: np.ndarray, root: int, parts: list[Chunk], fanout: int, stats: Stats):
        self.comm, self.flat, self.root, self.parts, self.stats = comm, flat, root, parts, stats
        rank, size = comm.Get_rank(), comm.Get_size()
        relative = (rank - root) % size
        first = fanout * relative + 1
        self.children = [(c + root) % size for c in range(first, min(first + fanout, size))]
        self.is_root = rank == root
        self.mailbox = Mailbox(comm)
        self.received = 0

    def _send(self, payload, part: Chunk) -> None:
        for child in self.children:
            self.mailbox.send(payload, child, _TAG_BCAST)
            self.stats.add(sent=len(payload), raw=part.size * self.flat.dtype.itemsize, messages=1)

    def _handle(self, source: int, tag: int, payload: np.ndarray) -> None:
        part = self.parts[self.received]
        self.received += 1
        self._send(payload, part)  # forward first: the ranks below wait for it
        _decompress_into(payload, part.of(self.flat))

    def _compress_all(self, bound: float, codec: str, consistent: bool) -> Iterator[None]:
        for part in self.parts:
            values = part.of(self.flat)
            self._send(_compress(values, part.shape, bound, codec, values if consistent else None), part)
            yield

    def run(self, bound: float, codec: str, consistent: bool) -> None:
        if self.is_root:
            drive(self.mailbox, self._compress_all(bound, codec, consistent), 0, self._handle)
        else:
            drive(self.mailbox, iter(()), len(self.parts), self._handle)


def gather(
    comm: MPI.Intracomm, send: Buffer | None, recv: Buffer | None, root: int, settings: Settings, stats: Stats
) -> bool:
    """send is None at a root that gathers in place; recv is None except at the root."""
    rank = comm.Get_rank()
    own = send.flat if send is not None else recv.block(root)
    template = recv if rank == root else send
    bound = _bound(comm, "Gather", settings, template.count, own.dtype, root, own)
    if not bound > 0:
        return False
    payload = b""
    if rank != root:
        payload = _compress(send.flat, send.block_shape, bound, settings.codec)
        stats.add(sent=len(payload), raw=send.flat.nbytes)
    stats.add(calls=1)
    payloads = exchange.gather_bytes(comm, payload, root)
    if rank == root:
        for i, data in enumerate(payloads):
            if i != root:
                _decompress_into(data, recv.block(i))
        if send is not None:
            recv.block(root)[...] = send.flat
    return True


def scatter(
    comm: MPI.Intracomm, send: Buffer | None, recv: Buffer | None, root: int, settings: Settings, stats: Stats
) -> bool:
    """send is None except at the root; recv is None at a root that scatters in place."""
    rank = comm.Get_rank()
    template = send if rank == root else recv
    mine = (send.flat,) if rank == root else ()
    bound = _bound(comm, "Scatter", settings, template.count, template.flat.dtype, root, *mine)
    if not bound > 0:
        return False
    payloads = None
    if rank == root:
        payloads = [
            b"" if i == root else _compress(send.block(i), send.block_shape, bound, settings.codec)
            for i in range(comm.Get_size())
        ]
        stats.add(sent=sum(map(len, payloads)), raw=send.flat.nbytes - send.block(root).nbytes)
    stats.add(calls=1)
    data = exchange.scatter_bytes(comm, payloads, root)
    if rank != root:
        _decompress_into(data, recv.flat)
    elif recv is not None:
        recv.flat[...] = send.block(root)
    return True


def allgather(comm: MPI.Intracomm, send: Buffer | None, recv: Buffer, settings: Settings, stats: Stats) -> bool:
    """Every rank writes every block as the receivers decode it, its own included: the result
    is the same bytes everywhere."""
    rank, size = comm.Get_rank(), comm.Get_size()
    own = send.flat if send is not None else recv.block(rank)
    shape = send.block_shape if send is not None else recv.block_shape
    row_size, trailing = row_layout(shape)
    hi, neg_lo, max_row, neg_min_row = agreement.agree(
        comm,
        "Allgather",
        {"count": recv.count, "datatype size": agreement.dtype_code(recv.flat.dtype), "root": 0},
        [*_range(settings, own), row_size, -row_size],
    )
    bound = agreement.resolve_bound(settings, -neg_lo, hi)
    if not bound > 0:
        return False
    if max_row != -neg_min_row:
        row_size, trailing = 1, ()
    parts = chunks.split(
        0, recv.count, row_size, trailing, chunks.target_values(settings.segment_bytes, own.dtype.itemsize, recv.count)
    )
    stats.add(calls=1)
    if len(parts) < chunks.MIN_PIPELINE_CHUNKS:
        payload = _compress(own, shape, bound, settings.codec, recv.block(rank))
        stats.add(sent=(size - 1) * len(payload), raw=(size - 1) * own.nbytes, messages=size - 1)
        for i, data in enumerate(exchange.allgather_bytes(comm, payload)):
            if i != rank:
                _decompress_into(data, recv.block(i))
        return True
    _RingAllgather(comm, own, recv, parts, stats).run(bound, settings.codec)
    return True


class _RingAllgather:
    """Chunks of every block around the ring; step s carries block rank-s-1 on tag s."""

    def __init__(self, comm: MPI.Intracomm, own: np.ndarray, recv: Buffer, parts: list[Chunk], stats: Stats):
        self.comm, self.own, self.recv, self.parts, self.stats = comm, own, recv, parts, stats
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.right = (self.rank + 1) % self.size
        self.mailbox = Mailbox(comm)
        self.received: dict[int, int] = {}

    def _send(self, payload, part: Chunk, tag: int) -> None:
        self.mailbox.send(payload, self.right, tag)
        self.stats.add(sent=len(payload), raw=part.size * self.own.dtype.itemsize, messages=1)

    def _handle(self, source: int, tag: int, payload: np.ndarray) -> None:
        index = self.received.get(tag, 0)
        self.received[tag] = index + 1
        part = self.parts[index]
        if tag < self.size - 2:
            self._send(payload, part, tag + 1)
        _decompress_into(payload, part.of(self.recv.block((self.rank - tag - 1) % self.size)))

    def _compress_own(self, bound: float, codec: str) -> Iterator[None]:
        mine = self.recv.block(self.rank)
        for part in self.parts:
            self._send(_compress(part.of(self.own), part.shape, bound, codec, part.of(mine)), part, 0)
            yield

    def run(self, bound: float, codec: str) -> None:
        drive(self.mailbox, self._compress_own(bound, codec), (self.size - 1) * len(self.parts), self._handle)


def alltoall(comm: MPI.Intracomm, send: Buffer | None, recv: Buffer, settings: Settings, stats: Stats) -> bool:
    """Block i of every rank to rank i; a rank's block to itself is copied exactly."""
    rank, size = comm.Get_rank(), comm.Get_size()
    source = send if send is not None else recv
    bound = _bound(comm, "Alltoall", settings, recv.count, recv.flat.dtype, 0, source.flat)
    if not bound > 0:
        return False
    payloads = [
        b"" if i == rank else _compress(source.block(i), source.block_shape, bound, settings.codec) for i in range(size)
    ]
    stats.add(sent=sum(map(len, payloads)), raw=source.flat.nbytes - source.block(rank).nbytes, calls=1)
    received = exchange.alltoall_bytes(comm, payloads)
    if send is not None:
        recv.block(rank)[...] = send.block(rank)
    for i, data in enumerate(received):
        if i != rank:
            _decompress_into(data, recv.block(i))
    return True
