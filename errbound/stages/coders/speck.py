"""SPECK set-partitioning bit-plane coding of quantized wavelet coefficients.

Coefficients are quantized midtread, ``u = round(|c| / q)`` with a sign, and every bit plane
of ``u`` is coded, so the decoder gets ``u`` back exactly (the reconstruction ``±u q`` is off
by at most q/2 per coefficient). Per bit plane n (threshold 2^n), from the top plane down:

* sorting pass: each insignificant pixel, then each insignificant set of the list of
  insignificant sets (LIS) gets one significance bit; a pixel that turns significant sends
  its sign and joins the list of significant pixels (LSP); a set that turns significant is
  split, and its children are tested at once (recursively). When all children but the last
  are insignificant, the last one must be significant and costs no bit.
* refinement pass: every pixel that was significant before this plane sends bit n.

Sets are boxes. Along an axis where a box is the coarse band of a level of :mod:`wavelet`
(per axis ``depth`` >= 0) it is cut at the next subband boundary, so the partition follows the
subband structure for any shape and any grouping of the axes; a box with no such axis is
halved along every axis of length >= 2. The encoder computes the bit-OR of its children's
magnitudes when it splits a set, so every significance test costs O(1).

Sets larger than STREAM_MAX are split up front into independent streams (each with its own
top plane), which the codec codes and decodes in parallel threads; the split depends on the
shape only, so the bytes are the same for any thread count. The passes are written for
speed under numba: see the comments in :func:`_code`.
"""

from __future__ import annotations

import threading

import numpy as np

from ...jit import kernel
from ...stage import Stage
from .bits import get_bit, put_bit_if

MAX_PLANES = 62
# Sets larger than this are split into separate streams: it bounds the coder's memory (its
# lists are allocated at their worst case) and gives the threads independent work.
STREAM_MAX = 1 << 18

# record fields of a set: flat start, four lengths, per axis the depth of the coarse band the
# box is along that axis (-1: a detail band), bit-OR of the magnitudes
_START, _L0, _D0, _OR = 0, 1, 5, 9
_FIELDS = 10


class Speck(Stage):
    """Stage: SPECK set partitioning of quantized coefficients (no parameters: the quantization
    step travels per chunk in the codec's table)."""

    name = "speck"


# --------------------------------------------------------------------------- quantization

_SIGN = np.int64(1) << 62  # magnitudes stay below 2^MAX_PLANES, so the sign fits above them
_MAG = _SIGN - 1


@kernel
def quantize(coef, q, v):
    """v = round(|c| / q) (clamped below 2^MAX_PLANES), with the sign in bit 62 where the
    magnitude is nonzero. Returns the OR of the magnitudes."""
    inv = 1.0 / q
    cap = float(1 << MAX_PLANES) - 1.0
    acc = 0
    for i in range(coef.size):
        c = coef[i]
        m = np.int64(min(np.floor(abs(c) * inv + 0.5), cap))
        v[i] = m | (_SIGN if (c < 0 and m != 0) else 0)
        acc |= m
    return acc


@kernel
def count_nonzero(coef, q):
    """How many coefficients quantize to a nonzero value."""
    half = 0.5 * q
    n = 0
    for i in range(coef.size):
        n += abs(coef[i]) >= half
    return n


@kernel
def quantization_error(coef, q):
    """Sum of squared errors of midtread quantization with step q (as :func:`quantize`)."""
    inv = 1.0 / q
    cap = float(1 << MAX_PLANES) - 1.0
    total = 0.0
    for i in range(coef.size):
        a = abs(coef[i])
        d = a - min(np.floor(a * inv + 0.5), cap) * q
        total += d * d
    return total


@kernel
def dequantize(v, q, out):
    """out = ±u q: the same function on both sides, so encoder and decoder agree bit for bit."""
    for i in range(v.size):
        m = np.float64(v[i] & _MAG) * q
        out[i] = -m if v[i] >> 62 else m


# --------------------------------------------------------------------------- set partition

# Sets live as rows of int64 tables and are always addressed as (table, row): a row view
# would cost two atomic reference-count updates per use, more than the work on the row.


@kernel(inline="always")
def _parts(d0, d1, d2, d3, l0, l1, l2, l3, v0, v1, v2, v3):
    """The axes a set is cut along (4-bit mask) from its depths d, lengths l and the axes'
    level counts v; +16 when the cut halves the box instead of following the subbands.
    Scalars only: helpers that take arrays make numba count references on every call."""
    mask = (
        (1 if 0 <= d0 < v0 else 0)
        | (2 if 0 <= d1 < v1 else 0)
        | (4 if 0 <= d2 < v2 else 0)
        | (8 if 0 <= d3 < v3 else 0)
    )
    if mask:
        return mask
    return (1 if l0 >= 2 else 0) | (2 if l1 >= 2 else 0) | (4 if l2 >= 2 else 0) | (8 if l3 >= 2 else 0) | 16


@kernel(internal=True)
def _child_depth(d, group_cut, high):
    if d < 0 or group_cut == 0:
        return d
    return d + 1 if (high & group_cut) == 0 else -1


@kernel
def split_set(t, r, dims, levels, groups, out, v, with_or):
    """Children of set r of table t written to out[0:count] (low part first along each cut
    axis, C order over the axes), with their bit-OR of ``v`` if ``with_or``; returns count.

    Along every axis where the box is a coarse band that the transform split further, it is
    cut at that subband boundary; a child stays coarse in a group of axes only if it took the
    low part along all of the group's cut axes. A box without such axes is halved along
    every axis of length >= 2."""
    s2 = dims[3]
    s1 = dims[2] * s2
    s0 = dims[1] * s1
    l0, l1, l2, l3 = t[r, _L0], t[r, _L0 + 1], t[r, _L0 + 2], t[r, _L0 + 3]
    w0, w1, w2, w3 = l0 - l0 // 2, l1 - l1 // 2, l2 - l2 // 2, l3 - l3 // 2
    d0, d1, d2, d3 = t[r, _D0], t[r, _D0 + 1], t[r, _D0 + 2], t[r, _D0 + 3]
    mask = _parts(d0, d1, d2, d3, l0, l1, l2, l3, levels[0], levels[1], levels[2], levels[3])
    structured = mask < 16
    mask &= 15
    start = t[r, _START]
    # per axis: the cut axes of its group (a child stays coarse there if low along all of them)
    g0 = g1 = g2 = g3 = np.int64(0)  # int64, not literals: each literal argument compiles another specialisation
    if structured:
        for b in range(4):
            if mask & (1 << b):
                if groups[b] == groups[0]:
                    g0 |= 1 << b
                if groups[b] == groups[1]:
                    g1 |= 1 << b
                if groups[b] == groups[2]:
                    g2 |= 1 << b
                if groups[b] == groups[3]:
                    g3 |= 1 << b
    c = 0
    for h0 in range(2 if mask & 1 else 1):
        for h1 in range(2 if mask & 2 else 1):
            for h2 in range(2 if mask & 4 else 1):
                for h3 in range(2 if mask & 8 else 1):
                    high = h0 | (h1 << 1) | (h2 << 2) | (h3 << 3)
                    out[c, _START] = start + h0 * w0 * s0 + h1 * w1 * s1 + h2 * w2 * s2 + h3 * w3
                    out[c, _L0] = (l0 - w0 if h0 else w0) if mask & 1 else l0
                    out[c, _L0 + 1] = (l1 - w1 if h1 else w1) if mask & 2 else l1
                    out[c, _L0 + 2] = (l2 - w2 if h2 else w2) if mask & 4 else l2
                    out[c, _L0 + 3] = (l3 - w3 if h3 else w3) if mask & 8 else l3
                    out[c, _D0] = _child_depth(d0, g0, high)
                    out[c, _D0 + 1] = _child_depth(d1, g1, high)
                    out[c, _D0 + 2] = _child_depth(d2, g2, high)
                    out[c, _D0 + 3] = _child_depth(d3, g3, high)
                    out[c, _OR] = 0
                    c += 1
    if with_or:  # one call per split: a call costs about as much as splitting a small set
        _children_or(v, start, l0, l1, l2, l3, mask, s0, s1, s2, out)
    return c


@kernel(internal=True)
def _children_or(v, start, l0, l1, l2, l3, mask, s0, s1, s2, kids):
    """Bit-OR of the values of every child (ordered as split_set orders them), from one scan
    of the parent box, into kids[:, _OR]."""
    w0 = l0 - l0 // 2 if mask & 1 else l0
    w1 = l1 - l1 // 2 if mask & 2 else l1
    w2 = l2 - l2 // 2 if mask & 4 else l2
    w3 = np.uint64(l3 - l3 // 2 if mask & 8 else l3)
    n1 = 2 if mask & 2 else 1
    n2 = 2 if mask & 4 else 1
    n3 = 2 if mask & 8 else 1
    e3 = np.uint64(l3)
    for i0 in range(l0):
        c0 = (1 if i0 >= w0 else 0) * n1
        for i1 in range(l1):
            c1 = (c0 + (1 if i1 >= w1 else 0)) * n2
            for i2 in range(l2):
                c2 = (c1 + (1 if i2 >= w2 else 0)) * n3
                base = np.uint64(start + i0 * s0 + i1 * s1 + i2 * s2)
                acc = 0
                for i3 in range(w3):  # unsigned: no negative-index fix-ups, it vectorises
                    acc |= v[base + i3]
                kids[c2, _OR] |= acc
                if w3 < e3:
                    acc = 0
                    for i3 in range(w3, e3):
                        acc |= v[base + i3]
                    kids[c2 + 1, _OR] |= acc


@kernel(internal=True)
def _copy(dst, di, src, si):
    """Set record si of src -> record di of dst."""
    for f in range(_FIELDS):
        dst[di, f] = src[si, f]


def stream_roots(dims: np.ndarray, levels: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """The sets coded as independent streams (rows of set records), from the shape only."""
    root = np.zeros((1, _FIELDS), np.int64)
    root[0, _L0 : _L0 + 4] = dims
    done, todo = [], [root]
    out = np.zeros((16, _FIELDS), np.int64)
    while todo:
        rec = todo.pop(0)
        if np.prod(rec[0, _L0 : _L0 + 4]) > STREAM_MAX:
            k = split_set(rec, 0, dims, levels, groups, out, np.zeros(1, np.int64), False)
            todo.extend(out[i : i + 1].copy() for i in range(k))
        else:
            done.append(rec)
    return np.concatenate(done)


# --------------------------------------------------------------------------- the coder

_LOCAL = threading.local()


def most_bytes(root: np.ndarray, top: int) -> int:
    """The most bytes the coder writes for the set ``root`` from bit plane ``top`` down (the
    room :func:`_scratch` gives its output)."""
    volume = int(np.prod(root[_L0 : _L0 + 4])) + 16
    return 8 * ((volume * (2 * top + 5)) // 64 + 4)


def _scratch(root: np.ndarray, top: int, encode: bool):
    """The coder's lists at their largest possible size: LIS sets, LIS pixels and LSP
    partition the root box, so none can outgrow its volume (the set table holds the kept and
    the newly appended sets of one pass); the output holds at most, per value, a sign and one
    bit per plane, and per set (fewer than the values) one test per plane. Each thread keeps
    its lists for the next stream: fresh pages cost a third of the coding time."""
    volume = int(np.prod(root[_L0 : _L0 + 4])) + 16
    nwords = most_bytes(root, top) // 8 if encode else 1
    kept = getattr(_LOCAL, "lists", None)
    if kept is None or kept[1].shape[0] < volume or kept[0].size < nwords:
        size = max(volume, kept[1].shape[0] if kept is not None else 0)
        words = max(nwords, kept[0].size if kept is not None else 0)
        kept = (
            np.empty(words, np.uint64),
            np.empty((size, _FIELDS), np.int64),
            np.empty((2, size), np.int64),
            np.empty((2, size), np.int64),
            np.empty((16 * 128, _FIELDS), np.int64),
            np.empty((16, _FIELDS), np.int64),
        )
        _LOCAL.lists = kept
    return kept


@kernel
def _code(v, dims, levels, groups, root, top, encode, words, nbits, sets, pixels, lsp, stack, kids):
    """One stream. encode: write bits, return (words, bit count). decode: read them from
    ``words`` into v (zero on entry inside the root box), return (words, bits read).

    ``v`` holds magnitude | sign << 62 per coefficient; a set's bit-OR then carries a sign bit
    too, which every test masks off. Pixel lists carry each pixel's value beside its index,
    so the passes over them read memory in order instead of gathering from ``v``; the decoder
    scatters its values into v at the end. The pixel and refinement passes are
    branch-free: their outcomes are close to random. The lists come from :func:`_scratch`:
    arrays allocated here and used in the loops would make numba count references on every
    iteration (it cost a third of the time).
    """
    pix = pixels[0]
    pixv = pixels[1]
    lsi = lsp[0]
    lsv = lsp[1]
    pos = np.int64(0)  # int64, not literals: each literal argument compiles another specialisation
    one = np.int64(1)
    acc = np.uint64(0)
    ns = np.int64(0)
    npix = 0
    nlsp = 0
    for n in range(top, -1, -1):
        if not encode and pos > nbits:
            break  # corrupt: stop early, the caller sees pos != nbits
        thr = np.int64(1) << n
        old = nlsp
        # sorting pass, pixels: the insignificant ones are compacted to the front
        w = np.int64(0)
        for i in range(npix):
            idx = pix[i]
            if encode:
                val = pixv[i]
                sig = np.int64((val & _MAG) >= thr)
                acc, pos = put_bit_if(words, acc, pos, sig, one)
                acc, pos = put_bit_if(words, acc, pos, val >> 62, sig)
            else:
                sig = get_bit(words, pos)
                pos += 1
                val = thr | (get_bit(words, pos) << 62)
                pos += sig
            lsi[nlsp] = idx
            lsv[nlsp] = val
            nlsp += sig
            pix[w] = idx
            pixv[w] = val
            w += 1 - sig
        npix = w
        # sorting pass, sets (the root at the top plane, significant by definition): kept
        # sets are compacted to the front, children appended behind, then moved up
        ns0 = ns
        w = np.int64(0)
        for i in range(-1 if n == top else 0, ns0):
            if i < 0:
                for f in range(_FIELDS):
                    stack[0, f] = root[f]
            else:
                if encode:
                    sig = np.int64((sets[i, _OR] & _MAG) >= thr)
                    acc, pos = put_bit_if(words, acc, pos, sig, one)
                else:
                    sig = get_bit(words, pos)
                    pos += 1
                if sig == 0:
                    if w != i:
                        _copy(sets, w, sets, i)
                    w += 1
                    continue
                _copy(stack, np.int64(0), sets, i)
            sp = 1
            while sp > 0:  # split significant sets, testing their children at once
                sp -= 1
                k = split_set(stack, sp, dims, levels, groups, kids, v, encode)
                anysig = 0
                for c in range(k):
                    last = 1 if (c == k - 1 and anysig == 0) else 0  # then it must be significant
                    if kids[c, _L0] * kids[c, _L0 + 1] * kids[c, _L0 + 2] * kids[c, _L0 + 3] == 1:
                        idx = kids[c, _START]
                        if encode:
                            val = kids[c, _OR]  # the OR of one pixel is its value
                            sig = np.int64((val & _MAG) >= thr)
                            acc, pos = put_bit_if(words, acc, pos, sig, 1 - last)
                            acc, pos = put_bit_if(words, acc, pos, val >> 62, sig)
                        else:
                            sig = get_bit(words, pos) | last
                            pos += 1 - last
                            val = thr | (get_bit(words, pos) << 62)
                            pos += sig
                        anysig |= sig
                        lsi[nlsp] = idx
                        lsv[nlsp] = val
                        nlsp += sig
                        pix[npix] = idx
                        pixv[npix] = val
                        npix += 1 - sig
                        continue
                    if encode:
                        sig = np.int64((kids[c, _OR] & _MAG) >= thr)
                        acc, pos = put_bit_if(words, acc, pos, sig, 1 - last)
                    else:
                        sig = get_bit(words, pos) | last
                        pos += 1 - last
                    anysig |= sig
                    if sig:
                        _copy(stack, sp, kids, c)
                        sp += 1
                    else:
                        _copy(sets, ns, kids, c)
                        ns += 1
        for i in range(ns0, ns):
            _copy(sets, w, sets, i)
            w += 1
        ns = w
        # refinement pass over the pixels significant before this plane
        for i in range(old):
            if encode:
                acc, pos = put_bit_if(words, acc, pos, (lsv[i] >> n) & 1, one)  # n < 62: never the sign
            else:
                lsv[i] |= get_bit(words, pos) << n
                pos += 1
    if not encode:
        for i in range(nlsp):
            v[lsi[i]] = lsv[i]
    return words, pos


def _root_box(v: np.ndarray, root: np.ndarray, dims: np.ndarray) -> np.ndarray:
    """The values of ``v`` (the chunk, flat, C order over ``dims``) inside the root's box:
    a view (numpy here, not a kernel: it runs once per stream, and a kernel costs a cold
    start ~0.15 s)."""
    shape = tuple(int(n) for n in dims)
    corner = np.unravel_index(int(root[_START]), shape)
    extent = [int(n) for n in root[_L0 : _L0 + 4]]
    return v.reshape(shape)[tuple(slice(c, c + e) for c, e in zip(corner, extent, strict=True))]


def encode_stream(
    v: np.ndarray, dims: np.ndarray, levels: np.ndarray, groups: np.ndarray, root: np.ndarray
) -> tuple[int, bytes]:
    """(top plane or -1, bytes) for one stream root; v is the chunk's flat value array."""
    top = (int(np.bitwise_or.reduce(_root_box(v, root, dims), axis=None)) & int(_MAG)).bit_length() - 1
    if top < 0:
        return -1, b""
    words, sets, pix, lsp, stack, kids = _scratch(root, top, True)
    words, nbits = _code(v, dims, levels, groups, root, top, True, words, 0, sets, pix, lsp, stack, kids)
    return top, words[: (nbits + 63) // 64].astype("<u8").tobytes()[: (nbits + 7) // 8]


def decode_stream(
    data, top: int, v: np.ndarray, dims: np.ndarray, levels: np.ndarray, groups: np.ndarray, root: np.ndarray
) -> bool:
    """Fill v inside the root box; False when the bytes do not hold exactly one stream."""
    if top < 0:
        return len(data) == 0
    nbytes = len(data)
    words = np.zeros(nbytes // 8 + 2, np.uint64)
    words.view(np.uint8)[:nbytes] = np.frombuffer(data, np.uint8)
    if not np.little_endian:  # pragma: no cover - big-endian hosts
        words = words.byteswap()
    _, sets, pix, lsp, stack, kids = _scratch(root, top, False)
    _, pos = _code(v, dims, levels, groups, root, top, False, words, 8 * nbytes, sets, pix, lsp, stack, kids)
    return (pos + 7) // 8 == nbytes
