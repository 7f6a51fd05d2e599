"""CDF 9/7 wavelet transform by lifting: multi-level, separable in 1-4 D, any length.

The same wavelet as pywavelets' ``bior4.4`` (tests compare the two), computed in place on a
C-contiguous 4-D float64 array (fewer dimensions are padded with leading length-1 axes).
Each axis gets a level count from its length (as SPERR: one level per halving down to 8
values, at most 6); a level splits an axis into its low-pass (first ceil(n/2) entries) and
high-pass halves, so the coarse band always sits at the origin: the layout the SPECK stage's
set partitioning follows. Axes can be grouped (see SPLIT_*): levels nest inside a group and
form a tensor product across groups. Boundaries use whole-sample symmetric extension, which
keeps the lifting exactly invertible (up to float64 rounding) for odd lengths too.

Lines along the slow axes are lifted as blocks of contiguous rows, so the inner loops run
over memory in order and vectorise. Encoder and decoder run the same compiled inverse, so
the reconstruction the outlier stage checks is bit for bit the one the decoder produces.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ...jit import kernel
from ...stage import Stage

ALPHA = -1.586134342059924
BETA = -0.052980118572961
GAMMA = 0.882911075530934
DELTA = 0.443506852043971
# the four lifting steps in forward order; even steps predict, odd steps update
LIFTING = (ALPHA, BETA, GAMMA, DELTA)
# low band * K and high band / K: the low-pass filter then has DC gain sqrt(2) like bior4.4,
# and the transform is close to orthonormal, so one quantization step suits every subband
K = 1.149604398650036
INV_K = 1.0 / K
MIN_LENGTH = 8
MAX_LEVELS = 6
# below this many values per call the thread pool costs more than it saves
PARALLEL_MIN = 1 << 15

Pmap = Callable[[Callable, Sequence], list]


def serial_map(fn: Callable, items: Sequence) -> list:
    return [fn(item) for item in items]


def level_count(n: int, max_levels: int = MAX_LEVELS) -> int:
    """Levels for an axis of length n: one per halving while the band keeps >= 8 values,
    capped (six levels already leave a coarse band of n/64; more gain next to nothing)."""
    if n < MIN_LENGTH:
        return 0
    return min(max_levels, int(math.floor(math.log2(n / MIN_LENGTH))) + 1)


def level_counts(shape: Sequence[int], max_levels: int = MAX_LEVELS) -> np.ndarray:
    return np.array([level_count(int(n), max_levels) for n in shape], np.int64)


def approx_shape(shape: Sequence[int], levels: Sequence[int], depth: int) -> tuple[int, ...]:
    """Extent of the coarse (low-pass) box after ``depth`` levels."""
    out = []
    for n, lv in zip(shape, levels, strict=True):
        for _ in range(min(depth, int(lv))):
            n = n - n // 2
        out.append(int(n))
    return tuple(out)


# How the axes are grouped: inside a group the levels nest (Mallat: only the coarse box is
# transformed again), across groups they are a tensor product (each group transforms its axes
# over the full extent of the others). SPERR keeps z apart when its level count differs.
SPLIT_NONE, SPLIT_SLOWEST, SPLIT_ALL = 0, 1, 2


def axis_groups(dims: Sequence[int], split: int) -> np.ndarray:
    """Group id per axis: all in one group, the slowest axis longer than 1 apart, or each apart."""
    if split == SPLIT_ALL:
        return np.arange(4, dtype=np.int64)
    groups = np.zeros(4, np.int64)
    if split == SPLIT_SLOWEST:
        live = [a for a in range(4) if dims[a] > 1]
        if live:
            groups[live[0]] = 1
    return groups


def splits_for(dims: Sequence[int], levels: Sequence[int]) -> tuple[int, ...]:
    """The groupings worth trying. In 2-D, and in 3-D and 4-D when every axis gets the same
    number of levels, the nested one won on every shared field (SPERR's rule too)."""
    live = [int(lv) for n, lv in zip(dims, levels, strict=True) if int(n) > 1]
    if len(live) >= 3 and len(set(live)) > 1:
        return (SPLIT_NONE, SPLIT_SLOWEST, SPLIT_ALL)
    return (SPLIT_NONE,)


@dataclass
class CDF97(Stage):
    """Stage: the CDF 9/7 lifting transform; its level rule (``max_levels``) travels in the stream."""

    name = "cdf97"

    max_levels: int = MAX_LEVELS

    def __post_init__(self):
        value = self.max_levels
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or not 0 <= value <= 20:
            raise ValueError(f"max_levels {value!r}")
        self.max_levels = int(value)

    def levels(self, shape: Sequence[int]) -> np.ndarray:
        return level_counts(shape, self.max_levels)


# --------------------------------------------------------------------------- lifting kernels
#
# A line of n samples is split into its even samples S (ne = ceil(n/2), the low band) and odd
# samples D (no = n // 2, the high band) and lifted between the two halves, which keeps every
# inner loop contiguous so it vectorises. Whole-sample symmetric extension: x[-1] = x[1] and
# x[n] = x[n-2], i.e. D[-1] = D[0], S[ne] = S[ne-1] (n even) and D[no] = D[no-1] (n odd).
# The order of the four steps and of each sum is fixed, so any build gives the same numbers.


@kernel(inline="always")
def _predict(s, d, ne, no, c):
    """d[i] += c (s[i] + s[i+1]) over one line (separate arrays, unsigned indices: no
    negative-index fix-ups in the loop, so it vectorises)."""
    m = np.uint64(min(no, ne - 1))
    for i in range(m):
        d[i] += c * (s[i] + s[i + np.uint64(1)])
    if no == ne and no > 0:
        d[no - 1] += c * (s[ne - 1] + s[ne - 1])


@kernel(inline="always")
def _update(s, d, ne, no, c):
    """s[i] += c (d[i-1] + d[i]) over one line."""
    if no == 0:
        return
    s[0] += c * (d[0] + d[0])
    m = np.uint64(min(ne, no))
    for i in range(np.uint64(1), m):
        s[i] += c * (d[i - np.uint64(1)] + d[i])
    if ne > no:
        s[ne - 1] += c * (d[no - 1] + d[no - 1])


# The lifting steps run from one loop, so each step function has one call site and is
# inlined there: a separately compiled function costs ~0.1 s on a cold start, more than
# typing its body once more. Forward: predict ALPHA, update BETA, predict GAMMA, update
# DELTA; inverse: the same steps backwards with negated coefficients.


@kernel(inline="always")
def _lifting_step(k, inverse):
    """The k-th lifting step to run: (which of the four, its coefficient)."""
    step = 3 - k if inverse else k
    return step, (-LIFTING[step] if inverse else LIFTING[step])


@kernel(internal=True)
def _lift_line(s, d, ne, no, inverse):
    for k in range(4):
        step, c = _lifting_step(k, inverse)
        if step % 2 == 0:
            _predict(s, d, ne, no, c)
        else:
            _update(s, d, ne, no, c)


@kernel(inline="always")
def _predict_rows(t, ne, no, w, c):
    """The same on rows of width w: t holds the ne rows of S, then the no rows of D. Row
    slices let the inner loops vectorise (their cost is spread over a whole row)."""
    for i in range(no):
        j = i + 1 if i + 1 < ne else ne - 1
        x = t[(ne + i) * w : (ne + i + 1) * w]
        a = t[i * w : (i + 1) * w]
        b = t[j * w : (j + 1) * w]
        for k in range(w):
            x[k] += c * (a[k] + b[k])


@kernel(inline="always")
def _update_rows(t, ne, no, w, c):
    if no == 0:
        return
    for i in range(ne):
        h = i - 1 if i > 0 else 0
        j = i if i < no else no - 1
        x = t[i * w : (i + 1) * w]
        a = t[(ne + h) * w : (ne + h + 1) * w]
        b = t[(ne + j) * w : (ne + j + 1) * w]
        for k in range(w):
            x[k] += c * (a[k] + b[k])


@kernel(internal=True)
def _lift_rows(t, ne, no, w, inverse):
    for k in range(4):
        step, c = _lifting_step(k, inverse)
        if step % 2 == 0:
            _predict_rows(t, ne, no, w, c)
        else:
            _update_rows(t, ne, no, w, c)


@kernel
def _axis_last(flat, n1, n2, n3, m1, m2, m3, lo, hi, inverse):
    """Transform along the contiguous axis, for lines lo..hi of the box's m0 x m1 x m2 grid.
    ``flat`` is the whole C-ordered array with extents (., n1, n2, n3)."""
    ne = m3 - m3 // 2
    no = m3 // 2
    s = np.empty(ne)
    d = np.empty(max(no, 1))
    for o in range(lo, hi):
        i0 = o // (m1 * m2)
        i1 = (o // m2) % m1
        i2 = o % m2
        base = np.uint64(((i0 * n1 + i1) * n2 + i2) * n3)
        if inverse:
            for j in range(np.uint64(ne)):
                s[j] = flat[base + j] * INV_K
            for j in range(np.uint64(no)):
                d[j] = flat[base + np.uint64(ne) + j] * K
            _lift_line(s, d, ne, no, inverse)  # the flag, not a literal: one specialisation
            for j in range(np.uint64(ne)):
                flat[base + np.uint64(2) * j] = s[j]
            for j in range(np.uint64(no)):
                flat[base + np.uint64(2) * j + np.uint64(1)] = d[j]
        else:
            for j in range(np.uint64(ne)):
                s[j] = flat[base + np.uint64(2) * j]
            for j in range(np.uint64(no)):
                d[j] = flat[base + np.uint64(2) * j + np.uint64(1)]
            _lift_line(s, d, ne, no, inverse)
            for j in range(np.uint64(ne)):
                flat[base + j] = s[j] * K
            for j in range(np.uint64(no)):
                flat[base + np.uint64(ne) + j] = d[j] * INV_K


@kernel
def _axis_slow(flat, axis, n1, n2, n3, m0, m1, m2, m3, lo, hi, inverse):
    """Transform along axis 0, 1 or 2: each slab (the samples along the axis x m3 contiguous
    columns) is split into its even and odd rows in a scratch block and lifted row-wise,
    for slabs lo..hi of the other two axes."""
    strides = (n1 * n2 * n3, n2 * n3, n3)
    m = (m0, m1, m2)
    n = m[axis]
    step = strides[axis]
    a1 = 1 if axis == 0 else 0  # the two other slow axes, slowest first
    a2 = 1 if axis == 2 else 2
    ne = n - n // 2
    no = n // 2
    t = np.empty(n * m3)
    w = np.uint64(m3)
    for o in range(lo, hi):
        base = (o // m[a2]) * strides[a1] + (o % m[a2]) * strides[a2]
        for j in range(n):
            # row j of the data <-> row r of the scratch block (S rows first, then D rows)
            r = j // 2 if j % 2 == 0 else ne + j // 2
            if inverse:
                r = j
                row = np.uint64(base + (2 * j if j < ne else 2 * (j - ne) + 1) * step)
                scale = INV_K if j < ne else K
                dst = np.uint64(r) * w
                for k in range(w):
                    t[dst + k] = flat[np.uint64(base + j * step) + k] * scale
            else:
                row = np.uint64(base + j * step)
                dst = np.uint64(r) * w
                for k in range(w):
                    t[dst + k] = flat[row + k]
        _lift_rows(t, ne, no, m3, inverse)
        for r in range(n):
            src = np.uint64(r) * w
            if inverse:
                j = 2 * r if r < ne else 2 * (r - ne) + 1
                row = np.uint64(base + j * step)
                for k in range(w):
                    flat[row + k] = t[src + k]
            else:
                row = np.uint64(base + r * step)
                scale = K if r < ne else INV_K
                for k in range(w):
                    flat[row + k] = t[src + k] * scale


def _transform_axis(buf: np.ndarray, axis: int, box: tuple[int, ...], inverse: bool, pmap: Pmap, threads: int) -> None:
    m0, m1, m2, m3 = box
    if axis == 3:
        count = m0 * m1 * m2
    else:
        m = (m0, m1, m2)
        count = math.prod(m) // m[axis]
    parts = 1 if threads <= 1 or count * box[axis] * (m3 if axis != 3 else 1) < PARALLEL_MIN else min(threads, count)
    flat = buf.reshape(-1)
    _, n1, n2, n3 = buf.shape
    if parts == 1:  # small boxes (every one of a small chunk): no closures, no hand-off
        if axis == 3:
            _axis_last(flat, n1, n2, n3, m1, m2, m3, 0, count, inverse)
        else:
            _axis_slow(flat, axis, n1, n2, n3, m0, m1, m2, m3, 0, count, inverse)
        return
    bounds = [count * i // parts for i in range(parts + 1)]
    if axis == 3:
        tasks = [
            (lambda lo, hi: lambda _: _axis_last(flat, n1, n2, n3, m1, m2, m3, lo, hi, inverse))(
                bounds[i], bounds[i + 1]
            )
            for i in range(parts)
        ]
    else:
        tasks = [
            (lambda lo, hi: lambda _: _axis_slow(flat, axis, n1, n2, n3, m0, m1, m2, m3, lo, hi, inverse))(
                bounds[i], bounds[i + 1]
            )
            for i in range(parts)
        ]
    pmap(lambda task: task(None), tasks)


def _plan(shape: Sequence[int], levels: Sequence[int], groups: Sequence[int]) -> list[tuple[int, tuple[int, ...]]]:
    """(axis, box) transform steps: Mallat (coarse box only) inside a group of axes, tensor
    product across groups (a group's steps cover the full extent of the other groups' axes)."""
    return _cached_plan(tuple(int(n) for n in shape), tuple(int(v) for v in levels), tuple(int(g) for g in groups))


@functools.lru_cache(maxsize=256)
def _cached_plan(shape: tuple[int, ...], levels: tuple[int, ...], groups: tuple[int, ...]):
    steps = []
    for g in sorted(set(groups)):
        members = [a for a in range(4) if groups[a] == g]
        for depth in range(max((int(levels[a]) for a in members), default=0)):
            box = tuple(
                approx_shape([shape[a]], [levels[a]], depth)[0] if groups[a] == g else shape[a] for a in range(4)
            )
            for axis in (3, 2, 1, 0):
                if groups[axis] == g and levels[axis] > depth:
                    steps.append((axis, box))
    return steps


def forward(
    buf: np.ndarray,
    levels: Sequence[int],
    groups: Sequence[int] = (0, 0, 0, 0),
    pmap: Pmap = serial_map,
    threads: int = 1,
) -> None:
    """In-place multi-level forward transform of a C-contiguous 4-D float64 array."""
    for axis, box in _plan(buf.shape, levels, groups):
        _transform_axis(buf, axis, box, False, pmap, threads)


def inverse(
    buf: np.ndarray,
    levels: Sequence[int],
    groups: Sequence[int] = (0, 0, 0, 0),
    pmap: Pmap = serial_map,
    threads: int = 1,
) -> None:
    """In-place inverse of :func:`forward` (exact up to float64 rounding)."""
    for axis, box in reversed(_plan(buf.shape, levels, groups)):
        _transform_axis(buf, axis, box, True, pmap, threads)
