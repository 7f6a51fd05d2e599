"""The `hlr` codec's search for the cheapest plan (none of it is needed to decode).

For every matricization of the array: the quadtree plan, one-block plans of increasing rank
and the dense plan (plain `sz`), each costed on its real residual (or on `sz`'s samples for
large arrays); in a matrix's own order also its 4-D tensor views; and for a 2-D matrix the
same again in cluster order. The winner is what the codec assembles.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...stages.coders.zstd import ZstdLossless
from ...stages.decompositions import lowrank as lr
from ...stages.predictors.interpolation import InterpolationPredictor
from ...stages.predictors.lorenzo import LorenzoPredictor
from ...stages.transforms import cluster_order, tensor_view
from ..sz import choose_predictor, encode_stages, estimated_bytes

# Below these the quadtree has too few tiles to pay for its planning: plain `sz` (it also
# keeps the hypothesis/adversarial suites, all small arrays, fast).
MIN_SIDE = 32
MIN_POINTS = 1 << 14
# Up to this many values every plan's residual is really coded (the sizes compared are the
# true ones); beyond, it is estimated on `sz`'s samples and only the winner is coded.
EXACT_POINTS = 1 << 22
# Low rank needs the data's magnitude and the bound inside a comfortable float64 range (the
# factor scaling, SVD and zfp's tolerance); outside it the dense path is exact anyway.
MAX_MAGNITUDE = 1e100
MIN_BOUND = 1e-200
MIN_RELATIVE_BOUND = 1e-12
# the `sz` sections under hlr's names, so that an `hlr` stream never passes for an `sz` one
SECTIONS = {"codes": "dense-codes", "unpredictable": "dense-unpredictable"}
# a tensor view is coded for real only when its estimate is below this share of the 2-D one
VIEW_GAIN = 0.8


class Search:
    """The plans tried for one array, with the encoder's choices in ``policy``."""

    def __init__(self, policy: lr.Policy):
        self.policy = policy

    def try_cluster_order(self, data: np.ndarray, eb: float, best: Trial):
        """The quadtree again on the matrix with rows and columns in cluster order (see
        errbound.stages.cluster_order); kept when it beats the natural order by more than
        the orders cost to store. Returns (best, the data as coded, (stage, section) or None)."""
        leaf = self.policy.leaf
        if data.ndim != 2 or min(data.shape) < 4 * leaf:
            return best, data, None
        rows = cluster_order.cluster_permutation(data, leaf)
        cols = cluster_order.cluster_permutation(data.T, leaf)
        if np.array_equal(rows, np.arange(rows.size)) and np.array_equal(cols, np.arange(cols.size)):
            return best, data, None
        permuted = np.ascontiguousarray(data[np.ix_(rows, cols)])
        # the second search is as dear as the first: run it only where the reordering turns
        # most sampled leaf tiles low-rank, and lowers their typical rank
        permuted_ranks = lr.Planner(permuted.astype(np.float64), eb, None, self.policy).tile_ranks()
        natural_ranks = lr.Planner(data.astype(np.float64), eb, None, self.policy).tile_ranks()
        if not (
            permuted_ranks
            and natural_ranks
            and np.median(permuted_ranks) <= leaf // 4
            and np.median(permuted_ranks) < np.median(natural_ranks)
        ):
            return best, data, None
        trial = self.search(permuted, eb, natural_order=False)
        stage, blob = cluster_order.encode_orders(rows, cols, ZstdLossless())
        if trial.low is None or trial.cost + len(blob) >= best.cost:
            return best, data, None
        return trial, permuted, (stage, blob)

    @staticmethod
    def eligible(data: np.ndarray, eb: float) -> bool:
        # squares of the bound appear in the plans' error sums: keep them inside float64 too
        if data.size < MIN_POINTS or sum(n > 1 for n in data.shape) < 2 or not MIN_BOUND <= eb <= MAX_MAGNITUDE:
            return False
        finite = data[np.isfinite(data)]
        top = float(np.abs(finite).max()) if finite.size else 0.0
        return 0.0 < top <= MAX_MAGNITUDE and eb >= top * MIN_RELATIVE_BOUND

    def search(self, data: np.ndarray, eb: float, natural_order: bool = True) -> Trial:
        """The cheapest of: dense, and per matricization the quadtree plan and one-block plans
        of increasing rank, each measured on its real residual (sz-coded when the array is
        small enough, else estimated on `sz`'s own samples); in the natural order also the 4-D
        tensor views. ``natural_order=False`` (a matrix in cluster order) skips the one-block
        plans, whose ranks a permutation does not change, and the views, which only a mesh's
        own order has."""
        exact = data.size <= EXACT_POINTS
        best = self.dense_trial(data, eb, exact)
        seen = set()
        for split in range(1, data.ndim):
            rows, cols = math.prod(data.shape[:split]), math.prod(data.shape[split:])
            if min(rows, cols) < 2 or (rows, cols) in seen:
                continue
            seen.add((rows, cols))
            matrix = data.reshape(rows, cols).astype(np.float64)
            planner = lr.Planner(matrix, eb, _dense_bits_for(data.reshape(rows, cols), eb), self.policy)
            if min(rows, cols) >= MIN_SIDE and planner.promising():
                root = planner.plan()
                if lr.collect(root):
                    best = min(best, self._trial(data, matrix, eb, split, root, exact), key=_cost)
            worse = 0
            for root in lr.global_plans(matrix, eb, self.policy) if natural_order else ():
                trial = self._trial(data, matrix, eb, split, root, exact, limit=best.cost)
                worse = worse + 1 if trial.cost >= best.cost else 0
                best = min(best, trial, key=_cost)
                if worse == 2 or len(trial.blob) >= best.cost:  # ranks only get dearer from here
                    break
        if natural_order and data.ndim == 2:
            trial = self._tensor_view_trial(data, eb)
            if trial is not None and trial.cost < best.cost:
                best = trial
        if not exact and best.low is not None:
            # estimates misjudged kernel matrices by up to 1.5x (measured): code the winner
            # and the dense plan for real and keep the smaller
            best.coded = _sz_encode(residual(data, best.low, best.split), eb)
            best.cost = len(best.blob) + len(best.table) + sum(len(b) for _, b in best.coded[1])
            best = min(self.dense_trial(data, eb, True), best, key=_cost)
        return best

    def _tensor_view_trial(self, data: np.ndarray, eb: float) -> Trial | None:
        """The dense plan on the best 4-D view of the matrix (errbound.stages.tensor_view),
        coded for real when `sz`'s estimate puts it well below the 2-D view's."""
        views = tensor_view.candidate_views(data.shape)
        if not views:
            return None
        estimates = {view: estimated_bytes(data.reshape(view), eb) for view in views}
        view = min(views, key=estimates.__getitem__)
        if estimates[view] >= VIEW_GAIN * estimated_bytes(data, eb):
            return None
        coded = _sz_encode(data.reshape(view), eb)
        return Trial(sum(len(b) for _, b in coded[1]), coded=coded, view=view)

    def dense_trial(self, data: np.ndarray, eb: float, exact: bool) -> Trial:
        if exact:
            coded = _sz_encode(data, eb)
            return Trial(sum(len(b) for _, b in coded[1]), coded=coded)
        return Trial(estimated_bytes(data, eb))

    def _trial(self, data, matrix, eb, split, root, exact, limit=math.inf) -> Trial:
        """Cost of a plan: its factors and table, plus its residual through the `sz` stages."""
        table, values, blocks, x = lr.serialize(root, self.policy.leaf)
        blob = lr.with_crc(lr.zfp_encode(values, self.policy.tolerance * eb))
        table = lr.with_crc(ZstdLossless().compress(table))
        trial = Trial(len(blob) + len(table), split, None, table, blob, blocks.shape[0])
        if trial.cost >= limit:
            return trial
        # the decoder's L: from the decoded factors, by the decoder's own kernels
        factors = lr.scale_factors(lr.zfp_decode(blob[4:], values.size), blocks, x)
        trial.low = lr.reconstruct(matrix.shape, blocks, factors)
        resid = residual(data, trial.low, split, matrix)
        if exact:
            trial.coded = _sz_encode(resid, eb)
            trial.cost += sum(len(b) for _, b in trial.coded[1])
        else:
            trial.cost += estimated_bytes(resid, eb)
        return trial


@dataclass
class Trial:
    """A candidate plan and its measured (or estimated) size in bytes."""

    cost: float
    split: int = 0
    low: np.ndarray | None = None  # L on the matrix view; None: the dense plan
    table: bytes = b""
    blob: bytes = b""
    blocks: int = 0
    coded: tuple | None = None  # the `sz` stages' output on the residual, when already run
    view: tuple | None = None  # the dense plan's tensor view (tensor_view), if any


def _cost(trial: Trial) -> float:
    return trial.cost


def residual(data: np.ndarray, low: np.ndarray, split: int, matrix: np.ndarray | None = None) -> np.ndarray:
    """``x - L`` in the array's own dtype (the lowrank stage's ``residual``): the difference
    is formed in float64 (``matrix``: the array's float64 matrix view, if at hand) and
    rounded once; where L is zero it is the value itself. A difference beyond float32's
    range becomes +-inf: the `sz` stages store it as an unpredictable value and the
    corrections pass restores the point exactly, so the bound holds."""
    if matrix is None:
        matrix = data.reshape(math.prod(data.shape[:split]), -1).astype(np.float64)
    with np.errstate(over="ignore"):
        return (matrix - low).reshape(data.shape).astype(data.dtype, copy=False)


def _sz_encode(data: np.ndarray, eb: float):
    """The `sz` stages on ``data``, under hlr's section names; with the decoder's reconstruction."""
    return encode_stages(data, eb, names=SECTIONS)


def _dense_bits_for(matrix: np.ndarray, eb: float):
    """A tile's cost if stored densely: the entropy of its `sz` codes, with the predictor that
    `sz` picks for the whole matrix (its choice decides how dense regions and residuals are
    coded, so costing tiles with another predictor misjudged them by up to 2x, measured).
    ``matrix`` is the array's matrix view in its own dtype, the one its residual is coded in."""
    chosen = []  # decided on first use: plans that are never costed skip the sampling

    def dense_bits(tile: np.ndarray) -> float:
        if not chosen:
            chosen.append(choose_predictor(matrix, eb))
        template = chosen[0]
        if isinstance(template, LorenzoPredictor):
            predictor = LorenzoPredictor()
        else:
            order = template.order if min(tile.shape) > 1 else None
            predictor = InterpolationPredictor(template.cubic, order, template.alpha, template.beta, anchor=0)
        with np.errstate(over="ignore"):  # beyond float32: unpredictable, as in residual()
            tile = np.ascontiguousarray(tile, matrix.dtype)
        codes, unpred, _ = predictor.encode(tile, eb)
        counts = np.bincount(codes - codes.min()) if codes.size else np.zeros(1)
        p = counts[counts > 0] / max(codes.size, 1)
        return float(-(p * np.log2(p)).sum()) * codes.size + 64.0 * unpred.size

    return dense_bits


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the encoder's many small SVDs and QRs on one OpenBLAS thread.

    Measured on the CCSM stack: with 2 BLAS threads the encoder took 5x the CPU time of one
    thread (threads spin on tiny matrices), 50x under load; one thread also makes the plan
    independent of the BLAS thread setting. Best effort: numpy's OpenBLAS is found among
    the loaded libraries (Linux); elsewhere nothing changes.
    """
    setter, getter = _openblas_thread_functions()
    before = getter() if getter is not None else None
    if setter is not None:
        setter(1)
    try:
        yield
    finally:
        if setter is not None and before is not None:
            setter(before)


@functools.cache
def _openblas_thread_functions() -> tuple:
    """(set, get) of the number of OpenBLAS threads, or (None, None); found once a process
    (reading /proc/self/maps and opening the libraries took 1 ms, on every hlr compress)."""
    setter = getter = None
    for lib in _openblas_libraries():
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                s = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                g = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                if s is not None and g is not None:
                    setter, getter = s, g
                    break
    return setter, getter


def _openblas_libraries() -> list[ctypes.CDLL]:
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted(
                {line.split()[-1] for line in maps if "openblas" in line.lower() and line.split()[-1].startswith("/")}
            )
        return [ctypes.CDLL(p) for p in paths]
    except OSError:
        return []
