"""Cluster ordering for `hlr`: rows and columns reordered so that similar ones sit together.

Hierarchical low-rank formats assume the matrix comes in the order of a cluster tree: an
H-matrix code numbers its points so that each quadtree block couples two compact groups of
points, and only then are the off-diagonal blocks low-rank. A kernel matrix handed over in
mesh order (row-major points) has the same blocks scattered, and the quadtree finds little.
When the geometry is not known, the tree can be read off the matrix itself (algebraic
clustering): rows that are alike belong to nearby points. This stage bisects the rows
recursively by balanced 2-means on a sample of their entries, at exactly the points where
the quadtree will split (``lowrank.halves``), so that every quadtree block is
a product of two clusters. Columns are clustered the same way on the transpose.

The orders are found by the encoder only (no arithmetic of it needs to be reproduced) and
stored: two index arrays, or one when rows and columns get the same order (symmetric
matrices). The decoder checks that each is a permutation before it uses it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import CorruptStreamError
from ...stage import Stage
from ..coders.zstd import ZstdLossless
from ..decompositions.lowrank import halves

SAMPLE_COLUMNS = 64  # entries per row that describe it (evenly spaced columns)
SPLIT_STEPS = 6  # 2-means refinements of a segment's split


@dataclass
class ClusterOrder(Stage):
    """Stage: the matrix was coded with its rows and columns permuted (``shared``: one
    permutation serves both)."""

    name = "cluster-order"

    shared: bool

    def __post_init__(self):
        if not isinstance(self.shared, (bool, np.bool_)):
            raise ValueError(f"shared flag {self.shared!r}")
        self.shared = bool(self.shared)


def cluster_permutation(a: np.ndarray, leaf: int) -> np.ndarray:
    """Order of a's rows (a 2-D float array): recursive balanced 2-means bisection of each
    row's sampled entries, segments split where the quadtree splits them."""
    n, m = a.shape
    # a fixed pseudo-random sample: evenly spaced columns can all lie on one line of the
    # underlying mesh (every 65th point of a 64 x 64 grid is its diagonal), and points
    # mirrored across that line would look the same
    cols = np.sort(np.random.default_rng(0).choice(m, min(m, SAMPLE_COLUMNS), replace=False))
    features = np.nan_to_num(a[:, cols].astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    order = np.arange(n, dtype=np.int64)
    pending = [(0, n)]
    while pending:
        start, length = pending.pop()
        parts = halves(length, leaf)
        if len(parts) == 1:
            continue
        segment = order[start : start + length]
        x = features[segment]
        x = x - x.mean(axis=0)
        projection = x @ _split_direction(x)
        order[start : start + length] = segment[np.argsort(projection, kind="stable")]
        pending.extend((start + offset, size) for offset, size in parts)
    return order


def _split_direction(x: np.ndarray) -> np.ndarray:
    """A direction that separates x's rows into two compact groups: balanced 2-means, from
    the row farthest from the mean and the row farthest from that one. (The principal
    direction is not enough: for a kernel matrix it is the distance from the centre, and
    splitting on it gives rings, not compact clusters.)"""
    far = x[int(np.argmax((x * x).sum(axis=1)))]
    other = x[int(np.argmax(((x - far) ** 2).sum(axis=1)))]
    direction = far - other
    for _ in range(SPLIT_STEPS):
        projection = x @ direction
        side = projection > np.median(projection)
        if side.all() or not side.any():
            break
        direction = x[side].mean(axis=0) - x[~side].mean(axis=0)
    return direction


def encode_orders(rows: np.ndarray, cols: np.ndarray, lossless: ZstdLossless) -> tuple[ClusterOrder, bytes]:
    shared = rows.shape == cols.shape and bool(np.array_equal(rows, cols))
    arrays = [rows] if shared else [rows, cols]
    # each array: one byte with its index width, then the indices (little-endian)
    body = b"".join(bytes((_index_dtype(a.size).itemsize,)) + a.astype(_index_dtype(a.size)).tobytes() for a in arrays)
    return ClusterOrder(shared), lossless.compress(body)


def decode_orders(
    stage: ClusterOrder, section, shape: tuple[int, int], lossless: ZstdLossless
) -> tuple[np.ndarray, np.ndarray]:
    nr, nc = shape
    if stage.shared and nr != nc:
        raise CorruptStreamError("a shared cluster order needs a square matrix")
    sizes = [nr] if stage.shared else [nr, nc]
    limit = sum(1 + n * _index_dtype(n).itemsize for n in sizes)
    body = memoryview(lossless.decompress(section, limit))
    if len(body) != limit:
        raise CorruptStreamError("cluster-order section has the wrong length")
    orders, pos = [], 0
    for n in sizes:
        dtype = _index_dtype(n)
        if body[pos] != dtype.itemsize:
            raise CorruptStreamError("cluster-order section has an unknown index type")
        order = np.frombuffer(body[pos + 1 : pos + 1 + n * dtype.itemsize], dtype).astype(np.int64)
        pos += 1 + n * dtype.itemsize
        if order.size != n or (
            n and (order.min() < 0 or order.max() >= n or np.count_nonzero(np.bincount(order, minlength=n) != 1))
        ):
            raise CorruptStreamError("cluster order is not a permutation")
        orders.append(order)
    return orders[0], orders[-1]


def _index_dtype(n: int) -> np.dtype:
    return np.dtype("<u2") if n <= 1 << 16 else np.dtype("<u4")
