"""Reductions of integer codes in a logarithmic number of steps, for small messages and many
nodes, beside the pipelined ring (:mod:`.ring`); the cost model picks one
(:func:`..costmodel.reduction_algorithm`).

* ``doubling``: log2 P exchanges of the whole vector with rank ^ 2**k (P a power of two):
  the fewest steps, the most bytes (log2 P messages of M);
* ``halving``: recursive halving (a reduce-scatter in log2 P steps of M/2, M/4, ...), then
  recursive doubling of the final pieces, forwarded as they were encoded (Rabenseifner;
  P a power of two): the ring's bytes in 2 log2 P steps instead of 2(P-1);
* ``tree``: a binomial tree to the root, then (Allreduce) the final codes down a binomial
  tree as one compressed message: any P, 2 log2 P steps.

Every rank passes its codes (already combined inside its node); the result is exact integer
arithmetic, so it is the same bits as the ring's. Every step moves compressed code streams.
"""

from __future__ import annotations

import struct

import numpy as np

from ..stats import Stats
from ..transport import exchange
from ..transport.chunks import row_layout
from ..transport.mailbox import Mailbox
from .codes import COMBINE, decode, encode

ALGORITHMS = ("ring", "doubling", "halving", "tree")
_TAG_HALVING = 21_000  # + step
_TAG_GATHER_PIECES = 21_500  # + step
_PIECE = struct.Struct("<qqq")  # start, stop, length of the encoded piece


def power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


def possible(name: str, allreduce: bool, peers: int) -> bool:
    """Whether algorithm `name` runs an Allreduce (or a Reduce) among this many peers."""
    if name in ("doubling", "halving"):
        return power_of_two(peers) and (allreduce or name == "halving")
    return True


def _split(lo: int, hi: int, shape: tuple[int, ...]) -> int:
    """The midpoint of [lo, hi), on a row boundary of shape where the range holds whole rows."""
    row_size, _ = row_layout(shape)
    if row_size > 1 and lo % row_size == 0 and hi % row_size == 0:
        rows = (hi - lo) // row_size
        return lo + (rows // 2) * row_size
    return lo + (hi - lo) // 2


def _shape_of(lo: int, hi: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    row_size, trailing = row_layout(shape)
    if row_size > 1 and lo % row_size == 0 and hi % row_size == 0:
        return ((hi - lo) // row_size, *trailing)
    return (hi - lo,)


def _send(mailbox: Mailbox, codes: np.ndarray, lo: int, hi: int, shape, dest: int, tag: int, stats, itemsize) -> bytes:
    payload = encode(codes[lo:hi], _shape_of(lo, hi, shape))
    stats.add(sent=len(payload), raw=(hi - lo) * itemsize, messages=1)
    mailbox.send(payload, dest, tag, compressed=True)
    return payload


def doubling(mailbox, peers, codes, shape, code, stats: Stats, itemsize: int) -> None:
    """codes (on every peer) = the reduction, by log2 P whole-vector exchanges."""
    pos, size = peers.index(mailbox.channel.rank), len(peers)
    distance = 1
    while distance < size:
        partner = peers[pos ^ distance]
        _send(mailbox, codes, 0, codes.size, shape, partner, exchange.TAG_DOUBLING, stats, itemsize)
        incoming = mailbox.receive(partner, exchange.TAG_DOUBLING)
        COMBINE[code](codes, decode(incoming, codes.size, codes.dtype), out=codes)
        distance <<= 1


def halving(mailbox, peers, codes, shape, code, stats: Stats, itemsize: int, root: int | None = None) -> None:
    """Recursive halving, then the final pieces to every peer (root None) or to peers[root]."""
    pos, size = peers.index(mailbox.channel.rank), len(peers)
    lo, hi = 0, codes.size
    distance, step = size // 2, 0
    while distance >= 1:
        partner = peers[pos ^ distance]
        mid = _split(lo, hi, shape)
        keep, give = ((lo, mid), (mid, hi)) if pos & distance == 0 else ((mid, hi), (lo, mid))
        _send(mailbox, codes, *give, shape, partner, _TAG_HALVING + step, stats, itemsize)
        incoming = mailbox.receive(partner, _TAG_HALVING + step)
        part = codes[keep[0] : keep[1]]
        COMBINE[code](part, decode(incoming, part.size, codes.dtype), out=part)
        lo, hi = keep
        distance //= 2
        step += 1
    pieces = {(lo, hi): encode(codes[lo:hi], _shape_of(lo, hi, shape))}
    if root is not None:  # the final pieces to the root, as encoded
        blob = _pack(pieces)
        gathered = exchange.gather_bytes(mailbox, blob, peers[root], peers, compressed=True)
        if gathered is not None:
            for i, data in enumerate(gathered):
                if i != pos:
                    _unpack_into(data, codes)
        elif pos != root:
            stats.add(sent=len(blob), raw=(hi - lo) * itemsize, messages=1)
        return
    distance, step = 1, 0
    while distance < size:  # recursive doubling of what each rank has, forwarded unchanged
        partner = peers[pos ^ distance]
        blob = _pack(pieces)
        stats.add(sent=len(blob), raw=sum(b - a for a, b in pieces) * itemsize, messages=1)
        mailbox.send(blob, partner, _TAG_GATHER_PIECES + step, compressed=True)
        for (a, b), payload in _unpack(mailbox.receive(partner, _TAG_GATHER_PIECES + step)).items():
            pieces[(a, b)] = payload
            part = codes[a:b]
            part[...] = decode(payload, b - a, codes.dtype)
        distance <<= 1
        step += 1


def tree(mailbox, peers, codes, shape, code, stats: Stats, itemsize: int, root: int = 0, everywhere: bool = True):
    """A binomial tree to peers[root] (combining on the way), then, if `everywhere`, the final
    codes down a binomial tree as one compressed message."""
    pos, size = peers.index(mailbox.channel.rank), len(peers)
    relative = (pos - root) % size
    mask = 1
    while mask < size:
        if relative & mask:
            _send(mailbox, codes, 0, codes.size, shape, peers[(pos - mask) % size], exchange.TAG_TREE, stats, itemsize)
            break
        if relative + mask < size:
            incoming = mailbox.receive(peers[(pos + mask) % size], exchange.TAG_TREE)
            COMBINE[code](codes, decode(incoming, codes.size, codes.dtype), out=codes)
        mask <<= 1
    if not everywhere:
        return
    final = encode(codes, _shape_of(0, codes.size, shape)) if pos == root else None
    payload, sends = bcast_final(mailbox, final, peers[root], peers)
    stats.add(sent=sends * len(payload), raw=sends * codes.size * itemsize, messages=sends)
    if pos != root:
        codes[...] = decode(payload, codes.size, codes.dtype)


def bcast_final(mailbox: Mailbox, payload, root: int, peers):
    """The root's final codes to every peer (a distinct tag from the reduction's tree)."""
    return exchange.bcast_bytes(mailbox, payload, root, peers, tag=exchange.TAG_TREE + 100, compressed=True)


def run(name: str, mailbox, peers, codes, shape, code, stats, dtype, root: int | None = None) -> bool:
    """Run algorithm `name` on codes among peers; root None: an Allreduce (every peer ends with
    the result), else a Reduce to peers[root]. Returns whether this rank holds the result."""
    pos = peers.index(mailbox.channel.rank)
    itemsize = np.dtype(dtype).itemsize
    if len(peers) == 1:
        return True
    if name == "doubling" and root is None:
        doubling(mailbox, peers, codes, shape, code, stats, itemsize)
        return True
    if name == "halving":
        halving(mailbox, peers, codes, shape, code, stats, itemsize, root)
        return root is None or pos == root
    tree(mailbox, peers, codes, shape, code, stats, itemsize, 0 if root is None else root, root is None)
    return root is None or pos == root


def _pack(pieces: dict[tuple[int, int], bytes]) -> bytes:
    head = struct.pack("<q", len(pieces))
    parts = [head]
    for (a, b), payload in pieces.items():
        parts.append(_PIECE.pack(a, b, len(payload)))
        parts.append(bytes(payload))
    return b"".join(parts)


def _unpack(blob) -> dict[tuple[int, int], memoryview]:
    view = memoryview(blob).cast("B")
    (count,) = struct.unpack_from("<q", view, 0)
    at, found = 8, {}
    for _ in range(count):
        a, b, length = _PIECE.unpack_from(view, at)
        at += _PIECE.size
        found[(a, b)] = view[at : at + length]
        at += length
    return found


def _unpack_into(blob, codes: np.ndarray) -> None:
    for (a, b), payload in _unpack(blob).items():
        part = codes[a:b]
        part[...] = decode(payload, b - a, codes.dtype)
