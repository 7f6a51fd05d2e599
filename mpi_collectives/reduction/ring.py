"""Pipelined ring reductions: reduce-scatter, then allgather (Allreduce), the root (Reduce), or
nothing (Reduce_scatter_block), with every block cut into chunks that flow independently.

Rank r owns block r. In reduce-scatter step s it receives from its left neighbour the
partial sum of block r-s-2 (chunk by chunk), adds its own codes and passes the sum on to the
right; after N-1 steps block r holds the sum of all ranks. The allgather passes each final
block around the ring, forwarding the received bytes unchanged. A chunk moves on as soon as
it is ready, so in steady state a rank decodes chunk k, encodes it again for the next hop
and sends it while the link carries chunk k-1 and its neighbours work on other chunks.
The compute per rank is the least any ring can do (encode M, decode 2(N-1)/N M for a
message of M bytes), and is now overlapped with the wire instead of following it.

Codes are quantized lazily, chunk by chunk (the first chunks go out before the rest is
quantized), and written to the output as soon as they are final. The ring runs over any
list of ranks (``peers``: all of them, or the ranks with one local index, one per node, in
the two-level algorithms of :mod:`.hierarchy`, whose codes come already reduced inside the
node: ``source``) and shares its mailbox with the other stages of a collective. Integer sums are exact,
so the result is the same bits as the unpipelined algorithms give, for any chunk size.

A SUM travels as Lorenzo residuals: each rank predicts its own codes once, and since the
prediction is linear, the partial sums are added and re-encoded as residuals and only a
final sum is restored to codes. Every reduce-scatter hop thus skips the restore and the
prediction (and adds in the decoder's pass); MAX and MIN, which are not linear, travel as
codes and are predicted inside each encode.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import numpy as np

from ..settings import SUM
from ..stats import Stats
from ..transport import chunks
from ..transport.chunks import Chunk
from ..transport.mailbox import Mailbox, drive
from . import codes
from .codes import COMBINE, Exact
from .grid import Grid

ALLREDUCE, REDUCE_SCATTER, REDUCE = "allreduce", "reduce_scatter", "reduce"
# a chunk's codes (or residuals, for a SUM) into the spare array when one is given
Source = Callable[[Chunk, "np.ndarray | None"], np.ndarray]


def quantizing_source(x: np.ndarray, grid: Grid, code: int, exact: Exact | None) -> Source:
    """Chunks of the float array x, quantized on the grid (and predicted, for a SUM) when the
    ring first needs them; non-finite points get the code 0 (see Exact)."""
    linear = code == SUM
    fresh: list[np.ndarray] = []  # one chunk's codes before their prediction (reused)

    def scratch(size: int) -> np.ndarray:
        if not fresh or fresh[0].size < size:
            fresh[:] = [np.empty(size, grid.int_dtype)]
        return fresh[0][:size]

    def source(part: Chunk, spare: np.ndarray | None) -> np.ndarray:
        out = spare if spare is not None else np.empty(part.size, grid.int_dtype)
        if linear and (exact is None or not exact.inside(part.start, part.stop)[0].size):
            return codes.quantize_residuals(part.of(x), grid, part.shape, out)
        found = codes.quantize_codes(part.of(x), grid, scratch(part.size) if linear else out)
        if exact is not None:
            exact.zero(found, part.start)
        return codes.predict(found, part.shape, out) if linear else found

    return source


def codes_source(values: np.ndarray, code: int, offset: int = 0, predicted: bool = False) -> Source:
    """Chunks of codes already quantized (and reduced inside the node), combined in place: for
    a SUM their residuals, predicted here unless `predicted` (each chunk's residuals already),
    else the codes themselves. `offset`: where values starts in the ring's coordinates."""
    linear = code == SUM and not predicted

    def source(part: Chunk, spare: np.ndarray | None) -> np.ndarray:
        found = values[part.start - offset : part.stop - offset]
        if not linear:
            return found
        return codes.predict(found, part.shape, spare if spare is not None else np.empty(part.size, values.dtype))

    return source


class RingReduction:
    """One pipelined ring reduction over `peers` of the values [starts[0], starts[-1]) (block b
    is [starts[b], starts[b+1]) and belongs to peers[b]), run by run()."""

    def __init__(
        self,
        mailbox: Mailbox,
        peers: Sequence[int],
        source: Source,
        itemsize: int,
        grid: Grid,
        code: int,
        starts: list[int],
        row_size: int,
        trailing: tuple[int, ...],
        target: int,
        exact: Exact | None,
        stats: Stats,
        tag_base: int = 0,
        keep: np.ndarray | None = None,
        parts: list[list[Chunk]] | None = None,
    ):
        self.mailbox, self.peers, self.source, self.itemsize = mailbox, list(peers), source, itemsize
        self.grid, self.code, self.exact, self.stats = grid, code, exact, stats
        self.rank, self.size = self.peers.index(mailbox.channel.rank), len(self.peers)
        self.linear = code == SUM  # chunks hold Lorenzo residuals, not codes
        self.right = self.peers[(self.rank + 1) % self.size]
        self.parts = parts or [
            chunks.split(starts[b], starts[b + 1], row_size, trailing, target) for b in range(self.size)
        ]
        self.codes: dict[tuple[int, int], np.ndarray] = {}
        self.spares: dict[int, list[np.ndarray]] = {}  # code arrays of retired chunks, by size
        self.quantized: set[tuple[int, int]] = set()  # never again: x may be the output (IN_PLACE)
        self.received: dict[tuple[int, int], int] = {}  # chunks handed in so far, per (tag, source)
        self.base = tag_base
        self.keep = keep  # the source's own array: its chunks are never reused as spares
        self.mode = ALLREDUCE
        self.out: np.ndarray | None = None
        self.out_start = 0
        self.root = 0

    # tags: reduce-scatter step s, allgather step s, the final blocks sent to a Reduce root
    def _rs(self, step: int) -> int:
        return self.base + step

    def _ag(self, step: int) -> int:
        return self.base + self.size + step

    def _to_root(self) -> int:
        return self.base + 2 * self.size

    def accepts(self, tag: int) -> bool:
        return self.base <= tag <= self.base + 2 * self.size

    def _quantized(self, block: int, index: int) -> np.ndarray:
        key = (block, index)
        found = self.codes.get(key)
        if found is None:
            part = self.parts[block][index]
            if part.size == 0:
                found = np.empty(0, self.grid.int_dtype)
            else:
                found = self.source(part, self._spare(part.size))
            self.codes[key] = found
            self.quantized.add(key)
        return found

    def _spare(self, size: int) -> np.ndarray | None:
        """A code array of a finished chunk to quantize into (fresh arrays cost page faults
        on first touch: measured as much as the bit shuffle itself), or None."""
        pool = self.spares.get(size)
        return pool.pop() if pool else None

    def _retire(self, key: tuple[int, int]) -> None:
        """Chunk `key`'s codes are sent or written: keep the array for a later chunk. Sends
        carry encoded bytes, never the codes, so nothing still reads it."""
        found = self.codes.pop(key)
        if self.keep is None or not np.may_share_memory(found, self.keep):
            self.spares.setdefault(found.size, []).append(found)

    def _send_codes(self, values: np.ndarray, part: Chunk, dest: int, tag: int) -> None:
        payload = codes.encode(values, part.shape, predict=not self.linear)
        self.stats.add(sent=len(payload), raw=part.size * self.itemsize, messages=1)
        self.mailbox.send(payload, dest, tag, compressed=True)

    def _write(self, values: np.ndarray, part: Chunk) -> None:
        """Write a final chunk (residuals of a SUM: restored in place as they are written)."""
        start = part.start - self.out_start
        codes.write(
            self.out[start : start + part.size],
            values,
            self.grid,
            self.exact,
            part.start,
            residuals_of=part.shape if self.linear else None,
        )

    def _final(self, index: int, values: np.ndarray) -> None:
        """Chunk `index` of this rank's block holds the reduction of all ranks."""
        part = self.parts[self.rank][index]
        if self.mode == ALLREDUCE:
            self._send_codes(values, part, self.right, self._ag(0))
        if self.mode != REDUCE or self.rank == self.root:
            self._write(values, part)
        else:
            self._send_codes(values, part, self.peers[self.root], self._to_root())
        self._retire((self.rank, index))

    def _next(self, tag: int, source: int = -1) -> int:
        """The chunk index of the next message on (tag, source): they come in chunk order."""
        index = self.received.get((tag, source), 0)
        self.received[(tag, source)] = index + 1
        return index

    def _handle(self, source: int, tag: int, payload: np.ndarray) -> None:
        size, rank = self.size, self.rank
        step = tag - self.base
        if step < size:  # reduce-scatter step `step`
            index = self._next(tag)
            block = (rank - step - 2) % size
            mine = self._quantized(block, index)
            if self.linear:
                codes.decode_add(payload, mine)
            else:
                COMBINE[self.code](mine, codes.decode(payload, mine.size, self.grid.int_dtype), out=mine)
            if step < size - 2:
                self._send_codes(mine, self.parts[block][index], self.right, self._rs(step + 1))
                self._retire((block, index))
            else:
                self._final(index, mine)
        elif step < 2 * size:  # allgather step `step - size`
            index = self._next(tag)
            step -= size
            block = (rank - step - 1) % size
            if step < size - 2:
                self.mailbox.send(payload, self.right, tag + 1, compressed=True)  # forwarded as received
                self.stats.add(sent=len(payload), raw=self.parts[block][index].size * self.itemsize, messages=1)
            part = self.parts[block][index]
            self._write(codes.decode(payload, part.size, self.grid.int_dtype), part)
        else:  # a final chunk of block `source`, at the root
            block = self.peers.index(source)
            index = self._next(tag, block)
            part = self.parts[block][index]
            self._write(codes.decode(payload, part.size, self.grid.int_dtype), part)

    def _work(self) -> Iterator[None]:
        """Local compute that feeds the pipeline: the first step's chunks, then every other
        chunk's codes in the order the incoming partial sums will need them."""
        first = (self.rank - 1) % self.size
        for index, part in enumerate(self.parts[first]):
            self._send_codes(self._quantized(first, index), part, self.right, self._rs(0))
            self._retire((first, index))
            yield
        for step in range(self.size - 1):
            block = (self.rank - step - 2) % self.size
            for index in range(len(self.parts[block])):
                if (block, index) not in self.quantized:
                    self._quantized(block, index)
                    yield

    def _expected(self) -> int:
        size, rank = self.size, self.rank
        count = sum(len(self.parts[(rank - s - 2) % size]) for s in range(size - 1))
        if self.mode == ALLREDUCE:
            count += sum(len(self.parts[(rank - s - 1) % size]) for s in range(size - 1))
        elif self.mode == REDUCE and rank == self.root:
            count += sum(len(self.parts[b]) for b in range(size) if b != rank)
        return count

    def run(
        self,
        mode: str,
        out: np.ndarray | None,
        out_start: int = 0,
        root: int = 0,
        in_place_of: np.ndarray | None = None,
    ) -> None:
        """Reduce; `out` (whole message, or this rank's block at out_start, or None off the
        root) receives the decoded result; root is a position in peers. `in_place_of`: the
        input array when out shares its memory (Reduce_scatter_block IN_PLACE)."""
        self.mode, self.out, self.out_start, self.root = mode, out, out_start, root
        if out is not None and in_place_of is not None and np.shares_memory(out, in_place_of):
            # IN_PLACE: the result goes to block 0 of the input, which may not be quantized
            # yet when this rank's block is final (elsewhere an output chunk is written only
            # after this rank's codes for it went into the sum)
            for block, parts in enumerate(self.parts):
                for index in range(len(parts)):
                    self._quantized(block, index)
        if self.size == 1:  # one node: nothing to exchange
            if mode != REDUCE or root == 0:
                for index, part in enumerate(self.parts[0]):
                    self._write(self._quantized(0, index), part)
            return
        drive(self.mailbox, self._work(), self._expected(), self._handle, self.accepts, close=False)
