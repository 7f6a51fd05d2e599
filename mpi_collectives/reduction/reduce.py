"""Reductions of quantized data: exact integer arithmetic between one quantize and one decode,
in two levels where nodes hold several ranks.

Every rank quantizes its input once on the common grid of :mod:`.grid`; the ranks then
reduce the integer codes exactly and decode the result once. Integer addition is
associative, so the result is the same bits on every rank, for every algorithm, layout and
arrival order. Non-finite inputs are the exception: their positions are agreed on, their
codes zeroed, and their exact values reduced in float64 in rank order.

On a layout of K nodes of L ranks (:class:`..topology.Topology`):

1. *inside the node*, the codes are reduced with plain integer messages (shared memory,
   nothing compressed): the message is cut into S shares (S = L where every node holds as
   many ranks, else 1), and local rank j receives share j of every other local rank's codes
   and combines them;
2. *between nodes*, the ranks with local index j (one per node) reduce share j with a
   compressed algorithm (:mod:`.algorithms`: a pipelined ring, recursive doubling or
   halving/doubling, or a binomial tree, as the cost model chooses), so every rank of a node
   compresses and the node's link carries compressed bytes only;
3. the decoded share goes back *inside the node* as floats (Allreduce: to every local rank;
   Reduce: to the root; Reduce_scatter_block: each block to its owner).

With one rank per node (or compression forced on one node: every rank counts as a node)
steps 1 and 3 vanish and step 2 quantizes lazily, chunk by chunk, inside the ring.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import settings as agreement
from ..settings import MAX, MIN, SUM, Settings
from ..stats import Stats
from ..topology import Topology
from ..transport import chunks
from ..transport.chunks import Chunk, row_layout
from ..transport.mailbox import Mailbox
from . import algorithms
from .codes import COMBINE, Exact, predict, quantize_codes, quantize_residuals, unpredict_into, write
from .grid import Grid, reduction_grid
from .ring import ALLREDUCE, REDUCE, REDUCE_SCATTER, RingReduction, codes_source, quantizing_source

TAG_CODES = 30_000  # a share of another local rank's codes
TAG_FLOATS = 30_001  # a decoded share (or block) from another local rank


@dataclass
class Plan:
    """What the start agreement decided for one reduction."""

    code: int
    grid: Grid
    nonfinite: bool
    dtype: np.dtype
    shape: tuple[int, ...]  # how to see the array for segmenting: the same rows on every rank
    row_size: int = 1  # values per row of `shape`, the same on every rank (1: flat)


def maxima(x: np.ndarray, code: int, block_shape: tuple[int, ...]) -> list[float]:
    """This rank's values for the start agreement: |x| max, max, -min, any non-finite, row size."""
    lo, hi, nonfinite = agreement.finite_stats(x) if code in (SUM, MAX, MIN) else (0.0, 0.0, False)
    gmax = max(-lo, hi, 0.0) if hi >= lo else 0.0
    row_size, _ = row_layout(block_shape)
    return [gmax, hi, -lo, float(nonfinite), row_size, -row_size]


def make_plan(
    agreed: np.ndarray, code: int, nranks: int, x: np.ndarray, settings: Settings, block_shape: tuple[int, ...]
) -> Plan | None:
    """The plan from the agreed maxima; None means: use plain MPI (every rank alike)."""
    if code not in (SUM, MAX, MIN):
        return None
    gmax, ghi, neg_glo, any_nonfinite, max_row, neg_min_row = agreed[:6]
    bound = agreement.resolve_bound(settings, -neg_glo, ghi)
    grid = reduction_grid(code, nranks, bound, gmax, x.dtype)
    if grid is None:
        return None
    # ranks may view the same count as different shapes; segments must be cut alike everywhere
    row_size = int(max_row)
    if row_size > 1 and max_row == -neg_min_row:
        return Plan(code, grid, bool(any_nonfinite), x.dtype, block_shape, row_size)
    return Plan(code, grid, bool(any_nonfinite), x.dtype, (x.size,))


@dataclass
class Segments:
    """A partition of the flat array into segments, whole rows where possible."""

    starts: list[int]
    shapes: list[tuple[int, ...]]

    def slice(self, i: int) -> slice:
        return slice(self.starts[i], self.starts[i + 1])


def even_segments(count: int, parts: int, block_shape: tuple[int, ...]) -> Segments:
    """Split count values into `parts` nearly equal segments; along the first axis of
    block_shape when it has enough rows, so each segment keeps its neighbours in all dims."""
    rows = block_shape[0] if len(block_shape) > 1 and block_shape[0] >= parts else count
    row_size = count // rows
    cuts = [(rows * i // parts) * row_size for i in range(parts + 1)]
    trailing = tuple(block_shape[1:]) if row_size > 1 else ()
    shapes = [((cuts[i + 1] - cuts[i]) // row_size, *trailing) for i in range(parts)]
    return Segments(cuts, shapes)


def _sub_shape(shape: tuple[int, ...], size: int) -> tuple[int, ...]:
    """The shape of `size` values cut from whole rows of `shape` (flat if they are not)."""
    row_size, trailing = row_layout(shape)
    if row_size > 1 and size % row_size == 0:
        return (size // row_size, *trailing)
    return (size,)


@dataclass
class Share:
    """One share of a two-level reduction: the values of x it holds, in order (pieces of x),
    and how the ring between nodes cuts it (blocks, one per node, and their chunks)."""

    pieces: list[tuple[int, int]]  # [a, b) ranges of x, concatenated
    starts: list[int]  # block boundaries, in the share's coordinates
    parts: list[list[Chunk]]  # chunks of each block
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return self.starts[-1]

    def in_x(self, start: int, stop: int) -> list[tuple[int, int]]:
        """The ranges of x that share values [start, stop) come from."""
        found, at = [], 0
        for a, b in self.pieces:
            lo, hi = max(start, at), min(stop, at + b - a)
            if lo < hi:
                found.append((a + lo - at, a + hi - at))
            at += b - a
        return found


class Reduction:
    """One compressed reduction of x over a layout, run by allreduce(), reduce() or
    reduce_scatter_block()."""

    def __init__(
        self,
        mailbox: Mailbox,
        layout: Topology,
        x: np.ndarray,
        plan: Plan,
        settings: Settings,
        stats: Stats,
        choose=None,
    ):
        self.mailbox, self.layout, self.x, self.plan, self.settings, self.stats = (
            mailbox,
            layout,
            x,
            plan,
            settings,
            stats,
        )
        self.choose = choose  # (op, nodes, bytes per share) -> algorithm name, from the cost model
        self.rank = mailbox.channel.rank
        self.node = layout.node_of[self.rank]
        self.local = layout.local_rank(self.rank)
        self.node_ranks = layout.members[self.node]
        self.shares = layout.shares
        self.exact: Exact | None = None
        self.incoming: list[np.ndarray] = []

    def _gather_exact(self) -> None:
        """The non-finite points (after every receive of the call is posted: this one probes)."""
        if self.plan.nonfinite:
            self.exact = Exact.gather_over(self.mailbox, self.x, self.plan.code)

    def _share(self, pieces: list[tuple[int, int]], shape: tuple[int, ...], starts: list[int] | None = None) -> Share:
        """A share of the given pieces of x, cut into one block per node (or at `starts`) and
        into chunks as the ring cuts them."""
        size = sum(b - a for a, b in pieces)
        nodes = self.layout.nodes
        if starts is None:
            starts = even_segments(size, nodes, shape).starts
        row_size, trailing = row_layout(shape)
        if row_size != self.plan.row_size:
            row_size, trailing = 1, ()
        per_block = size // max(nodes, 1)
        target = chunks.target_values(
            self.settings.segment_bytes, self.plan.dtype.itemsize, per_block, chunks.REDUCTION
        )
        parts = [chunks.split(starts[b], starts[b + 1], row_size, trailing, target) for b in range(len(starts) - 1)]
        return Share(pieces, starts, parts, shape)

    # -- step 1: inside the node -----------------------------------------------------------------

    def _quantize_share(self, share: Share, out: np.ndarray) -> None:
        """x's values of the share as codes (a SUM: Lorenzo residuals of each chunk, in one
        pass with the quantization; sums of residuals are the residuals of the sum)."""
        grid, code, exact = self.plan.grid, self.plan.code, self.exact
        for parts in share.parts:
            for part in parts:
                target = part.of(out)
                ranges = share.in_x(part.start, part.stop)
                clean = exact is None or all(not exact.inside(a, b)[0].size for a, b in ranges)
                if code == SUM and clean and len(ranges) == 1:
                    a, b = ranges[0]
                    quantize_residuals(self.x[a:b], grid, part.shape, target)
                    continue
                at = 0
                for a, b in ranges:
                    found = quantize_codes(self.x[a:b], grid, target[at : at + b - a])
                    if exact is not None:
                        exact.zero(found, a)
                    at += b - a
                if code == SUM:
                    fresh = self.mailbox.channel.scratch("fresh-codes", part.size, grid.int_dtype)
                    fresh[...] = target
                    predict(fresh, part.shape, target)

    def _post_codes(self, shares: list[Share]) -> None:
        """Post the receives of the other local ranks' codes of this rank's share (before
        anything is sent: they land where they are added from)."""
        channel, grid = self.mailbox.channel, self.plan.grid
        if self.local < len(shares):
            size = shares[self.local].size
            for i, peer in enumerate(self.node_ranks):
                if peer != self.rank:
                    buf = channel.scratch(f"node-incoming-{i}", size, grid.int_dtype)
                    self.mailbox.post(peer, TAG_CODES, buf)
                    self.incoming.append(buf)

    def _node_codes(self, shares: list[Share]) -> np.ndarray | None:
        """Quantize x share by share, send each other share to its local rank, and combine what
        the other local ranks send for this rank's share (posted by _post_codes). Returns this
        rank's share of the node's codes (None if it carries none)."""
        grid, code, channel = self.plan.grid, self.plan.code, self.mailbox.channel
        offsets = np.cumsum([0] + [share.size for share in shares]).tolist()
        codes = channel.scratch("node-codes", offsets[-1], grid.int_dtype)
        carries = self.local < len(shares)
        order = [j for j in range(len(shares)) if j != self.local] + ([self.local] if carries else [])
        for j in order:
            mine = codes[offsets[j] : offsets[j + 1]]
            self._quantize_share(shares[j], mine)
            if j != self.local:
                self.mailbox.send(mine, self.node_ranks[j], TAG_CODES)
        if not carries:
            return None
        mine = codes[offsets[self.local] : offsets[self.local + 1]]
        for _ in self.incoming:
            _, _, payload = self.mailbox.wait(lambda tag: tag == TAG_CODES)
            COMBINE[code](mine, payload.view(grid.int_dtype), out=mine)
        return mine

    # -- step 2: between nodes -------------------------------------------------------------------

    def _between_nodes(
        self,
        mode: str,
        share: Share,
        values: np.ndarray | None,
        out: np.ndarray | None,
        out_start: int,
        root_node: int = 0,
    ) -> None:
        """Reduce this rank's share with the ranks of the same local index on the other nodes;
        block b of the share belongs to node b's rank. values None: one rank per node, the
        share is all of x, quantized lazily inside the ring; else the node's codes (residuals
        for a SUM) of the share."""
        plan, settings = self.plan, self.settings
        peers = self.layout.peers(self.local)
        nbytes = share.size * plan.dtype.itemsize
        name = "ring"  # also wherever the chunk size is set: pipelining was asked for
        if mode != REDUCE_SCATTER and self.choose is not None and not settings.segment_bytes:
            name = self.choose("allreduce" if mode == ALLREDUCE else "reduce", len(peers), nbytes)
        forced = settings.algorithm
        if (
            mode != REDUCE_SCATTER
            and forced in algorithms.ALGORITHMS
            and algorithms.possible(forced, mode == ALLREDUCE, len(peers))
        ):
            name = forced  # asked for (where it applies; "doubling" is an Allreduce's)
        if name != "ring":
            self._log_steps(name, mode, share, values, out, out_start, root_node)
            return
        if values is None:
            source, exact = quantizing_source(self.x, plan.grid, plan.code, self.exact), self.exact
        else:
            source, exact = codes_source(values, plan.code, predicted=True), None
        ring = RingReduction(
            self.mailbox,
            peers,
            source,
            plan.dtype.itemsize,
            plan.grid,
            plan.code,
            share.starts,
            1,
            (),
            1,
            exact,
            self.stats,
            keep=values,
            parts=share.parts,
        )
        ring.run(mode, out, out_start, root=root_node, in_place_of=self.x if values is None else None)

    def _log_steps(self, name, mode, share: Share, values, out, out_start, root_node) -> None:
        """An unpipelined algorithm on codes (not residuals: each step combines whole codes)."""
        plan = self.plan
        peers = self.layout.peers(self.local)
        if values is None:
            codes = quantize_codes(self.x, plan.grid)
            if self.exact is not None:
                self.exact.zero(codes, 0)
        else:
            codes = values
            if plan.code == SUM:  # the node's residuals, chunk by chunk, back to codes
                for parts in share.parts:
                    for part in parts:
                        unpredict_into(part.of(codes), part.shape)
        root = None if mode == ALLREDUCE else root_node
        held = algorithms.run(name, self.mailbox, peers, codes, share.shape, plan.code, self.stats, plan.dtype, root)
        if held and out is not None:
            exact = self.exact if values is None else None
            write(out, codes[out_start : out_start + out.size], plan.grid, exact, out_start)

    # -- the three reductions --------------------------------------------------------------------

    def _one_per_node(self) -> bool:
        return self.layout.ranks_per_node == 1

    def allreduce(self, out: np.ndarray) -> None:
        """out (on every rank) = the reduction of every rank's x."""
        shape = self.plan.shape
        if self._one_per_node():
            self._gather_exact()
            self._between_nodes(ALLREDUCE, self._share([(0, self.x.size)], shape), None, out, 0)
            self.mailbox.close()
            return
        cuts = even_segments(self.x.size, self.shares, shape)
        shares = [self._share([(cuts.starts[j], cuts.starts[j + 1])], cuts.shapes[j]) for j in range(self.shares)]
        mailbox = self.mailbox
        for j in range(self.shares):  # the other shares' floats land in place
            if j != self.local:
                mailbox.post(self.node_ranks[j], TAG_FLOATS, out[cuts.slice(j)])
        self._post_codes(shares)
        self._gather_exact()
        values = self._node_codes(shares)
        if values is not None:
            mine = out[cuts.slice(self.local)]
            self._between_nodes(ALLREDUCE, shares[self.local], values, mine, 0)
            for peer in self.node_ranks:
                if peer != self.rank:
                    mailbox.send(mine, peer, TAG_FLOATS)
        for j in range(self.shares):
            if j != self.local:
                mailbox.wait(lambda tag: tag == TAG_FLOATS)
        self._fix_exact(out, 0)
        mailbox.close()

    def reduce(self, out: np.ndarray | None, root: int) -> None:
        """out (at root) = the reduction."""
        shape = self.plan.shape
        root_node = self.layout.node_of[root]
        if self._one_per_node():
            self._gather_exact()
            self._between_nodes(REDUCE, self._share([(0, self.x.size)], shape), None, out, 0, root_node)
            self.mailbox.close()
            return
        cuts = even_segments(self.x.size, self.shares, shape)
        shares = [self._share([(cuts.starts[j], cuts.starts[j + 1])], cuts.shapes[j]) for j in range(self.shares)]
        mailbox = self.mailbox
        if self.rank == root:
            for j in range(self.shares):
                if self.node_ranks[j] != root:
                    mailbox.post(self.node_ranks[j], TAG_FLOATS, out[cuts.slice(j)])
        self._post_codes(shares)
        self._gather_exact()
        values = self._node_codes(shares)
        if values is not None:
            here = self.node == root_node
            size = shares[self.local].size
            target = None
            if here:
                target = out[cuts.slice(self.local)] if self.rank == root else np.empty(size, self.plan.dtype)
            self._between_nodes(REDUCE, shares[self.local], values, target, 0, root_node)
            if here and self.rank != root:
                mailbox.send(target, root, TAG_FLOATS)
        if self.rank == root:
            for j in range(self.shares):
                if self.node_ranks[j] != root:
                    mailbox.wait(lambda tag: tag == TAG_FLOATS)
            self._fix_exact(out, 0)
        mailbox.close()

    def reduce_scatter_block(self, out: np.ndarray, count: int, block_shape: tuple[int, ...]) -> None:
        """out (on rank r) = block r of the reduction (x holds one block per rank)."""
        layout = self.layout
        if self._one_per_node():
            starts = [i * count for i in range(layout.size + 1)]
            share = self._share([(0, self.x.size)], block_shape, starts)
            self._gather_exact()
            self._between_nodes(REDUCE_SCATTER, share, None, out, starts[self.rank])
            self.mailbox.close()
            return
        # share j holds, node by node, the blocks of the ranks it carries: each rank's own
        # block when every node has S = L shares, else all of a node's blocks (S = 1)
        carried = [
            [[layout.members[n][j]] if self.shares > 1 else list(layout.members[n]) for n in range(layout.nodes)]
            for j in range(self.shares)
        ]
        shares = []
        for share_ranks in carried:
            pieces = [(r * count, (r + 1) * count) for node in share_ranks for r in node]
            starts = np.cumsum([0] + [len(node) * count for node in share_ranks]).tolist()
            shape = block_shape if self.shares > 1 else (count,)
            shares.append(self._share(pieces, shape, starts))
        mailbox = self.mailbox
        if self.local >= self.shares:
            mailbox.post(self.node_ranks[0], TAG_FLOATS, out)
        self._post_codes(shares)
        self._gather_exact()
        values = self._node_codes(shares)
        if values is not None:
            share = shares[self.local]
            start = share.starts[self.node]
            if self.shares > 1:
                self._between_nodes(REDUCE_SCATTER, share, values, out, start)
            else:
                node_block = np.empty(share.starts[self.node + 1] - start, self.plan.dtype)
                self._between_nodes(REDUCE_SCATTER, share, values, node_block, start)
                for i, r in enumerate(carried[self.local][self.node]):
                    if r == self.rank:
                        out[...] = node_block[i * count : (i + 1) * count]
                    else:
                        mailbox.send(node_block[i * count : (i + 1) * count], r, TAG_FLOATS)
        else:
            mailbox.wait(lambda tag: tag == TAG_FLOATS)
        self._fix_exact(out, self.rank * count)
        mailbox.close()

    def _fix_exact(self, out: np.ndarray, start: int) -> None:
        """The exactly reduced non-finite points (in two-level runs, written after the floats
        went round: the same values on every rank)."""
        if self.exact is None or self._one_per_node():
            return
        where, values = self.exact.inside(start, start + out.size)
        with np.errstate(invalid="ignore", over="ignore"):
            out[where] = values.astype(out.dtype)
