"""Collectives that move data without combining it: each block is compressed once, at its
source (:mod:`.blockcodec`); compressed bytes are what crosses between nodes and what is
forwarded; inside a node data moves as plain floats (shared memory: compressing there would
cost more than it saves).

With ``rel``, the bound is rel times the value range of all the data the collective moves
(the root's buffer for Bcast and Scatter; every rank's blocks for Gather, Allgather and
Alltoall), found by the start agreement (:mod:`..guard`).

* Bcast: the message is cut into S shares (S = ranks per node where every node holds as
  many, else 1; fewer for small messages). On the root's node, local rank j gets share j
  from the root as floats and compresses it; the ranks with local index j on the other
  nodes receive it chunk by chunk down a pipelined chain, binary or binomial tree (the
  cost model picks: :func:`..costmodel.bcast_tree`), forward each chunk before decoding it,
  and pass the decoded floats to their local ranks. Every rank of a node thus compresses or
  decodes 1/S of the message, and each node's link carries it once, compressed. With one
  rank per node this is the pipelined Bcast over all ranks.
* Allgather: each rank compresses its own block (keeping what the others will decode, so
  every rank holds the same bytes) and the ranks with one local index pass their blocks
  round a ring of the nodes, chunk by chunk, forwarded as received; every decoded chunk goes
  to the other local ranks as floats.
* Gather, Scatter, Alltoall: directly rank to rank, compressed between nodes, floats inside.

A rank that compresses a block also writes what the receivers will decode where that is
part of the contract (Allgather; Bcast's receivers, and its root with ``consistent=True``),
without decoding its own bytes.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from .. import costmodel
from .. import settings as agreement
from ..buffers import Buffer
from ..settings import Settings
from ..stats import Stats
from ..topology import Topology
from ..transport import chunks, exchange
from ..transport.chunks import Chunk, row_layout
from ..transport.mailbox import Mailbox, drive
from . import blockcodec

TAG_CHUNK = 1  # a compressed chunk between nodes (Bcast), or + step (Allgather's ring)
TAG_RAW = 31_000  # a chunk of the root's floats to the rank of its node that compresses it
TAG_FLOATS = 32_000  # + block: decoded floats of a chunk, to the other ranks of the node
MIN_SHARE_BYTES = 1 << 20  # a Bcast is split across a node's ranks in shares of at least this


def _range(settings: Settings, *arrays: np.ndarray) -> list[float]:
    """[max, -min] of the finite values, for the start agreement (only rel needs them)."""
    lo, hi = math.inf, -math.inf
    if settings.rel is not None:
        for a in arrays:
            a_lo, a_hi, _ = agreement.finite_stats(a)
            lo, hi = min(lo, a_lo), max(hi, a_hi)
    return [hi, -lo]


def bound_of(settings: Settings, agreed: np.ndarray) -> float:
    return agreement.resolve_bound(settings, -agreed[1], agreed[0])


# --------------------------------------------------------------------------------- Bcast


def bcast_maxima(settings: Settings, buf: Buffer, rank: int, root: int) -> list[float]:
    """[max, -min] of the root's data and the shape of the root's rows (the others give 0):
    the ranks of the root's node compress shares of its data as the root sees it."""
    if rank != root:
        return [*_range(settings), 0.0, 0.0, 0.0]
    trailing = tuple(buf.block_shape[1:])[-3:]
    return [*_range(settings, buf.flat), *([0.0] * (3 - len(trailing))), *trailing]


def bcast_algorithm(settings: Settings, nranks: int, nchunks: int) -> str:
    """The binomial tree for a message of one chunk (nothing to pipeline), else the pipelined
    tree that the cost model says fills faster (a chain, or a binary tree for many ranks)."""
    if settings.bcast_algorithm != "auto":
        return settings.bcast_algorithm
    if nchunks < chunks.MIN_PIPELINE_CHUNKS:
        return "binomial"
    return costmodel.bcast_tree(nranks, nchunks)


def _children(position: int, root: int, size: int, shape: str) -> list[int]:
    """Positions that `position` forwards to in a tree of `size` rooted at `root`."""
    relative = (position - root) % size
    if shape == "binomial":
        kids, mask = [], 1
        while mask < size and not relative & mask:
            mask <<= 1
        mask >>= 1
        while mask > 0:
            if relative + mask < size:
                kids.append(relative + mask)
            mask >>= 1
    else:
        fanout = 1 if shape == "chain" else 2
        first = fanout * relative + 1
        kids = list(range(first, min(first + fanout, size)))
    return [(k + root) % size for k in kids]


def bcast(
    mailbox: Mailbox,
    layout: Topology,
    buf: Buffer,
    root: int,
    settings: Settings,
    consistent: bool,
    stats: Stats,
    agreed: np.ndarray,
) -> bool:
    """False: the bound is zero (rel on constant data) and the caller uses plain MPI."""
    bound = bound_of(settings, agreed)
    if not bound > 0:
        return False
    trailing = tuple(int(d) for d in agreed[2:5] if d > 0)
    _TwoLevelBcast(mailbox, layout, buf, root, settings, consistent, stats, trailing).run(bound)
    return True


class _TwoLevelBcast:
    def __init__(
        self,
        mailbox: Mailbox,
        layout: Topology,
        buf: Buffer,
        root: int,
        settings: Settings,
        consistent: bool,
        stats: Stats,
        trailing: tuple[int, ...],
    ):
        self.mailbox, self.layout, self.flat, self.root, self.settings, self.stats = (
            mailbox,
            layout,
            buf.flat,
            root,
            settings,
            stats,
        )
        rank = self.rank = mailbox.channel.rank
        self.consistent = consistent
        self.node, self.local = layout.node_of[rank], layout.local_rank(rank)
        self.root_node = layout.node_of[root]
        self.node_ranks = layout.members[self.node]
        itemsize = buf.flat.dtype.itemsize
        count = buf.count
        # rows as the root sees its data (the receivers' own shapes may differ)
        self.row = math.prod(trailing) if trailing else 1
        if self.row <= 1 or count % self.row:
            self.row, trailing = 1, ()
        share_count = layout.shares if layout.ranks_per_node > 1 else 1
        share_count = max(1, min(share_count, count * itemsize // MIN_SHARE_BYTES))
        self.shares = _cut(count, share_count, self.row, trailing)
        self.share_count = share_count
        # chunks of each share (the same cut on every rank)
        self.parts = [
            chunks.split(a, b, self.row, trailing, chunks.target_values(settings.segment_bytes, itemsize, b - a))
            for a, b, _ in self.shares
        ]
        self.role = self.local if self.local < share_count else None
        peers = layout.peers(self.role if self.role is not None else 0)
        self.peers = peers
        self.position = peers.index(rank) if rank in peers else None
        nchunks = len(self.parts[self.role]) if self.role is not None else 1
        self.shape = bcast_algorithm(settings, len(peers), nchunks)
        self.root_position = peers.index(layout.rank_at(self.root_node, self.role)) if self.role is not None else 0
        self.children = (
            [peers[c] for c in _children(self.position, self.root_position, len(peers), self.shape)]
            if self.role is not None
            else []
        )
        self.received: dict[tuple[int, int], int] = {}
        self.bound = 0.0

    # who gets the floats of a chunk of my share: the other ranks of my node (not the root,
    # which keeps its own data, unless consistent)
    def _local_receivers(self) -> list[int]:
        return [r for r in self.node_ranks if r != self.rank and (r != self.root or self.consistent)]

    def _share_floats(self, part: Chunk, values: np.ndarray) -> None:
        for r in self._local_receivers():
            self.mailbox.send(values, r, TAG_FLOATS + self.role)

    def _forward(self, payload, part: Chunk) -> None:
        for child in self.children:
            self.mailbox.send(payload, child, TAG_CHUNK, compressed=True)
            self.stats.add(sent=len(payload), raw=part.size * self.flat.dtype.itemsize, messages=1)

    def _compress(self, part: Chunk, values: np.ndarray) -> None:
        """On the root's node: compress one chunk of this rank's share and send it on."""
        keep = self.rank != self.root or self.consistent
        target = part.of(self.flat) if keep else np.empty(part.size, self.flat.dtype)
        payload = blockcodec.encode(values, part.shape, self.bound, self.settings.codec, target)
        self._forward(payload, part)
        self._share_floats(part, target)

    def _next(self, source: int, tag: int) -> int:
        index = self.received.get((source, tag), 0)
        self.received[(source, tag)] = index + 1
        return index

    def _handle(self, source: int, tag: int, payload: np.ndarray) -> None:
        if tag == TAG_CHUNK:  # a compressed chunk of my share, from my parent between nodes
            part = self.parts[self.role][self._next(source, tag)]
            self._forward(payload, part)  # first: the ranks below wait for it
            blockcodec.decode(payload, part.of(self.flat))
            self._share_floats(part, part.of(self.flat))
        elif tag == TAG_RAW:  # the root's floats of a chunk of my share (in place): compress them
            part = self.parts[self.role][self._next(source, tag)]
            self._compress(part, part.of(self.flat))
        # else: decoded floats of another share, received in place from the rank that holds it

    def _root_work(self) -> Iterator[None]:
        """The root: its floats to the ranks of its node that compress the other shares,
        then its own share, chunk by chunk."""
        for j in range(self.share_count):
            holder = self.layout.rank_at(self.root_node, j)
            if holder != self.rank:
                for part in self.parts[j]:
                    self.mailbox.send(part.of(self.flat), holder, TAG_RAW)
        yield
        if self.role is not None:
            for part in self.parts[self.role]:
                self._compress(part, part.of(self.flat).copy() if self.consistent else part.of(self.flat))
                yield

    def _expected(self) -> int:
        count = 0
        if self.role is not None and self.rank != self.root:
            count += len(self.parts[self.role])  # raw chunks on the root's node, else compressed
        if self.rank != self.root or self.consistent:
            count += sum(len(self.parts[j]) for j in range(self.share_count) if j != self.role)
        return count

    def run(self, bound: float) -> None:
        self.bound = bound
        mailbox = self.mailbox
        # floats from this node's ranks land in place (posted before anything is sent)
        if self.role is not None and self.node == self.root_node and self.rank != self.root:
            for part in self.parts[self.role]:
                mailbox.post(self.root, TAG_RAW, part.of(self.flat))
        if self.rank != self.root or self.consistent:
            for j in range(self.share_count):
                if j != self.role:
                    holder = self.layout.rank_at(self.node, j)
                    for part in self.parts[j]:
                        mailbox.post(holder, TAG_FLOATS + j, part.of(self.flat))
        work = self._root_work() if self.rank == self.root else iter(())
        drive(mailbox, work, self._expected(), self._handle)


def _cut(count: int, parts: int, row: int, trailing: tuple[int, ...]) -> list[tuple[int, int, tuple[int, ...]]]:
    """[start, stop) of `parts` shares of whole rows, and their shapes."""
    if row <= 1 or count % row:
        row, trailing = 1, ()
    rows = count // row
    cuts = [(rows * i // parts) * row for i in range(parts + 1)]
    return [
        (a, b, ((b - a) // row, *trailing) if trailing else (b - a,)) for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]


# --------------------------------------------------------------------------------- Gather, Scatter


def _send_block(mailbox, layout, dest, values, shape, tag, bound, settings, stats) -> None:
    """``values`` to rank ``dest``: floats inside a node, compressed (and counted) between nodes."""
    if layout.node_of[dest] == layout.node_of[mailbox.channel.rank]:
        mailbox.send(values, dest, tag)
    else:
        payload = blockcodec.encode(values, shape, bound, settings.codec)
        stats.add(sent=len(payload), raw=values.nbytes, messages=1)
        mailbox.send(payload, dest, tag, compressed=True)


def _receive_block(mailbox, layout, source, tag, target) -> None:
    """What :func:`_send_block` sent from rank ``source``, into ``target``."""
    if layout.node_of[source] == layout.node_of[mailbox.channel.rank]:
        mailbox.receive_into(source, tag, target)
    else:
        blockcodec.decode(mailbox.receive(source, tag), target)


def gather(
    mailbox: Mailbox,
    layout: Topology,
    send: Buffer | None,
    recv: Buffer | None,
    root: int,
    settings: Settings,
    stats: Stats,
    agreed: np.ndarray,
) -> bool:
    """send is None at a root that gathers in place; recv is None except at the root."""
    bound = bound_of(settings, agreed)
    if not bound > 0:
        return False
    if mailbox.channel.rank != root:
        _send_block(mailbox, layout, root, send.flat, send.block_shape, exchange.TAG_GATHER, bound, settings, stats)
    else:
        for i in range(layout.size):
            if i != root:
                _receive_block(mailbox, layout, i, exchange.TAG_GATHER, recv.block(i))
        if send is not None:
            recv.block(root)[...] = send.flat
    mailbox.close()
    return True


def scatter(
    mailbox: Mailbox,
    layout: Topology,
    send: Buffer | None,
    recv: Buffer | None,
    root: int,
    settings: Settings,
    stats: Stats,
    agreed: np.ndarray,
) -> bool:
    """send is None except at the root; recv is None at a root that scatters in place."""
    bound = bound_of(settings, agreed)
    if not bound > 0:
        return False
    if mailbox.channel.rank == root:
        for i in range(layout.size):
            if i != root:
                _send_block(
                    mailbox, layout, i, send.block(i), send.block_shape, exchange.TAG_SCATTER, bound, settings, stats
                )
        if recv is not None:
            recv.flat[...] = send.block(root)
    else:
        _receive_block(mailbox, layout, root, exchange.TAG_SCATTER, recv.flat)
    mailbox.close()
    return True


# --------------------------------------------------------------------------------- Allgather


def gather_maxima(settings: Settings, own: np.ndarray, shape: tuple[int, ...]) -> list[float]:
    """[max, -min] of this rank's blocks and its row size (both signs: agreed by all)."""
    row_size, _ = row_layout(shape)
    return [*_range(settings, own), row_size, -row_size]


def allgather(
    mailbox: Mailbox,
    layout: Topology,
    send: Buffer | None,
    recv: Buffer,
    settings: Settings,
    stats: Stats,
    agreed: np.ndarray,
) -> bool:
    """Every rank writes every block as the receivers decode it, its own included: the result
    is the same bytes everywhere."""
    bound = bound_of(settings, agreed)
    if not bound > 0:
        return False
    rank = mailbox.channel.rank
    own = send.flat if send is not None else recv.block(rank)
    shape = send.block_shape if send is not None else recv.block_shape
    row_size, trailing = row_layout(shape)
    if agreed[2] != -agreed[3]:
        row_size, trailing = 1, ()
    if row_size <= 1:
        shape = (recv.count,)
    if not layout.regular:
        _direct_allgather(mailbox, layout, own, shape, recv, bound, settings.codec, stats)
        return True
    parts = chunks.split(
        0, recv.count, row_size, trailing, chunks.target_values(settings.segment_bytes, own.dtype.itemsize, recv.count)
    )
    _TwoLevelAllgather(mailbox, layout, own, recv, parts, stats).run(bound, settings.codec)
    return True


def _direct_allgather(mailbox, layout, own, shape, recv, bound, codec, stats) -> None:
    """Nodes of different sizes: each block compressed once and sent to every rank of
    another node, its decoded floats to the ranks of its own node."""
    rank = mailbox.channel.rank
    mine = recv.block(rank)
    payload = blockcodec.encode(own, shape, bound, codec, mine)
    node = layout.node_of[rank]
    for r in range(layout.size):
        if r == rank:
            continue
        if layout.node_of[r] == node:
            mailbox.send(mine, r, exchange.TAG_ALLGATHER)
        else:
            mailbox.send(payload, r, exchange.TAG_ALLGATHER, compressed=True)
            stats.add(sent=len(payload), raw=own.nbytes, messages=1)
    for r in range(layout.size):
        if r == rank:
            continue
        if layout.node_of[r] == node:
            mailbox.receive_into(r, exchange.TAG_ALLGATHER, recv.block(r))
        else:
            blockcodec.decode(mailbox.receive(r, exchange.TAG_ALLGATHER), recv.block(r))
    mailbox.close()


class _TwoLevelAllgather:
    """Between nodes, a ring of the ranks with this rank's local index: step s carries the
    block of the node s+1 back, chunk by chunk, forwarded unchanged. Every block this rank
    decodes (or compresses) also goes to the other ranks of its node, as floats."""

    def __init__(self, mailbox: Mailbox, layout: Topology, own: np.ndarray, recv: Buffer, parts, stats: Stats):
        self.mailbox, self.layout, self.own, self.recv, self.parts, self.stats = (
            mailbox,
            layout,
            own,
            recv,
            parts,
            stats,
        )
        rank = self.rank = mailbox.channel.rank
        self.node, self.local = layout.node_of[rank], layout.local_rank(rank)
        self.peers = layout.peers(self.local)
        self.position, self.size = self.peers.index(rank), len(self.peers)
        self.right = self.peers[(self.position + 1) % self.size]
        self.others = [r for r in layout.members[self.node] if r != rank]
        self.received: dict[tuple[int, int], int] = {}
        self.bound, self.codec = 0.0, "fz"

    def _next(self, source: int, tag: int) -> int:
        index = self.received.get((source, tag), 0)
        self.received[(source, tag)] = index + 1
        return index

    def _to_node(self, block: int, part: Chunk) -> None:
        values = part.of(self.recv.block(block))
        for r in self.others:
            self.mailbox.send(values, r, TAG_FLOATS + block)

    def _handle(self, source: int, tag: int, payload: np.ndarray) -> None:
        if tag >= TAG_FLOATS:  # floats of a block another rank of this node decoded: in place
            return
        step = tag - TAG_CHUNK
        part = self.parts[self._next(source, tag)]
        if step < self.size - 2:
            self.mailbox.send(payload, self.right, tag + 1, compressed=True)  # forwarded as received
            self.stats.add(sent=len(payload), raw=part.size * self.own.dtype.itemsize, messages=1)
        block = self.peers[(self.position - step - 1) % self.size]
        blockcodec.decode(payload, part.of(self.recv.block(block)))
        self._to_node(block, part)

    def _compress_own(self) -> Iterator[None]:
        mine = self.recv.block(self.rank)
        for part in self.parts:
            payload = blockcodec.encode(part.of(self.own), part.shape, self.bound, self.codec, part.of(mine))
            if self.size > 1:
                self.mailbox.send(payload, self.right, TAG_CHUNK, compressed=True)
                self.stats.add(sent=len(payload), raw=part.size * self.own.dtype.itemsize, messages=1)
            self._to_node(self.rank, part)
            yield

    def run(self, bound: float, codec: str) -> None:
        self.bound, self.codec = bound, codec
        for other in self.others:  # its blocks' floats land in place, chunk by chunk
            for block in self.layout.peers(self.layout.local_rank(other)):
                for part in self.parts:
                    self.mailbox.post(other, TAG_FLOATS + block, part.of(self.recv.block(block)))
        between = (self.size - 1) * len(self.parts)
        inside = len(self.others) * self.size * len(self.parts)
        drive(self.mailbox, self._compress_own(), between + inside, self._handle)


# --------------------------------------------------------------------------------- Alltoall


def alltoall(
    mailbox: Mailbox,
    layout: Topology,
    send: Buffer | None,
    recv: Buffer,
    settings: Settings,
    stats: Stats,
    agreed: np.ndarray,
) -> bool:
    """Block i of every rank to rank i: compressed between nodes, floats inside a node, a
    rank's block to itself copied exactly."""
    bound = bound_of(settings, agreed)
    if not bound > 0:
        return False
    rank = mailbox.channel.rank
    # IN_PLACE: the blocks to send live where the received ones go; send from a copy
    source = send if send is not None else Buffer(recv.flat.copy(), recv.count, recv.blocks, recv.block_shape)
    others = [i for i in range(layout.size) if i != rank]
    for i in others:
        _send_block(
            mailbox, layout, i, source.block(i), source.block_shape, exchange.TAG_ALLTOALL, bound, settings, stats
        )
    for i in others:
        _receive_block(mailbox, layout, i, exchange.TAG_ALLTOALL, recv.block(i))
    recv.block(rank)[...] = source.block(rank)
    mailbox.close()
    return True
