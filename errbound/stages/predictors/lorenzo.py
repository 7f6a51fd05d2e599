"""First-order Lorenzo predictor with linear quantization, 1-4 D.

The prediction of a point is the inclusion-exclusion sum over the corner of the hypercube
behind it (``x[i-1,j] + x[i,j-1] - x[i-1,j-1]`` in 2-D), read from reconstructed values, so
it is exact from the decoder's point of view. It wins over interpolation on rough data at
tight bounds, where the fine levels of interpolation predict from far-away points.

Speed comes from the dependency chain, not from arithmetic: each point's prediction needs
its left neighbour's reconstruction, so one row is a chain of ~40 cycles per point when
encoding (subtract, scale, round, rescale, add, cast). The kernels walk two independent
rows at once so the core overlaps two chains, carry the chain in a register rather than
through memory, quantize without branches, and leave unpredictable values out of the
kernels: the encoder gathers them from the input afterwards (they are stored verbatim, in
row-major order), the decoder scatters them before it runs. Together: 3-D encoding went
from 210 to ~1000 MB/s (kernel alone, one core), decoding from 456 to ~1400 MB/s.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from ...jit import kernel
from ...layout import kernel_array
from ...scratch import scratch
from ...stage import Stage
from .interpolation import FrozenAxesRecord, frozen_axes


@kernel(internal=True)
def _encode_point(row, j, pred, step, inv_step, eb, radius, codes, nc):
    """Quantize row[j] against pred; row[j] ends as the reconstruction, which is returned.
    Any integer q that passes the check is a valid code (the decoder only replays
    pred + q*step), so rint is used: it is shorter on the chain than floor(x + 0.5).
    Selects instead of ifs: measured 1.9x faster, though the ifs were predictable."""
    x = row[j]
    xf = np.float64(x)
    qf = (xf - pred) * inv_step
    in_range = abs(qf) < radius - 1  # False for NaN/Inf too
    q = (np.rint(qf) + 0.0) if in_range else 0.0  # + 0.0: see the interpolation encoder
    row[j] = pred + q * step
    r = np.float64(row[j])
    ok = in_range and abs(r - xf) <= eb and not (xf == 0.0 and math.copysign(1.0, xf) < 0.0)
    v = r if ok else xf
    row[j] = v
    codes[nc] = (np.int64(q) + radius) if ok else 0
    return v


@kernel(inline="always")
def _decode_point(row, j, pred, step, inv_step, eb, radius, codes, nc):
    c = codes[nc]
    if c != 0:  # code 0: the exact value was scattered in before the kernel ran
        row[j] = pred + (c - radius) * step
    return np.float64(row[j])


# Every kernel takes the array padded with one leading zero layer on every axis, so the
# predictor needs no edge cases (the zero layer plays 'outside the array'), and writes or
# reads one code per inner point in row-major order. The summation order of each
# prediction is part of the format: the point just reconstructed enters last, so the
# other terms overlap with the previous point.


@kernel(inline="always")
def _pred_3d(row, up, back, corner, j, prev):
    return (
        (
            (np.float64(up[j]) + np.float64(back[j]))
            - (np.float64(up[j - 1]) + np.float64(back[j - 1]) + np.float64(corner[j]))
        )
        + np.float64(corner[j - 1])
    ) + prev


# One kernel per dimensionality runs both directions: the flag is tested once per row, and
# each direction has its own copy of the row loop, so no loop tests it per point (a runtime
# flag tested per point was 1.5x slower). One build for both directions: an encoder and a
# decoder compiled apart (each with every row function inlined) cost a cold process that
# compresses and decompresses about a second more. The edge rows of 3-D and the 2-D rows are
# calls, typed once; the 3-D pair rows and the 4-D rows are inlined at their one site, which
# kept their speed (as calls, 4-5 % slower on rows of ~100 points; measured). Plain
# module functions, not closures: numba's cache keys a closure by its pickled cells, and a
# cell holding a jitted function pickles differently in every process.


@kernel(inline="always")
def _pred_4d(w, i, s0, s1, s2, prev):
    a = np.float64(w[i - s2]) + np.float64(w[i - s1]) + np.float64(w[i - s0])
    b = (
        np.float64(w[i - 1 - s2])
        + np.float64(w[i - 1 - s1])
        + np.float64(w[i - 1 - s0])
        + np.float64(w[i - s2 - s1])
        + np.float64(w[i - s2 - s0])
        + np.float64(w[i - s1 - s0])
    )
    c = (
        np.float64(w[i - 1 - s2 - s1])
        + np.float64(w[i - 1 - s2 - s0])
        + np.float64(w[i - 1 - s1 - s0])
        + np.float64(w[i - s2 - s1 - s0])
    )
    d = np.float64(w[i - 1 - s2 - s1 - s0])
    return ((a - b) + (c - d)) + prev


@kernel(inline="always")
def _row_4d(w, base, m3, s0, s1, s2, encode, step, inv_step, eb, radius, codes, nc):
    prev = np.float64(w[base])
    if encode:
        for i3 in range(1, m3):
            i = base + i3
            pred = _pred_4d(w, i, s0, s1, s2, prev)
            prev = _encode_point(w, i, pred, step, inv_step, eb, radius, codes, nc + i3 - 1)
    else:
        for i3 in range(1, m3):
            i = base + i3
            pred = _pred_4d(w, i, s0, s1, s2, prev)
            prev = _decode_point(w, i, pred, step, inv_step, eb, radius, codes, nc + i3 - 1)


@kernel(internal=True)
def _kernel_4d(p, encode, eb, radius, codes):
    m0, m1, m2, m3 = p.shape
    w = p.reshape(-1)
    s2 = m3
    s1 = m2 * m3
    s0 = m1 * m2 * m3
    step = 2.0 * eb
    inv_step = 1.0 / step
    nc = 0
    for i0 in range(1, m0):
        for i1 in range(1, m1):
            for i2 in range(1, m2):
                _row_4d(w, i0 * s0 + i1 * s1 + i2 * s2, m3, s0, s1, s2, encode, step, inv_step, eb, radius, codes, nc)
                nc += m3 - 1


@kernel(internal=True)
def _row_3d(p, i0, i1, encode, step, inv_step, eb, radius, codes):
    m1, m2 = p.shape[1], p.shape[2]
    row, up, back, corner = p[i0, i1], p[i0, i1 - 1], p[i0 - 1, i1], p[i0 - 1, i1 - 1]
    nc = ((i0 - 1) * (m1 - 1) + (i1 - 1)) * (m2 - 1) - 1
    prev = np.float64(row[0])
    if encode:
        for j in range(1, m2):
            pred = _pred_3d(row, up, back, corner, j, prev)
            prev = _encode_point(row, j, pred, step, inv_step, eb, radius, codes, nc + j)
    else:
        for j in range(1, m2):
            pred = _pred_3d(row, up, back, corner, j, prev)
            prev = _decode_point(row, j, pred, step, inv_step, eb, radius, codes, nc + j)


@kernel(inline="always")
def _row_pair_3d(p, i0, i1, encode, step, inv_step, eb, radius, codes):
    """Rows (i0, i1) and (i0 + 1, i1 - 1): neither reads the other, so their chains interleave."""
    m1, m2 = p.shape[1], p.shape[2]
    ra, ua, ba, ca = p[i0, i1], p[i0, i1 - 1], p[i0 - 1, i1], p[i0 - 1, i1 - 1]
    rb, ub, bb, cb = p[i0 + 1, i1 - 1], p[i0 + 1, i1 - 2], p[i0, i1 - 1], p[i0, i1 - 2]
    na = ((i0 - 1) * (m1 - 1) + (i1 - 1)) * (m2 - 1) - 1
    nb = (i0 * (m1 - 1) + (i1 - 2)) * (m2 - 1) - 1
    pa = np.float64(ra[0])
    pb = np.float64(rb[0])
    if encode:
        for j in range(1, m2):
            preda = _pred_3d(ra, ua, ba, ca, j, pa)
            predb = _pred_3d(rb, ub, bb, cb, j, pb)
            pa = _encode_point(ra, j, preda, step, inv_step, eb, radius, codes, na + j)
            pb = _encode_point(rb, j, predb, step, inv_step, eb, radius, codes, nb + j)
    else:
        for j in range(1, m2):
            preda = _pred_3d(ra, ua, ba, ca, j, pa)
            predb = _pred_3d(rb, ub, bb, cb, j, pb)
            pa = _decode_point(ra, j, preda, step, inv_step, eb, radius, codes, na + j)
            pb = _decode_point(rb, j, predb, step, inv_step, eb, radius, codes, nb + j)


@kernel(internal=True)
def _kernel_3d(p, encode, eb, radius, codes):
    """Planes are taken in pairs and walked along a diagonal: row t of the first plane
    beside row t - 1 of the second, whose inputs are all done by then."""
    m0, m1 = p.shape[0], p.shape[1]
    step = 2.0 * eb
    inv_step = 1.0 / step
    # row indices are int64 everywhere: a literal argument (1) compiles another specialisation
    first, last = np.int64(1), np.int64(m1 - 1)
    for i0 in range(1, m0 - 1, 2):
        _row_3d(p, i0, first, encode, step, inv_step, eb, radius, codes)
        for t in range(2, m1):
            _row_pair_3d(p, i0, t, encode, step, inv_step, eb, radius, codes)
        _row_3d(p, i0 + 1, last, encode, step, inv_step, eb, radius, codes)
    if (m0 - 1) % 2 == 1:
        for t in range(1, m1):
            _row_3d(p, np.int64(m0 - 1), t, encode, step, inv_step, eb, radius, codes)


@kernel(internal=True)
def _row_pair_2d(a, ua, b, na, nb, encode, step, inv_step, eb, radius, codes):
    """Rows in pairs: the second row's point j needs the first row's point j, computed
    just before it, so the second chain trails the first by one point and both run."""
    pa = np.float64(a[0])
    pb = np.float64(b[0])
    if encode:
        for j in range(1, a.shape[0]):
            pred = (np.float64(ua[j]) - np.float64(ua[j - 1])) + pa
            pa = _encode_point(a, j, pred, step, inv_step, eb, radius, codes, na + j)
            pred = (np.float64(a[j]) - np.float64(a[j - 1])) + pb
            pb = _encode_point(b, j, pred, step, inv_step, eb, radius, codes, nb + j)
    else:
        for j in range(1, a.shape[0]):
            pred = (np.float64(ua[j]) - np.float64(ua[j - 1])) + pa
            pa = _decode_point(a, j, pred, step, inv_step, eb, radius, codes, na + j)
            pred = (np.float64(a[j]) - np.float64(a[j - 1])) + pb
            pb = _decode_point(b, j, pred, step, inv_step, eb, radius, codes, nb + j)


@kernel(internal=True)
def _row_2d(a, ua, na, encode, step, inv_step, eb, radius, codes):
    pa = np.float64(a[0])
    if encode:
        for j in range(1, a.shape[0]):
            pred = (np.float64(ua[j]) - np.float64(ua[j - 1])) + pa
            pa = _encode_point(a, j, pred, step, inv_step, eb, radius, codes, na + j)
    else:
        for j in range(1, a.shape[0]):
            pred = (np.float64(ua[j]) - np.float64(ua[j - 1])) + pa
            pa = _decode_point(a, j, pred, step, inv_step, eb, radius, codes, na + j)


@kernel(internal=True)
def _kernel_2d(p, encode, eb, radius, codes):
    m0, m1 = p.shape
    step = 2.0 * eb
    inv_step = 1.0 / step
    for i0 in range(1, m0 - 1, 2):
        na = (i0 - 1) * (m1 - 1) - 1
        _row_pair_2d(p[i0], p[i0 - 1], p[i0 + 1], na, na + (m1 - 1), encode, step, inv_step, eb, radius, codes)
    if (m0 - 1) % 2 == 1:
        na = np.int64((m0 - 2) * (m1 - 1) - 1)
        _row_2d(p[m0 - 1], p[m0 - 2], na, encode, step, inv_step, eb, radius, codes)


@kernel(internal=True)
def _kernel_1d(p, encode, eb, radius, codes):
    w = p.reshape(-1)
    step = 2.0 * eb
    inv_step = 1.0 / step
    prev = np.float64(w[0])
    if encode:
        for i in range(1, w.shape[0]):
            prev = _encode_point(w, i, prev, step, inv_step, eb, radius, codes, i - 1)
    else:
        for i in range(1, w.shape[0]):
            prev = _decode_point(w, i, prev, step, inv_step, eb, radius, codes, i - 1)


@kernel
def lorenzo_kernel(p, encode, eb, radius, codes):
    """Encode (p holds the data, padded; it ends as the reconstruction and codes are
    written) or decode (codes into p, whose unpredictable points are already in place)."""
    if p.ndim == 1:
        _kernel_1d(p, encode, eb, radius, codes)
    elif p.ndim == 2:
        _kernel_2d(p, encode, eb, radius, codes)
    elif p.ndim == 3:
        _kernel_3d(p, encode, eb, radius, codes)
    else:
        _kernel_4d(p, encode, eb, radius, codes)


def _live_shape(shape):
    live = tuple(int(n) for n in shape if n > 1)
    return live or (1,)


def _padded(shape, dtype, slot: str | None = None, live=None):
    """(padded array, its inner view, live shape); from this thread's scratch ``slot``
    (zero layers set, the rest left for the caller to overwrite) or fresh. ``live``: the
    live shape, where the caller has it."""
    live = _live_shape(shape) if live is None else live
    padded = _zero_padded(tuple(n + 1 for n in live), dtype, slot)
    return padded, padded[_inner_index(len(live), 0)], live


def _zero_padded(padded_shape, dtype, slot: str | None, lead: int = 0):
    """An array of ``padded_shape`` whose first layer along every axis from ``lead`` on is
    zero: fresh zeros, or (``slot``) this thread's scratch buffer with only those layers
    cleared (a fresh one costs its page faults on every call: 0.3-0.5 ms a MB)."""
    if slot is None:
        return np.zeros(padded_shape, dtype)
    padded = scratch(slot, math.prod(padded_shape), dtype).reshape(padded_shape)
    for layer in _zero_layers(len(padded_shape), lead):
        padded[layer] = 0
    return padded


# the index tuples of the padding, made once per dimensionality (a 16 KiB chunk's decode
# built them anew for ~1 us)
@functools.cache
def _zero_layers(ndim: int, lead: int) -> tuple:
    return tuple((slice(None),) * axis + (0,) for axis in range(lead, ndim))


@functools.cache
def _inner_index(ndim: int, lead: int) -> tuple:
    return (slice(None),) * lead + (slice(1, None),) * ndim


MAX_FREE_SLICES = 4096  # see LorenzoPredictor.slices_allowed
MIN_SLICE_VALUES = 256


@dataclass
class LorenzoPredictor(FrozenAxesRecord, Stage):
    """Stage: first-order Lorenzo prediction + linear quantization with ``radius`` codes.
    ``frozen`` axes (4-D axis numbers, as the interpolation predictor's) are not predicted
    along: each slice of them is predicted as an array of its own, with its own zero layer
    (a field that is rough along one axis, such as sea ice across its edge, costs 10-20 %
    less; the codes are in the order of the slices, frozen axes first). A record with frozen
    axes is version 2; one without stays version 1, byte for byte."""

    name = "lorenzo"
    version = 2  # v2: frozen axes
    optional = frozenset({"frozen"})

    radius: int = 32768
    frozen: list[int] | None = None

    def __post_init__(self):
        self.radius = int(self.radius)
        self.frozen = frozen_axes(self.frozen)

    def slices_allowed(self, shape) -> bool:
        """Whether the frozen axes may cut an array of ``shape`` into as many slices as they
        do. Each slice is one kernel call from Python (a few us): past MAX_FREE_SLICES they
        must average MIN_SLICE_VALUES values. The encoder refuses more, and so does the
        decoder: a forged record with every axis frozen decoded at 0.7 us a value."""
        axes = self._frozen_axes(len(shape))
        slices = math.prod(shape[a] for a in axes) if axes else 1
        return slices <= max(MAX_FREE_SLICES, math.prod(shape) // MIN_SLICE_VALUES)

    def _frozen_axes(self, ndim: int) -> list[int]:
        """The frozen axes as axes of an ``ndim``-D array (4-D numbers below it are its
        leading length-1 axes: nothing to freeze)."""
        return [a - (4 - ndim) for a in self.frozen if a >= 4 - ndim]

    def encode(self, data: np.ndarray, eb: float, reuse: bool = False):
        """Returns (codes int32, unpredictable values, recon); ``reuse``: codes and recon are
        views of this thread's scratch buffers (see InterpolationPredictor.encode)."""
        axes = self._frozen_axes(data.ndim)
        if axes:
            if not self.slices_allowed(data.shape):
                raise ValueError(f"frozen axes {self.frozen} cut a {data.shape} array into too many slices")
            return self._encode_slices(data, eb, axes, reuse)
        padded, inner, live = _padded(data.shape, data.dtype, "predictor-work" if reuse else None)
        codes = scratch("predictor-codes", data.size, np.int32) if reuse else np.empty(data.size, np.int32)
        inner[...] = data.reshape(live)
        lorenzo_kernel(padded, True, eb, self.radius, codes)
        # rejected points keep their input value, so they are gathered in row-major order
        unpred = inner[codes.reshape(live) == 0]
        return codes, unpred, inner.reshape(data.shape)

    def _encode_slices(self, data, eb, axes, reuse):
        moved = np.moveaxis(data, axes, range(len(axes)))
        padded, inner, live = _padded_slices(moved.shape, len(axes), data.dtype, "predictor-work" if reuse else None)
        inner[...] = moved.reshape(inner.shape)
        codes = scratch("predictor-codes", data.size, np.int32) if reuse else np.empty(data.size, np.int32)
        per_slice = math.prod(live)
        for i in range(padded.shape[0]):  # the (d-1)-D kernel on each slice: none compiles anew
            lorenzo_kernel(padded[i], True, eb, self.radius, codes[i * per_slice : (i + 1) * per_slice])
        unpred = inner[codes.reshape(inner.shape) == 0]
        # a view, as the unfrozen path's: most callers only check or drop it
        return codes, unpred, np.moveaxis(inner.reshape(moved.shape), range(len(axes)), axes)

    def expected_codes(self, shape) -> int:
        return math.prod(shape)

    def expected_unpredictable(self, codes: np.ndarray, shape) -> int:
        return codes.size - int(np.count_nonzero(codes))  # the zero codes: no temporary mask

    def code_levels(self, shape) -> list[int]:
        """One level: every code is predicted alike."""
        return [math.prod(shape)]

    def decode(self, codes, unpred, shape, dtype, eb: float) -> np.ndarray:
        codes = kernel_array(codes, np.int32)
        # unpred is only assigned into the padded array (which casts): never a kernel argument
        axes = self._frozen_axes(len(shape))
        if axes:
            return self._decode_slices(codes, unpred, tuple(shape), dtype, eb, axes)
        # past one axis the padded array is a temporary (the result is its inner part, copied
        # out); in 1-D the inner part is contiguous and is the result
        live = _live_shape(shape)
        slot = "predictor-decode" if len(live) > 1 else None
        padded, inner, live = _padded(shape, dtype, slot, live)
        # the caller checked that unpred holds one value per zero code; most chunks have none
        # (the mask cost 3 us of a 16 KiB chunk's 59 us decode)
        if unpred.size:
            inner[codes.reshape(live) == 0] = unpred
        lorenzo_kernel(padded, False, eb, self.radius, codes)
        return (inner.copy() if slot else inner).reshape(shape)

    def _decode_slices(self, codes, unpred, shape, dtype, eb, axes):
        moved_shape = tuple(shape[a] for a in axes) + tuple(n for a, n in enumerate(shape) if a not in axes)
        padded, inner, live = _padded_slices(moved_shape, len(axes), dtype, "predictor-decode")
        if unpred.size:
            inner[codes.reshape(inner.shape) == 0] = unpred
        per_slice = math.prod(live)
        for i in range(padded.shape[0]):
            lorenzo_kernel(padded[i], False, eb, self.radius, codes[i * per_slice : (i + 1) * per_slice])
        out = np.moveaxis(inner.reshape(moved_shape), range(len(axes)), axes)
        return np.array(out, order="C")  # a copy: the padded slices are a scratch buffer


def _padded_slices(moved_shape, frozen: int, dtype, slot: str | None = None):
    """Zero-padded slices for an array whose ``frozen`` leading axes are the frozen ones:
    (padded (slices, *live + 1), its inner view (slices, *live), live shape of a slice);
    ``slot``: see _zero_padded."""
    live = _live_shape(moved_shape[frozen:])
    padded = _zero_padded((math.prod(moved_shape[:frozen]), *(n + 1 for n in live)), dtype, slot, lead=1)
    return padded, padded[_inner_index(len(live), 1)], live
