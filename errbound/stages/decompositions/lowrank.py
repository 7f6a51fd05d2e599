"""Hierarchical low-rank tiles (HLRcompress-style) of a matrix, factors stored with zfpy.

The matrix is split by a quadtree (a dimension longer than ``leaf`` is halved at a multiple
of ``leaf``) down to leaf tiles. Bottom up, every node gets *fine* factors: a leaf by a
truncated SVD of its data, an inner node by QR + SVD recompression of its children's fine
factors (HLRcompress's merge; the dense data is not touched again). From the fine factors a
node's candidate ranks follow from the error budget, and a cost model (zfp bytes of the
factors + the entropy of the ``sz`` predictor's codes on the residual, against that entropy
on the data where the tile stays dense) decides, per node, between one low-rank block, a
dense tile, or its children. :func:`global_plans` adds one-block plans of low rank whose
residual stays far above the bound (low rank as a predictor). This module holds the tiling,
the factors and their coding; the policy numbers live in :class:`Policy`.

Stored per low-rank node: column ``k`` of ``F = U diag(s) / c`` and of ``G = V diag(p) / c``
(``p_k = 2**round(log2 s_k)`` and ``c`` a power of two that grows with the node's size, so one
absolute zfp tolerance spends bits evenly), and the exponent ``x_k`` with
``U diag(s) V^T = F diag(2**x_k) G^T``. The decoder rebuilds ``L = F (G diag(2**x))^T`` in a
numba loop with a fixed summation order (BLAS would sum differently per thread count and
CPU), so encoder and decoder hold the same ``L`` bit for bit.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ...errors import CorruptStreamError, OutputLimitError
from ...jit import kernel, run_tasks
from ...stage import Stage
from ..coders import zfp

SPLIT, ZERO, LOWRANK = 0, 1, 2  # node codes of the serialized quadtree, in preorder
MAX_EXPONENT = 2000  # |x_k| beyond this is never written (doubles span +-1074)
_TABLE_HEAD = struct.Struct("<QQQQQ")  # rows, cols, leaf, node count, column count
_CRC = struct.Struct("<I")


@dataclass
class Policy:
    """Encoder choices (none is needed to decode).

    Measured on the covariance (2048 points) and 2-D kernel matrices (1024 points, both
    orderings) at rel 1e-2..1e-4: leaf 128 against 64 and 32 gave about the same ratios
    (geometric mean +2 % over 64, -3 % .. +19 % per case) in 25 % less time; a factor
    tolerance of 2 eb beat 0.5, 1 and 4 eb by 1-8 %; candidate errors (0.2, 0.4, 0.8) eb beat
    sets without the small 0.2 by up to 3x on the covariance at 1e-2 (large merged blocks
    want a small residual, small tiles a large one).
    """

    leaf: int = 128
    tolerance: float = 2.0  # zfp absolute tolerance on the factors, in units of eb
    kappas: tuple[float, ...] = (0.2, 0.4, 0.8)  # candidate RMS truncation errors, in units of eb
    #: ranks of single-block plans: low rank as a *predictor* (the residual is far above eb
    #: and the `sz` stages code it), which is where matricized climate stacks gain
    global_ranks: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    fine: float = 0.1  # RMS error of the factors kept for merging, in units of eb
    max_rank_share: float = 0.75  # fine factors above this share of min(rows, cols) are dropped
    sample: int = 1 << 16  # entries used to estimate a large node's residual cost


@dataclass
class LowRankTiles(Stage):
    """Stage: the quadtree of low-rank blocks of the array viewed as a matrix.

    ``split``: the matrix has ``prod(shape[:split])`` rows (the rest are columns);
    ``leaf``: the quadtree's leaf size; ``tolerance``: the zfp tolerance of the factors;
    ``blocks``: the number of low-rank blocks (0 = the codec stored the array densely);
    ``residual``: the dtype the residual ``x - L`` was coded in (version 2; version 1 always
    coded it in float64, which a record without the parameter means).
    """

    name = "lowrank"
    # v2: the residual in the array's own dtype. A float32 array then needs only float32
    # kernels (its float64 residual compiled every `sz` kernel a second time: 2.2 s of a
    # cold first call) and its unpredictable residuals take 4 bytes, not 8. A float64
    # residual is still written as a v1 record, so those streams are unchanged.
    version = 2
    optional = frozenset({"residual"})

    split: int
    leaf: int
    tolerance: float
    blocks: int
    residual: str = "float64"

    def __post_init__(self):
        for key in ("split", "leaf", "blocks"):
            value = getattr(self, key)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool):
                raise TypeError(f"{key} must be an integer")
            setattr(self, key, int(value))
        self.tolerance = float(self.tolerance)
        if (
            self.leaf < 4
            or self.blocks < 0
            or self.split < 0
            or not (self.tolerance >= 0 and math.isfinite(self.tolerance))
            or self.residual not in ("float32", "float64")
        ):
            raise ValueError("low-rank stage parameters out of range")

    @classmethod
    def load(cls, records: list) -> LowRankTiles:
        stage = super().load(records)
        record = next(r for r in records if isinstance(r, dict) and r.get("name") == cls.name)
        if ("residual" in record["params"]) != (record.get("version") == 2):
            raise CorruptStreamError("stage 'lowrank' has a residual dtype only in version 2 records")
        return stage

    def record(self) -> dict:
        if self.residual == "float64":  # what version 1 wrote: older readers keep reading it
            params = self.params()
            del params["residual"]
            return {"name": self.name, "version": 1, "params": params}
        return super().record()


# ---------------------------------------------------------------------------------------------
# kernels


# rows of a block that one work item updates together: each column of G is read once for
# them instead of once per row (a 2048^2 block of rank 2048 read its 32 MiB of G per row:
# 8.4 s, bound by memory)
ROW_GROUP = 8


@kernel
def _accumulate_products(first, stop, out, items, blocks, factors):
    """out[r0 + i, c0 + j] += sum_k F[i, k] G[j, k] for every (block, first row i0) work item
    (rows i0 .. i0 + ROW_GROUP - 1 of the block).

    Columns are stored one after the other (F's, then G's, each padded to a multiple of 4).
    Per element the sum runs over k in increasing order and no FMA is formed, so the result
    is the same for any thread count and row grouping; rows of the blocks are disjoint, so
    items run in parallel.
    """
    for t in range(first, stop):
        b = items[t, 0]
        i0 = items[t, 1]
        r0, c0, nr, nc, rank, off = blocks[b, 0], blocks[b, 1], blocks[b, 2], blocks[b, 3], blocks[b, 4], blocks[b, 5]
        pr = (nr + 3) // 4 * 4
        pc = (nc + 3) // 4 * 4
        g0 = off + rank * pr
        i1 = min(i0 + ROW_GROUP, nr)
        for k in range(rank):
            gk = g0 + k * pc
            for i in range(i0, i1):
                f = factors[off + k * pr + i]
                row = out[r0 + i]
                for j in range(nc):
                    row[c0 + j] += f * factors[gk + j]


def padded(n):
    """Length of a stored factor column of n values (a multiple of zfp's block of 4); also
    elementwise on an array of lengths."""
    return (n + 3) // 4 * 4


def _columns(block: np.ndarray, n: int) -> np.ndarray:
    """(n x r) factor -> its columns one after another, each padded to a multiple of 4 with
    its last value (zfp codes blocks of 4; a pad never straddles two columns)."""
    r = block.shape[1]
    out = np.empty((r, padded(n)), np.float64)
    out[:, :n] = block.T
    out[:, n:] = block.T[:, n - 1 : n]
    return out.reshape(-1)


def zfp_encode(values: np.ndarray, tolerance: float) -> bytes:
    """All factor columns as one 1-D float64 zfp stream, fixed accuracy ``tolerance``."""
    return zfp.encode(np.ascontiguousarray(values, np.float64), tolerance)


def zfp_decode(blob, count: int) -> np.ndarray:
    """The ``count`` factor values of a :func:`zfp_encode` stream (zfp decoding is exact
    integer work, the same on every machine)."""
    return zfp.decode(blob, (count,), np.dtype(np.float64), "low-rank factor section")


# ---------------------------------------------------------------------------------------------
# the quadtree


@dataclass
class Node:
    """A quadtree node: its rectangle, its fine factors while merging, and its decision."""

    r0: int
    c0: int
    nr: int
    nc: int
    children: list[Node] = field(default_factory=list)
    U: np.ndarray | None = None  # fine factors (None: this node cannot be low-rank)
    s: np.ndarray | None = None
    V: np.ndarray | None = None
    err2: float = 0.0  # squared Frobenius error of the fine factors
    kind: int = ZERO  # the decision: SPLIT, ZERO (dense) or LOWRANK
    cost: float = 0.0  # bits of the decision
    F: np.ndarray | None = None  # chosen stored factors (columns, padded) and exponents
    G: np.ndarray | None = None
    x: np.ndarray | None = None

    @property
    def count(self) -> int:
        return self.nr * self.nc


def halves(n: int, leaf: int) -> list[tuple[int, int]]:
    """(offset, length) of the parts of an axis of length n: halved at a multiple of leaf."""
    if n <= leaf:
        return [(0, n)]
    mid = -(-(n // 2) // leaf) * leaf
    return [(0, mid), (mid, n - mid)]


def children_of(r0: int, c0: int, nr: int, nc: int, leaf: int) -> list[tuple[int, int, int, int]]:
    """Child rectangles in a fixed order (row halves outer, column halves inner)."""
    return [(r0 + ro, c0 + co, rn, cn) for ro, rn in halves(nr, leaf) for co, cn in halves(nc, leaf)]


def _spread_starts(n: int, leaf: int, grid: int) -> np.ndarray:
    """``grid`` tile starts spread evenly over an axis of n, distinct (along an axis of at
    most leaf + 3 values they repeat: a 128x128 chunk took the same tile's SVD 25 times)."""
    return np.unique(np.linspace(0, max(0, n - leaf), grid).astype(int))


def _aligned_starts(n: int, leaf: int, grid: int) -> np.ndarray:
    """Up to ``grid`` starts of whole leaf tiles of the quadtree (multiples of leaf), spread
    evenly; 0 where the axis is shorter than a leaf. The quadtree's nodes are unions of such
    tiles, and a low-rank node has low-rank tiles."""
    whole = max(1, n // leaf)
    return np.unique(np.linspace(0, whole - 1, min(grid, whole)).round().astype(int)) * leaf


# ---------------------------------------------------------------------------------------------
# encoding


class Planner:
    """Builds the quadtree bottom up and decides every node (see the module docstring)."""

    def __init__(self, a: np.ndarray, eb: float, dense_bits, policy: Policy):
        self.a, self.eb, self.dense_bits, self.policy = a, eb, dense_bits, policy
        self.tol = policy.tolerance * eb
        self.rng = np.random.default_rng(0)  # fixed: the plan is a function of the input only

    def plan(self) -> Node:
        return self._build(0, 0, *self.a.shape)

    def promising(self, tiles: int = 32) -> bool:
        """Whether any of ``tiles`` leaf tiles spread over the matrix has a low fine rank
        (at most a quarter of the leaf): if none has, no node of the quadtree can be low-rank
        and the (costly) bottom-up pass is skipped. Singular values only: cheap."""
        return any(1 <= rank <= self.policy.leaf // 4 for rank in self._tile_ranks(tiles, aligned=True))

    def tile_ranks(self, tiles: int = 32) -> list[int]:
        """Fine ranks (the bound's share for tiles) of about ``tiles`` finite leaf tiles spread
        evenly over the matrix."""
        return list(self._tile_ranks(tiles))

    def _tile_ranks(self, tiles: int, aligned: bool = False) -> Iterator[int]:
        leaf, (nr, nc) = self.policy.leaf, self.a.shape
        grid = max(1, math.isqrt(tiles))
        starts = _aligned_starts if aligned else _spread_starts
        for r in starts(nr, leaf, grid):
            for c in starts(nc, leaf, grid):
                tile = self.a[r : r + leaf, c : c + leaf]
                if not np.isfinite(tile).all():
                    continue
                s = np.linalg.svd(tile, compute_uv=False)
                tail = np.cumsum((s**2)[::-1])[::-1]
                yield int(np.count_nonzero(tail > (self.policy.fine * self.eb) ** 2 * tile.size))

    def _build(self, r0: int, c0: int, nr: int, nc: int) -> Node:
        node = Node(r0, c0, nr, nc)
        leaf = self.policy.leaf
        if nr <= leaf and nc <= leaf:
            tile = self.a[r0 : r0 + nr, c0 : c0 + nc]
            node.kind, node.cost = ZERO, self.dense_bits(tile)
            if np.isfinite(tile).all():
                u, s, vt = np.linalg.svd(tile, full_matrices=False)
                self._keep_fine(node, u, s, vt.T, 0.0)
        else:
            node.children = [self._build(*rect) for rect in children_of(r0, c0, nr, nc, leaf)]
            node.kind, node.cost = SPLIT, sum(c.cost for c in node.children)
            if all(c.kind == ZERO for c in node.children):
                node.kind = ZERO  # one dense region: a shorter tree, the same stored values
            if all(c.U is not None for c in node.children):
                self._recompress(node)
        if node.U is not None:
            self._try_lowrank(node)
        if node.children and node.kind != SPLIT:
            for c in node.children:  # the decision covers them: drop what they hold
                c.F = c.G = c.x = None
        for c in node.children:
            c.U = c.s = c.V = None
        return node

    def _keep_fine(self, node: Node, u, s, v, err2: float) -> None:
        """Truncate to the fine budget; nodes needing too high a rank keep no factors.

        Every truncation (a leaf's, each merge's) gets the whole fine budget and the errors
        add up in ``err2``: charging merges against what the children already spent left
        them no room, and the merged ranks grew to the sum of the children's."""
        budget = (self.policy.fine * self.eb) ** 2 * node.count
        tail = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]])
        rank = int(np.argmax(tail <= budget))
        if rank > self.policy.max_rank_share * min(node.nr, node.nc) or not np.isfinite(s).all():
            return
        node.U, node.s, node.V, node.err2 = u[:, :rank], s[:rank], v[:, :rank], err2 + float(tail[rank])

    def _recompress(self, node: Node) -> None:
        """QR + SVD recompression of the children's fine factors (HLRcompress's merge)."""
        kids = node.children
        total = sum(c.s.size for c in kids)
        W = np.zeros((node.nr, total))
        Z = np.zeros((node.nc, total))
        k = 0
        for c in kids:
            r = c.s.size
            W[c.r0 - node.r0 : c.r0 - node.r0 + c.nr, k : k + r] = c.U * c.s
            Z[c.c0 - node.c0 : c.c0 - node.c0 + c.nc, k : k + r] = c.V
            k += r
        err2 = sum(c.err2 for c in kids)
        if total == 0:
            self._keep_fine(node, np.zeros((node.nr, 0)), np.zeros(0), np.zeros((node.nc, 0)), err2)
            return
        qw, rw = np.linalg.qr(W)
        qz, rz = np.linalg.qr(Z)
        um, s, vmt = np.linalg.svd(rw @ rz.T)
        self._keep_fine(node, qw @ um, s, qz @ vmt.T, err2)

    def _try_lowrank(self, node: Node) -> None:
        """Cost the candidate ranks; keep the cheapest if it beats the node's current cost."""
        s, count = node.s, node.count
        tail = np.concatenate([np.cumsum((s**2)[::-1])[::-1], [0.0]]) + node.err2
        ranks = set()
        for kappa in self.policy.kappas:
            ok = np.flatnonzero(tail <= (kappa * self.eb) ** 2 * count)
            ranks.add(max(1, int(ok[0])) if ok.size else s.size)
        for rank in sorted(r for r in ranks if 1 <= r <= s.size):  # rank 0 is the dense tile
            # factors cost at least a bit per value, and higher ranks only cost more
            if rank * (node.nr + node.nc) >= node.cost:
                break
            F, G, x = self._factors(node, rank)
            blob = zfp_encode(np.concatenate([F, G]), self.tol)
            bits = 8.0 * (len(blob) + 3 * rank + 2)
            if bits >= node.cost:
                break
            bits += self._residual_bits(node, rank, zfp_decode(blob, F.size + G.size), x)
            if bits < node.cost:
                node.kind, node.cost, node.F, node.G, node.x = LOWRANK, bits, F, G, x

    def _factors(self, node: Node, rank: int):
        U, s, V = node.U[:, :rank], node.s[:rank], node.V[:, :rank]
        # c grows like sqrt(size / leaf): a factor entry's error reaches a product entry
        # weighted by the other factor's entries, which shrink like 1 / sqrt(size)
        c = max(0, round(0.5 * math.log2(min(node.nr, node.nc) / self.policy.leaf)))
        e = np.clip(np.round(np.log2(np.maximum(s, np.finfo(np.float64).tiny))), -900, 900).astype(np.int64)
        F = _columns(np.ldexp(U * s, -c), node.nr)
        G = _columns(np.ldexp(V, e - c), node.nc)
        return F, G, (2 * c - e).astype(np.int64)

    def _residual_bits(self, node: Node, rank: int, factors: np.ndarray, x: np.ndarray) -> float:
        """Entropy of round((data - L) / 2eb) over the node (sampled when large)."""
        pr, pc = padded(node.nr), padded(node.nc)
        F = factors[: rank * pr].reshape(rank, pr)[:, : node.nr]
        G = np.ldexp(factors[rank * pr :].reshape(rank, pc)[:, : node.nc], x[:, None])
        # the residual is coded by the same predictor as dense tiles, so it is costed the same
        # way: on the whole node, or on leaf-sized windows of a large one
        area = self.policy.leaf**2
        if node.count <= self.policy.sample:
            windows = [(0, 0, node.nr, node.nc)]
        else:
            wr = min(node.nr, max(self.policy.leaf, area // node.nc))
            wc = min(node.nc, area // wr)
            n = max(1, self.policy.sample // (wr * wc))
            rows = self.rng.integers(0, node.nr - wr + 1, n)
            cols = self.rng.integers(0, node.nc - wc + 1, n)
            windows = [(int(r), int(c), wr, wc) for r, c in zip(rows, cols, strict=True)]
        bits = 0.0
        for r, c, nr, nc in windows:
            data = self.a[node.r0 + r : node.r0 + r + nr, node.c0 + c : node.c0 + c + nc]
            bits += self.dense_bits(data - F[:, r : r + nr].T @ G[:, c : c + nc])
        return bits * node.count / sum(w[2] * w[3] for w in windows)


def truncated_svd(a: np.ndarray, rank: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(U, s, V) of the leading ``rank`` triplets: LAPACK on small or thin matrices, a
    randomized range finder (10 extra columns, 2 power iterations) on large ones."""
    if min(a.shape) <= max(4 * rank, 256):
        u, s, vt = np.linalg.svd(a, full_matrices=False)
        return u[:, :rank], s[:rank], vt[:rank].T
    q, _ = np.linalg.qr(a @ rng.standard_normal((a.shape[1], rank + 10)))
    for _ in range(2):
        q, _ = np.linalg.qr(a.T @ q)
        q, _ = np.linalg.qr(a @ q)
    u, s, vt = np.linalg.svd(q.T @ a, full_matrices=False)
    return (q @ u)[:, :rank], s[:rank], vt[:rank].T


def global_plans(a: np.ndarray, eb: float, policy: Policy) -> list[Node]:
    """One-block plans: the whole matrix at each of ``policy.global_ranks`` (ascending)."""
    if not np.isfinite(a).all():
        return []
    planner = Planner(a, eb, None, policy)
    top = min(max(policy.global_ranks), min(a.shape) // 2)
    if top < 1:
        return []
    U, s, V = truncated_svd(a, top, planner.rng)
    plans = []
    for rank in policy.global_ranks:
        if rank > top or not s[rank - 1] > 0:
            break
        root = Node(0, 0, *a.shape, kind=LOWRANK, U=U, s=s, V=V)
        root.F, root.G, root.x = planner._factors(root, rank)
        plans.append(root)
    return plans


def collect(root: Node) -> list[Node]:
    """The low-rank nodes in preorder."""
    out, stack = [], [root]
    while stack:
        node = stack.pop()
        if node.kind == LOWRANK:
            out.append(node)
        elif node.kind == SPLIT:
            stack.extend(reversed(node.children))
    return out


def serialize(root: Node, leaf: int) -> tuple[bytes, np.ndarray, np.ndarray, np.ndarray]:
    """(block table, factor values, blocks for the product kernel, exponents)."""
    codes, ranks, exps, blocks = [], [], [], []
    stack, off = [root], 0
    while stack:
        node = stack.pop()
        codes.append(node.kind)
        if node.kind == SPLIT:
            stack.extend(reversed(node.children))
        elif node.kind == LOWRANK:
            rank = node.x.size
            ranks.append(rank)
            exps.append(node.x)
            blocks.append((node.r0, node.c0, node.nr, node.nc, rank, off))
            off += rank * (padded(node.nr) + padded(node.nc))
    nodes = collect(root)
    values = np.concatenate([np.concatenate([n.F, n.G]) for n in nodes]) if nodes else np.zeros(0)
    x = np.concatenate(exps).astype(np.int16) if exps else np.zeros(0, np.int16)
    # the geometry is repeated inside the table (under its CRC): a forged header that changes
    # the shape or the leaf size then cannot walk the tree into a different tiling
    table = (
        _TABLE_HEAD.pack(root.nr, root.nc, leaf, len(codes), x.size)
        + np.array(codes, np.uint8).tobytes()
        + np.array(ranks, np.uint32).tobytes()
        + x.tobytes()
    )
    return table, values, np.array(blocks, np.int64).reshape(-1, 6), x.astype(np.int64)


def table_limit(rows: int, cols: int, leaf: int) -> int:
    """The largest block table a (rows x cols) quadtree can have (a decompression limit)."""
    nodes = 2 * -(-rows // leaf) * -(-cols // leaf) + 64
    columns = math.isqrt(nodes * rows * cols) + 1  # sum of min(nr, nc) over disjoint blocks
    return _TABLE_HEAD.size + 5 * nodes + 2 * columns


def with_crc(body: bytes) -> bytes:
    """Prefix a section with its CRC-32 (checked before zfpy or the tree walk sees it)."""
    return _CRC.pack(zlib.crc32(body)) + body


def without_crc(section, what: str) -> bytes:
    """The body of a :func:`with_crc` section; CorruptStreamError if it does not match."""
    raw = bytes(section)
    if len(raw) < _CRC.size or zlib.crc32(raw[_CRC.size :]) != _CRC.unpack_from(raw, 0)[0]:
        raise CorruptStreamError(f"{what} section is truncated or damaged")
    return raw[_CRC.size :]


# ---------------------------------------------------------------------------------------------
# decoding


def parse_table(table: bytes, shape: tuple[int, int], leaf: int) -> tuple[np.ndarray, np.ndarray]:
    """Walk the serialized quadtree over ``shape``; return (blocks, exponents), every count
    and rank checked so that nothing out of range reaches the product kernel."""
    if len(table) < _TABLE_HEAD.size:
        raise CorruptStreamError("low-rank block table is truncated")
    rows, cols, table_leaf, n_codes, n_cols = _TABLE_HEAD.unpack_from(table, 0)
    if (rows, cols, table_leaf) != (shape[0], shape[1], leaf):
        raise CorruptStreamError("low-rank block table was written for another shape or leaf size")
    body = len(table) - _TABLE_HEAD.size
    if n_codes > body or n_cols > body:
        raise CorruptStreamError("low-rank block table has impossible counts")
    codes = np.frombuffer(table, np.uint8, n_codes, _TABLE_HEAD.size)
    n_ranks = int(np.count_nonzero(codes == LOWRANK))
    if body != n_codes + 4 * n_ranks + 2 * n_cols:
        raise CorruptStreamError("low-rank block table has the wrong length")
    ranks = np.frombuffer(table, np.uint32, n_ranks, _TABLE_HEAD.size + n_codes)
    x = np.frombuffer(table, np.int16, n_cols, _TABLE_HEAD.size + n_codes + 4 * n_ranks).astype(np.int64)
    if int(ranks.sum(dtype=np.int64)) != n_cols or (x.size and int(np.abs(x).max()) > MAX_EXPONENT):
        raise CorruptStreamError("low-rank block table: ranks and exponents disagree")
    if rows * cols > 1 << 60:  # no machine holds it; and the factor offsets stay in int64
        raise OutputLimitError(f"low-rank stream declares a {rows} x {cols} matrix")
    # the walk is linear in the nodes (up to one per 16 values of the declared array in a
    # forged table): it runs on Python ints, with the children's offsets kept per size, and
    # leaves the ranks' checks and the factor offsets to numpy
    codes_list = codes.tolist()
    kids_by_size: dict[tuple[int, int], list[tuple[int, int, int, int]]] = {}
    rects, stack, pos = [], [(0, 0, shape[0], shape[1])], 0
    while stack:
        r0, c0, nr, nc = stack.pop()
        if pos >= n_codes:
            raise CorruptStreamError("low-rank block table ends before the quadtree does")
        code = codes_list[pos]
        pos += 1
        if code == SPLIT:
            kids = kids_by_size.get((nr, nc))
            if kids is None:
                kids = kids_by_size[nr, nc] = children_of(0, 0, nr, nc, leaf)[::-1]
            if len(kids) == 1:
                raise CorruptStreamError("low-rank block table splits a leaf tile")
            stack.extend([(r0 + ro, c0 + co, rn, cn) for ro, co, rn, cn in kids])
        elif code == LOWRANK:
            rects += (r0, c0, nr, nc)  # flat: one array conversion at the end
        elif code != ZERO:
            raise CorruptStreamError(f"unknown low-rank node code {code}")
    if pos != n_codes:
        raise CorruptStreamError("low-rank block table has codes beyond the quadtree")
    blocks = np.empty((n_ranks, 6), np.int64)  # one LOWRANK code per rank, all walked
    blocks[:, :4] = np.array(rects, np.int64).reshape(-1, 4)
    blocks[:, 4] = ranks
    # the encoder keeps no factors of a rank above max_rank_share (3/4) of the block's
    # smaller side, in every version: a forged full rank costs the decoder rank * nr * nc
    wrong = (blocks[:, 4] < 1) | (4 * blocks[:, 4] > 3 * np.minimum(blocks[:, 2], blocks[:, 3]))
    if wrong.any():
        _, _, nr, nc, rank, _ = blocks[int(np.argmax(wrong))]
        raise CorruptStreamError(f"low-rank block of {nr} x {nc} claims rank {rank}")
    sizes = blocks[:, 4] * (padded(blocks[:, 2]) + padded(blocks[:, 3]))
    blocks[:, 5] = np.cumsum(sizes) - sizes
    return blocks, x


def factor_count(blocks: np.ndarray) -> int:
    """Number of stored factor values (padded columns) of the blocks."""
    if not blocks.shape[0]:
        return 0
    last = blocks[-1]
    return int(last[5] + last[4] * (padded(int(last[2])) + padded(int(last[3]))))


def scale_factors(factors: np.ndarray, blocks: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Multiply every G column by its 2**x_k (exact: a power of two), as the encoder did.
    Vectorized over all columns at once: a table may hold a block per 4x4 leaf, and a loop
    per block made a forged 4096^2 stream take seconds here."""
    out = factors.copy()
    if not blocks.shape[0]:
        return out
    ranks = blocks[:, 4]
    pr, pc = padded(blocks[:, 2]), padded(blocks[:, 3])
    block_of = np.repeat(np.arange(blocks.shape[0]), ranks)  # the block of every G column
    k = np.arange(block_of.size) - np.repeat(np.cumsum(ranks) - ranks, ranks)  # column in it
    starts = blocks[block_of, 5] + ranks[block_of] * pr[block_of] + k * pc[block_of]
    idx = _ranges(starts, pc[block_of])
    out[idx] *= np.repeat(np.ldexp(1.0, x), pc[block_of])
    return out


def _ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The indices start..start+length-1 of every (start, length), one range after another."""
    return np.arange(int(lengths.sum())) + np.repeat(starts - (np.cumsum(lengths) - lengths), lengths)


def reconstruct(shape: tuple[int, int], blocks: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """L: the sum of the low-rank blocks (zero outside them), computed deterministically."""
    out = np.zeros(shape, np.float64)
    if blocks.shape[0]:
        # one work item per (block, group of ROW_GROUP rows), made without a loop per block
        # (see scale_factors)
        groups = -(-blocks[:, 2] // ROW_GROUP)
        block_of = np.repeat(np.arange(blocks.shape[0], dtype=np.int64), groups)
        items = np.stack([block_of, ROW_GROUP * _ranges(np.zeros_like(groups), groups)], 1)
        size = ROW_GROUP * int(blocks[:, 3].max())
        run_tasks(_accumulate_products, items.shape[0], out, items, blocks, factors, task_size=size)
    return out
