"""Multilevel interpolation predictor with linear quantization (SZ3's interpolation decomposition).

The array is viewed as 4-D (leading axes of length 1 are free), so one kernel serves 1-4 D.
Points are visited coarse to fine: at level ``L`` (stride ``s = 2**(L-1)``) every axis in the
chosen order is swept once, predicting the points at odd multiples of ``s`` along it from
already-reconstructed neighbours at ``+-s`` and ``+-3s`` (linear or cubic, with quadratic and
extrapolating stencils at the edges). Each prediction is quantized with the level's bound,
reconstructed in the output dtype and checked against the user's bound; points that fail
(and NaN, +-Inf, -0.0) become exact "unpredictable" values.

Encoder and decoder run the same traversal and the same float64 arithmetic (no fastmath, no
fused multiply-add), so the decoder reproduces the encoder's reconstruction bit for bit.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ...errors import CorruptStreamError
from ...jit import kernel
from ...layout import as_4d_shape, kernel_array
from ...scratch import scratch
from ...stage import Stage

# Anchor grid spacing by effective dimensionality (SZ3's defaults): anchors are stored exactly
# and cap the coarsest level, which keeps long-range predictions from drifting.
DEFAULT_ANCHOR_STRIDE = {1: 4096, 2: 128, 3: 32, 4: 16}


# The point kernels index with np.uint64: numba tests every signed index for a negative
# value (Python's wrap-around) and an unsigned one not. Every index here is a point of the
# array by construction (the traversal's, and counters the caller sized), so the test only
# cost time: without it the decoder runs 1.6x and the encoder 1.4x faster (measured).
@kernel(inline="always")
def _predict(w, idx, off, k, n, cubic):
    if cubic:
        if k >= 3 and k + 3 < n:
            a = np.float64(w[np.uint64(idx - 3 * off)])
            b = np.float64(w[np.uint64(idx - off)])
            c = np.float64(w[np.uint64(idx + off)])
            d = np.float64(w[np.uint64(idx + 3 * off)])
            return (9.0 * (b + c) - (a + d)) * 0.0625
        if k + 1 < n:
            if k >= 3:
                a = np.float64(w[np.uint64(idx - 3 * off)])
                b = np.float64(w[np.uint64(idx - off)])
                c = np.float64(w[np.uint64(idx + off)])
                return (6.0 * b + 3.0 * c - a) * 0.125
            if k + 3 < n:
                a = np.float64(w[np.uint64(idx - off)])
                b = np.float64(w[np.uint64(idx + off)])
                c = np.float64(w[np.uint64(idx + 3 * off)])
                return (3.0 * a + 6.0 * b - c) * 0.125
            return (np.float64(w[np.uint64(idx - off)]) + np.float64(w[np.uint64(idx + off)])) * 0.5
        if k >= 5:
            a = np.float64(w[np.uint64(idx - 5 * off)])
            b = np.float64(w[np.uint64(idx - 3 * off)])
            c = np.float64(w[np.uint64(idx - off)])
            return (3.0 * a + 15.0 * c - 10.0 * b) * 0.125
    elif k + 1 < n:
        return (np.float64(w[np.uint64(idx - off)]) + np.float64(w[np.uint64(idx + off)])) * 0.5
    if k >= 3:
        return (3.0 * np.float64(w[np.uint64(idx - off)]) - np.float64(w[np.uint64(idx - 3 * off)])) * 0.5
    return np.float64(w[np.uint64(idx - off)])


@kernel(inline="always")
def _decode_point(w, idx, pred, step, inv_step, eb, radius, codes, nc, unpred, nu):
    c = codes[np.uint64(nc)]
    if c == 0:
        w[np.uint64(idx)] = unpred[np.uint64(nu)]
        return nu + 1
    w[np.uint64(idx)] = pred + (c - radius) * step
    return nu


@kernel(internal=True)
def _encode_point(w, idx, pred, step, inv_step, eb, radius, codes, nc, unpred, nu):
    """Quantize w[idx] against pred; on return w[idx] holds the reconstruction. A NaN or
    infinite prediction fails the range test and stores the point exactly.

    Written without branches: selects, and an unconditional write of the value to the next
    unpredictable slot that only counts when the point is rejected (unpred has room for
    every point). Measured 2.3x faster than the same logic with ifs, which kept LLVM from
    scheduling the loop well even though the branches were predictable."""
    x = w[np.uint64(idx)]
    xf = np.float64(x)
    qf = (xf - pred) * inv_step
    in_range = abs(qf) < radius - 1  # False for NaN/Inf too
    # + 0.0: a q of -0.0 (qf in (-0.5, 0)) would make pred + q * step keep a -0.0 prediction,
    # where the decoder, multiplying the integer code, gets +0.0
    q = (np.rint(qf) + 0.0) if in_range else 0.0  # any q that passes the check below is valid
    w[np.uint64(idx)] = pred + q * step
    r = np.float64(w[np.uint64(idx)])  # the reconstruction in the output dtype
    # -0.0 is stored exactly: no prediction reproduces its sign reliably (np.signbit: the
    # same test as copysign(1, x) < 0, 5 % faster here)
    ok = in_range and abs(r - xf) <= eb and not (xf == 0.0 and np.signbit(xf))
    w[np.uint64(idx)] = r if ok else xf
    codes[np.uint64(nc)] = (np.int64(q) + radius) if ok else 0
    unpred[np.uint64(nu)] = x
    return nu if ok else nu + 1


# One kernel runs both directions: the flag is tested once per row of the innermost axis,
# not per point, and each direction has its own copy of that short loop, so the hot loop
# holds no test of the direction. Compiling one kernel instead of an encoder and a decoder
# (each typing the whole traversal) saves a cold process that compresses and decompresses
# about a second. The encoder's point is a call (typed once); the decoder's small one is
# inlined. A plain module function, not a closure: numba's cache keys a closure by its
# pickled cells, and a cell holding a jitted function pickles differently in every process.


@kernel
def traverse_kernel(w, shape4, encode, cubic, order, frozen, level_eb, eb, anchor, radius, codes, unpred):
    """Run the full traversal. Encode: w holds the data and ends as the reconstruction,
    codes/unpred are written. Decode: w is filled from codes/unpred.
    Returns (number of codes, number of unpredictable values)."""
    n0, n1, n2, n3 = shape4[0], shape4[1], shape4[2], shape4[3]
    strides = np.empty(4, np.int64)
    strides[3] = 1
    strides[2] = n3
    strides[1] = n2 * n3
    strides[0] = n1 * n2 * n3
    dims = np.empty(4, np.int64)
    dims[0], dims[1], dims[2], dims[3] = n0, n1, n2, n3
    nc = np.int64(0)  # int64, not the literal 0: a literal argument compiles another specialisation
    nu = np.int64(0)
    top = level_eb.shape[0] - 1
    # a frozen axis is never interpolated along: each of its slices is an array of its own,
    # with its own anchors (or first point) at every index of the axis
    grid = np.empty(4, np.int64)
    for a in range(4):
        grid[a] = 1 if frozen[a] else (anchor if anchor > 0 else max(dims[a], 1))
    # anchors are stored exactly; without them the first point (of each slice of the frozen
    # axes) is predicted as 0
    step = 2.0 * level_eb[top]
    for i0 in range(0, n0, grid[0]):
        for i1 in range(0, n1, grid[1]):
            for i2 in range(0, n2, grid[2]):
                for i3 in range(0, n3, grid[3]):
                    idx = i0 * strides[0] + i1 * strides[1] + i2 * strides[2] + i3
                    if anchor > 0:
                        if encode:
                            unpred[nu] = w[idx]
                        else:
                            w[idx] = unpred[nu]
                        nu += 1
                    elif encode:
                        nu = _encode_point(w, idx, 0.0, step, 1.0 / step, eb, radius, codes, nc, unpred, nu)
                        nc += 1
                    else:
                        c = codes[nc]
                        if c == 0:
                            w[idx] = unpred[nu]
                            nu += 1
                        else:
                            w[idx] = (c - radius) * step
                        nc += 1
    begin = np.empty(4, np.int64)
    jump = np.empty(4, np.int64)
    for level in range(top, 0, -1):
        s = 1 << (level - 1)
        step = 2.0 * level_eb[level]
        inv_step = 1.0 / step
        for p in range(order.shape[0]):
            d = order[p]
            if s >= dims[d]:
                continue
            for a in range(4):
                begin[a] = 0
                jump[a] = 1 if frozen[a] else 2 * s
            for q in range(p):
                jump[order[q]] = s
            begin[d] = s
            off = s * strides[d]
            n = (dims[d] - 1) // s + 1
            shift = level - 1
            for i0 in range(begin[0], n0, jump[0]):
                for i1 in range(begin[1], n1, jump[1]):
                    for i2 in range(begin[2], n2, jump[2]):
                        base = i0 * strides[0] + i1 * strides[1] + i2 * strides[2]
                        if d == 0:
                            kfix = i0 >> shift
                        elif d == 1:
                            kfix = i1 >> shift
                        else:
                            kfix = i2 >> shift
                        if encode:
                            for i3 in range(begin[3], n3, jump[3]):
                                k = (i3 >> shift) if d == 3 else kfix
                                idx = base + i3
                                pred = _predict(w, idx, off, k, n, cubic)
                                nu = _encode_point(w, idx, pred, step, inv_step, eb, radius, codes, nc, unpred, nu)
                                nc += 1
                        else:
                            for i3 in range(begin[3], n3, jump[3]):
                                k = (i3 >> shift) if d == 3 else kfix
                                idx = base + i3
                                pred = _predict(w, idx, off, k, n, cubic)
                                nu = _decode_point(w, idx, pred, step, inv_step, eb, radius, codes, nc, unpred, nu)
                                nc += 1
    return nc, nu


def level_count(shape: tuple[int, ...], anchor: int) -> int:
    """Number of interpolation levels; with anchors the coarsest stride is anchor/2."""
    if anchor > 0:
        return int(math.log2(anchor))
    longest = max(shape) if shape else 1
    return max(1, math.ceil(math.log2(longest))) if longest > 1 else 1


def level_code_counts(shape4: tuple[int, ...], anchor: int, frozen=()) -> list[int]:
    """The codes of each level in the order the traversal writes them, coarsest first: the
    points of a level of stride s are on the grid of step s and not on that of step 2s (the
    coarsest level's 2s-grid holds the anchors, or without anchors the first point, which
    is coded first). With ``frozen`` axes, every slice of them has the levels of one slice."""
    return list(_level_code_counts(tuple(shape4), anchor, tuple(frozen)))


@functools.lru_cache(maxsize=256)
def _level_code_counts(shape4: tuple[int, ...], anchor: int, frozen: tuple) -> tuple[int, ...]:
    """level_code_counts, made once per shape (every stream's encode asks: 15 us a call on
    a 64 KiB chunk)."""
    one, slices = slice_shape(shape4, frozen)
    top = level_count(one, anchor)

    def on_grid(step):
        return math.prod((n - 1) // step + 1 for n in one)

    counts = [on_grid(1 << (level - 1)) - on_grid(1 << level) for level in range(top, 0, -1)]
    if anchor <= 0:
        counts[0] += 1
    return tuple(c * slices for c in counts)


@functools.lru_cache(maxsize=256)
def _points_on(shape: tuple, anchor, frozen: tuple) -> tuple[int, int]:
    shape4 = as_4d_shape(shape)
    stride = anchor if anchor is not None else _default_anchor(shape4, frozen)
    return math.prod(shape4), anchor_count(shape4, stride, frozen)


def anchor_count(shape4: tuple[int, ...], anchor: int, frozen=()) -> int:
    if anchor <= 0:
        return 0
    one, slices = slice_shape(shape4, frozen)
    return slices * math.prod((n - 1) // anchor + 1 for n in one)


def slice_shape(shape4: tuple[int, ...], frozen) -> tuple[tuple[int, ...], int]:
    """(the shape of one slice of the ``frozen`` axes, as 4-D; how many slices there are)."""
    if not frozen:
        return tuple(shape4), 1
    return tuple(1 if a in frozen else n for a, n in enumerate(shape4)), math.prod(shape4[a] for a in frozen)


def level_bounds(eb: float, levels: int, alpha: float, beta: float) -> np.ndarray:
    """SZ3's level-wise bounds: coarse levels are predicted from fewer, farther points and
    their errors propagate into every finer level, so they get a tighter bound."""
    out = np.empty(levels + 1, np.float64)
    out[0] = eb
    for level in range(1, levels + 1):
        out[level] = eb / level_divisor(level, alpha, beta)
    return out


@functools.lru_cache(maxsize=256)
def _unit_level_bounds(levels: int, alpha: float, beta: float) -> np.ndarray:
    """``level_bounds(1.0, ...)``, read-only, made once per parameters: every sample encode of
    the policy and every chunk's decode needs it (the Python loop cost 2-3 us a call)."""
    out = level_bounds(1.0, levels, alpha, beta)
    out.flags.writeable = False
    return out


def level_divisor(level: int, alpha: float, beta: float) -> float:
    """``min(alpha ** (level - 1), beta)``, the bound's divisor at ``level`` (>= 1), also where
    the power overflows a float: the encoder's alpha <= 1.5 never does, but a forged record
    (alpha 1e6 over 54 levels) made Python raise OverflowError out of the decoder."""
    try:
        return min(alpha ** (level - 1), beta)
    except OverflowError:  # above float64's largest value, so above any beta
        return beta


def choose_anchor(shape: tuple[int, ...]) -> int:
    effective = [n for n in shape if n > 1]
    if not effective:
        return 0
    stride = DEFAULT_ANCHOR_STRIDE[len(effective)]
    return stride if max(effective) > stride else 0


class FrozenAxesRecord:
    """The record of a predictor stage with ``frozen`` axes (a list, empty for none): version
    2 with them; without them version 1, byte for byte as before frozen axes existed. A
    record whose version and frozen axes disagree is forged (a version-1 reader would ignore
    the axes and decode other numbers). Before ``Stage`` among the bases."""

    def params(self) -> dict:
        params = super().params()
        if not self.frozen:
            del params["frozen"]
        return params

    def record(self) -> dict:
        return {**super().record(), "version": 2 if self.frozen else 1}

    def loaded_from(self, version: int) -> None:
        if (version >= 2) != bool(self.frozen):
            raise CorruptStreamError(f"{self.name} stage version {version} with frozen axes {self.frozen}")


@functools.lru_cache(maxsize=256)
def _axis_arrays(order: tuple, frozen: tuple) -> tuple[np.ndarray, np.ndarray]:
    """The kernel's order and frozen-flag arrays, made once per parameters (every sample
    encode of the policy and every chunk's decode needs them). Shared, so never written; left
    writable: numba types a read-only array apart, which would compile the traversal again."""
    order_array = np.array(order, np.int64)
    flags = np.zeros(4, np.int64)
    flags[list(frozen)] = 1
    return order_array, flags


@functools.lru_cache(maxsize=256)
def _plan(shape: tuple, anchor, order, frozen: tuple, alpha: float, beta: float):
    """What a traversal of an array of ``shape`` needs beyond the data, made once per
    parameters (each sample candidate of the policy and each chunk's decode needs it; made
    anew it cost 4 us a call): (anchor stride, axis order, then the kernel's arguments:
    the 4-D shape, the order and frozen-flag arrays, the unit level bounds). Shared, so
    never written (see _axis_arrays)."""
    shape4 = as_4d_shape(shape)
    if anchor is None:
        anchor = _default_anchor(shape4, frozen)
    if order is None:
        order = tuple(a for a in range(4) if shape4[a] > 1 and a not in frozen)
    if not {a for a in range(4) if shape4[a] > 1} <= set(order) | set(frozen):
        raise ValueError(f"axis order {list(order)} and frozen axes {list(frozen)} miss an axis of {shape}")
    order_array, flags = _axis_arrays(order, frozen)
    unit = _unit_level_bounds(level_count(slice_shape(shape4, frozen)[0], anchor), alpha, beta)
    return anchor, order, np.array(shape4, np.int64), order_array, flags, unit


def _default_anchor(shape4: tuple, frozen: tuple) -> int:
    """The anchor stride the stage chooses (``anchor=None``): by the dimensionality of one
    slice of the frozen axes (the record stores it; the code counts and the traversal must
    agree on it)."""
    return choose_anchor(slice_shape(shape4, frozen)[0])


def frozen_axes(axes) -> list[int]:
    """A predictor's frozen axes, checked: distinct 4-D axis numbers (ints, not floats or
    bools: a coerced value would decode other numbers), sorted."""
    if axes is None:
        return []
    if not isinstance(axes, list | tuple) or not all(
        isinstance(a, int | np.integer) and not isinstance(a, bool) and 0 <= a <= 3 for a in axes
    ):
        raise ValueError(f"frozen axes {axes!r} are not axes 0-3")
    if len(set(axes)) != len(axes):
        raise ValueError(f"frozen axes {axes!r} repeat an axis")
    return sorted(int(a) for a in axes)


@dataclass
class InterpolationPredictor(FrozenAxesRecord, Stage):
    """Stage: decomposes an array into quantization codes + exact unpredictable values.

    ``cubic`` (else linear) interpolation, the axis ``order`` of the sweeps (None: the live
    axes in order), the level-wise bound ``eb / min(alpha**level, beta)``, the ``anchor``
    stride (None: by dimensionality; 0: none) and the quantizer's ``radius``. ``frozen``
    axes (4-D axis numbers, none of them in ``order``) are not interpolated along: each slice
    of them is predicted as an array of its own (HPEZ's dimension freezing: a field that
    is rough along one axis, such as sea ice across its edge, loses less). A record with
    frozen axes is version 2; one without stays version 1, byte for byte."""

    name = "interpolation"
    version = 2  # v2: frozen axes
    optional = frozenset({"frozen"})

    cubic: bool = True
    order: list[int] | None = None
    alpha: float = 1.25
    beta: float = 2.0
    anchor: int | None = None
    radius: int = 32768
    frozen: list[int] | None = None

    def __post_init__(self):
        self.cubic = bool(self.cubic)
        self.order = None if self.order is None else [int(a) for a in self.order]
        self.alpha = float(self.alpha)
        self.beta = float(self.beta)
        self.radius = int(self.radius)
        self.frozen = frozen_axes(self.frozen)
        if self.order is not None and set(self.order) & set(self.frozen):
            raise ValueError(f"frozen axes {self.frozen} are in the sweep order {self.order}")

    def anchor_stride(self, shape4) -> int:
        """The anchor stride on an array of 4-D shape ``shape4``."""
        return self.anchor if self.anchor is not None else _default_anchor(tuple(shape4), tuple(self.frozen))

    def _setup(self, shape):
        """The kernel's arguments for an array of ``shape`` (4-D shape array, order and
        frozen-flag arrays, unit level bounds; shared, never written), resolving the
        ``anchor`` stride and ``order`` where they are None."""
        order = None if self.order is None else tuple(self.order)
        anchor, order, *plan = _plan(tuple(shape), self.anchor, order, tuple(self.frozen), self.alpha, self.beta)
        self.anchor = anchor
        if self.order is None:
            self.order = list(order)
        return plan

    def levels(self, shape4, anchor: int) -> int:
        """Interpolation levels on an array of 4-D shape ``shape4`` (those of one slice)."""
        return level_count(slice_shape(shape4, self.frozen)[0], anchor)

    def encode(self, data: np.ndarray, eb: float, reuse: bool = False):
        """data: C-contiguous array (any dims <= 4). Returns (codes int32, unpredictable values, recon).
        ``reuse``: the codes and the reconstruction are views of this thread's scratch
        buffers, valid until its next ``reuse`` encode (fresh ones cost 10-20 % of a 1 MB
        field's compress in page faults)."""
        if reuse:
            work = scratch("predictor-work", data.size, data.dtype)
            work[:] = data.reshape(-1)
            codes = scratch("predictor-codes", data.size, np.int32)
        else:
            work = np.array(data, copy=True).reshape(-1)
            codes = np.empty(work.size, np.int32)
        unpred = np.empty(work.size, data.dtype)
        nc, nu = self._traverse(work, data.shape, True, eb, codes, unpred)
        return codes[:nc], unpred[:nu], work.reshape(data.shape)

    def expected_codes(self, shape) -> int:
        values, anchors = self._points(shape)
        return values - anchors

    def expected_unpredictable(self, codes: np.ndarray, shape) -> int:
        # the zero codes (counted without a temporary mask) and the anchors
        return codes.size - int(np.count_nonzero(codes)) + self._points(shape)[1]

    def _points(self, shape) -> tuple[int, int]:
        """(values, anchors) of an array of ``shape``, made once per shape and parameters
        (a chunk's decode asks twice, 1-2 us a time)."""
        return _points_on(tuple(shape), self.anchor, tuple(self.frozen))

    def code_levels(self, shape) -> list[int]:
        """The codes of each level, coarsest first (they differ in spread: the entropy stage
        may give each its own table)."""
        shape4 = as_4d_shape(shape)
        return level_code_counts(shape4, self.anchor_stride(shape4), self.frozen)

    def decode(self, codes: np.ndarray, unpred: np.ndarray, shape, dtype, eb: float) -> np.ndarray:
        work = np.empty(math.prod(shape), dtype)
        self._traverse(work, shape, False, eb, kernel_array(codes, np.int32), kernel_array(unpred, dtype))
        return work.reshape(shape)

    def _traverse(self, work, shape, encode: bool, eb: float, codes, unpred):
        shape_array, order, frozen, unit = self._setup(shape)
        return traverse_kernel(
            work, shape_array, encode, self.cubic, order, frozen, unit * eb, eb, self.anchor, self.radius, codes, unpred
        )
