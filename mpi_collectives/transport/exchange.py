"""Whole byte messages between ranks, point to point on a channel's mailbox.

The unpipelined paths (one compressed message per rank and step) use these; they are built
from ``Isend`` and matched receives only, never from MPI collectives, so that every message
of a failed collective can be counted and drained (:meth:`.Channel.settle`), and waits poll
for alarms. ``ranks`` lists the members taking part (channel ranks; all of them by default),
so the same helpers run among the ranks of one node or the ranks with one local index.
Byte buffers travel as ``uint8`` numpy arrays or ``bytes``: no pickling, no extra copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .mailbox import Mailbox, Payload

TAG_DOUBLING = 20_000
TAG_TREE = 20_001
TAG_GATHER = 20_002
TAG_SCATTER = 20_003
TAG_ALLGATHER = 20_004
TAG_ALLTOALL = 20_005


def bcast_bytes(
    mailbox: Mailbox,
    payload: Payload | None,
    root: int,
    ranks: Sequence[int] | None = None,
    tag: int = TAG_TREE,
    compressed: bool = False,
) -> tuple[Payload, int]:
    """Binomial-tree broadcast among `ranks` of a byte message known only at `root` (log2 N
    hops). Returns the message and how many times this rank sent it."""
    ranks = list(range(mailbox.channel.size)) if ranks is None else list(ranks)
    size, me = len(ranks), ranks.index(mailbox.channel.rank)
    top = ranks.index(root)
    relative = (me - top) % size
    mask = 1
    while mask < size:  # receive from the parent: the rank that differs in the lowest set bit
        if relative & mask:
            payload = mailbox.receive(ranks[(me - mask) % size], tag)
            break
        mask <<= 1
    mask >>= 1
    sends = 0
    while mask > 0:  # then forward to the children below that bit
        if relative + mask < size:
            mailbox.send(payload, ranks[(me + mask) % size], tag, compressed)
            sends += 1
        mask >>= 1
    return payload, sends


def gather_bytes(
    mailbox: Mailbox, payload: Payload, root: int, ranks: Sequence[int] | None = None, compressed: bool = False
) -> list[np.ndarray] | None:
    """Every member's message, in `ranks` order, at `root` (None elsewhere)."""
    ranks = list(range(mailbox.channel.size)) if ranks is None else list(ranks)
    me = mailbox.channel.rank
    if me != root:
        mailbox.send(payload, root, TAG_GATHER, compressed)
        return None
    return [np.frombuffer(payload, np.uint8) if r == me else mailbox.receive(r, TAG_GATHER) for r in ranks]


def allgather_bytes(
    mailbox: Mailbox, payload: Payload, ranks: Sequence[int] | None = None, tag: int = TAG_ALLGATHER
) -> list[Payload]:
    """Every member's message, in `ranks` order, on every member (sent directly to each)."""
    ranks = list(range(mailbox.channel.size)) if ranks is None else list(ranks)
    me = mailbox.channel.rank
    for r in ranks:
        if r != me:
            mailbox.send(payload, r, tag)
    return [payload if r == me else mailbox.receive(r, tag) for r in ranks]
