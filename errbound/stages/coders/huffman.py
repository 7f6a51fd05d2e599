"""Canonical Huffman coding of integer quantization codes (the SZ3-style entropy stage).

Blob layout (varint = unsigned LEB128):

* byte 0: block type. ``0`` empty, ``1`` a single distinct symbol, ``2`` Huffman-coded,
  ``3`` in parts (stage version 2).
* varint symbol count.
* type 1: varint symbol; nothing else (a constant array costs a few bytes in total).
* type 2: varint number of used symbols ``m`` (>= 2); then ``m`` varints, one per used symbol
  in increasing symbol order, each ``(gap << 5) | (length - 1)`` where ``gap`` is the number
  of unused symbols skipped since the previous used one; then varint bit count ``nbits``;
  then exactly ``ceil(nbits / 8)`` bytes of codes, MSB first, zero padded.
* type 3: varint part count ``k`` (2..64); then per part a varint byte length and a block of
  type 0-2 of that length: the symbols in consecutive runs, each with its own code table
  (the levels of an interpolation differ in spread: one table per level is 2 % smaller on
  the shared fields). The parts' symbol counts add up to the block's.

Codes are canonical (ordered by length, then symbol), so the lengths define them fully.
Lengths are capped at 32 so one code plus < 32 pending bits always fits a uint64.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from ...errors import CorruptStreamError, UnsupportedInputError
from ...jit import kernel
from ...stage import Stage
from . import varint
from .huffman_decoding import MAX_ALPHABET, MAX_CODE_LENGTH, coded_error, decode_coded

__all__ = [
    "Huffman",
    "encode",
    "decode",
    "encoded_size_estimate",
    "histogram",
    "MAX_ALPHABET",
    "MAX_CODE_LENGTH",
    "MAX_PARTS",
]

# Counts of constant blocks are unbounded by the payload size; refuse absurd ones rather
# than attempt a petabyte allocation from a corrupt header.
MAX_COUNT = 1 << 40

_EMPTY, _SINGLE, _HUFFMAN = 0, 1, 2
IN_PARTS = 3  # block type 3, written by .huffman_runs
MAX_PARTS = 64  # more than the levels of any interpolation (a level halves the stride)


@dataclass
class Huffman(Stage):
    """Stage: canonical Huffman coding of symbols below ``alphabet``. ``in_parts`` (not a
    stored parameter: the block says so) marks codes coded in parts, which need version 2:
    its record says version 2 then, and stays version 1, byte for byte, otherwise."""

    name = "huffman"
    version = 2  # v2: block type 3 (in parts)

    alphabet: int

    def __post_init__(self):
        self.alphabet = int(self.alphabet)
        self.in_parts = False

    def record(self) -> dict:
        return {**super().record(), "version": 2 if self.in_parts else 1}

    def loaded_from(self, version: int) -> None:
        self.in_parts = version >= 2  # a version-1 record's block may not be in parts


_jit = kernel
_U32 = np.uint64(32)
_WINDOW = 2048  # symbols around the crowd that _histogram counts into four interleaved tables


# ----------------------------------------------------------------------------- kernels


@_jit
def _histogram(symbols, alphabet_size):
    """(counts of the symbols lo..hi, lo, -1), or (_, _, index of the first symbol outside
    the alphabet). Counts only the range in use: a first pass finds it (cheaper than
    clearing and scanning 65536 counters on a small chunk: 47 -> 10 us at 64 KiB)."""
    n = symbols.size
    lo, hi = np.int64(alphabet_size), np.int64(-1)
    for i in range(n):
        s = np.int64(symbols[i])
        lo = min(lo, s)
        hi = max(hi, s)
    if lo < 0 or hi >= alphabet_size:
        for i in range(n):
            s = np.int64(symbols[i])
            if s < 0 or s >= alphabet_size:
                return np.zeros(0, np.int64), 0, i
    width = max(hi - lo + 1, 0)
    # A few codes dominate at loose bounds: counting them into one counter waits on its own
    # last increment every time. Four interleaved tables of a window around the crowd break
    # that chain (echam5 at rel 1e-2: 1.7 -> 0.65 ns per code); they pay off while they stay
    # in L1, so codes outside the window (a wide range is mostly a few far outliers) go to
    # one table over the whole range.
    window = min(width, _WINDOW)
    # the window is centred on the densest of 31 symbols spread over the input (the one
    # with the most others within half a window): the mean would follow far outliers (the
    # zero code of unpredictable values) out of the crowd; no sort (it compiles slowly)
    picks = np.empty(min(n, 31), np.int64)
    for k in range(picks.size):
        picks[k] = symbols[k * n // picks.size]
    centre, best = lo, -1
    for a in range(picks.size):
        near = 0
        for b in range(picks.size):
            near += abs(picks[b] - picks[a]) <= window // 2
        if near > best:
            centre, best = picks[a], near
    start = min(max(centre - window // 2, lo), hi - window + 1)
    c4 = np.zeros(4 * window, np.int64)
    c = np.zeros(width, np.int64)
    # numba tests a signed index for a negative value (Python's wrap-around) on every
    # access; an unsigned one is used as it is. Every index here is in range.
    uwindow = np.uint64(window)
    m = n - n % 4
    w1, w2, w3 = uwindow, uwindow + uwindow, uwindow + uwindow + uwindow
    for i in range(0, m, 4):
        s0, s1, s2, s3 = (
            np.int64(symbols[i]),
            np.int64(symbols[i + 1]),
            np.int64(symbols[i + 2]),
            np.int64(symbols[i + 3]),
        )
        d0, d1, d2, d3 = np.uint64(s0 - start), np.uint64(s1 - start), np.uint64(s2 - start), np.uint64(s3 - start)
        if d0 < uwindow and d1 < uwindow and d2 < uwindow and d3 < uwindow:  # below the window wraps to huge
            c4[d0] += 1
            c4[d1 + w1] += 1
            c4[d2 + w2] += 1
            c4[d3 + w3] += 1
        else:
            c[np.uint64(s0 - lo)] += 1
            c[np.uint64(s1 - lo)] += 1
            c[np.uint64(s2 - lo)] += 1
            c[np.uint64(s3 - lo)] += 1
    for i in range(m, n):
        c[np.uint64(np.int64(symbols[i]) - lo)] += 1
    offset = start - lo
    for j in range(window):
        c[offset + j] += c4[j] + c4[window + j] + c4[2 * window + j] + c4[3 * window + j]
    return c, lo, -1


@_jit
def _minimum_redundancy_depths(w):
    """Huffman depths for weights sorted ascending, computed in place (Moffat & Katajainen
    1995): O(n), no heap, no allocation. Returns depths, non-increasing along ``w``."""
    n = w.size
    w[0] += w[1]
    root, leaf = 0, 2
    # Pass 1: w[nxt] becomes an internal node weight; merged nodes store parent indices.
    for nxt in range(1, n - 1):
        if leaf >= n or w[root] < w[leaf]:
            w[nxt] = w[root]
            w[root] = nxt
            root += 1
        else:
            w[nxt] = w[leaf]
            leaf += 1
        if leaf >= n or (root < nxt and w[root] < w[leaf]):
            w[nxt] += w[root]
            w[root] = nxt
            root += 1
        else:
            w[nxt] += w[leaf]
            leaf += 1
    # Pass 2: parent pointers -> internal node depths.
    w[n - 2] = 0
    for nxt in range(n - 3, -1, -1):
        w[nxt] = w[w[nxt]] + 1
    # Pass 3: internal node depths -> leaf depths.
    avail, depth, root, nxt = 1, 0, n - 2, n - 1
    while avail > 0:
        used = 0
        while root >= 0 and w[root] == depth:
            used += 1
            root -= 1
        while avail > used:
            w[nxt] = depth
            nxt -= 1
            avail -= 1
        avail = 2 * used
        depth += 1
    return w


# The code lengths concern only the used symbols (a few hundred, at most 2**20), so they are
# found with numpy here around the O(n) depth kernel; the table bytes and the canonical codes
# are loops in kernels (as numpy calls they cost 40 us per block, most of a 16 KiB chunk's
# entropy coding).


def _code_lengths(counts: np.ndarray, max_len: int) -> np.ndarray:
    """Length-limited Huffman code lengths (uint8 per symbol, 0 = unused); >= 2 used symbols."""
    counts = np.asarray(counts, np.int64)
    used = np.flatnonzero(counts)
    # Stable sort: ties keep symbol order, so the result never depends on the platform.
    order = used[np.argsort(counts[used], kind="stable")]
    return lengths_in_order(order, length_counts(counts[order], max_len), counts.size)


def lengths_in_order(order: np.ndarray, per_length: list[int], size: int) -> np.ndarray:
    """Code lengths (uint8 per symbol index below ``size``, 0 = unused) for the symbols at
    ``order`` (by ascending count) and ``per_length`` codes of each length: the most
    frequent first gets the shortest code."""
    lens = np.zeros(size, np.uint8)
    lens[order[::-1]] = np.repeat(np.arange(len(per_length), dtype=np.uint8), per_length)[: order.size]
    return lens


def length_counts(ascending: np.ndarray, max_len: int) -> list[int]:
    """How many codes of each length (index) a length-limited Huffman code gives weights
    sorted ascending (>= 2 of them); the most frequent take the shortest."""
    depths = _minimum_redundancy_depths(ascending.astype(np.int64))  # a copy: computed in place
    top = int(depths[0])
    bl = np.bincount(depths, minlength=max(top, max_len) + 1).tolist()
    # Length limiting (JPEG Annex K.3): move a sibling pair off the deepest level; one takes
    # the parent's place, the other pairs with the deepest shallower leaf. Kraft sum stays 1.
    for i in range(top, max_len, -1):
        while bl[i] > 0:
            j = i - 2
            while bl[j] == 0:
                j -= 1
            bl[i] -= 2
            bl[i - 1] += 1
            bl[j + 1] += 2
            bl[j] -= 1
    return bl


@_jit
def _table_kernel(lens, counts, lo, out):
    """(bytes written to ``out``, used symbol count, bit stream length): the table varints
    for code lengths ``lens`` of symbols lo, lo + 1, ...: per used symbol
    ``(gap << 5) | (length - 1)``, LEB128 (at most 4 bytes: gap < 2**20, length <= 32)."""
    pos = m = nbits = 0
    prev = -1 - lo
    for s in range(lens.size):
        if lens[s]:
            v = ((s - prev - 1) << 5) | (np.int64(lens[s]) - 1)
            while v >= 128:
                out[pos] = np.uint8((v & 0x7F) | 0x80)
                v >>= 7
                pos += 1
            out[pos] = np.uint8(v)
            pos += 1
            prev = s
            m += 1
            nbits += counts[s] * np.int64(lens[s])
    return pos, m, nbits


def _table_varints(lens: np.ndarray, counts: np.ndarray, lo: int = 0):
    """Returns (table bytes, used symbol count, bit stream length); the tables start at symbol ``lo``."""
    out = np.empty(4 * lens.size, np.uint8)  # allocated here: one np.empty less to compile
    size, m, nbits = _table_kernel(lens, np.asarray(counts, np.int64), np.int64(lo), out)
    return out[:size], m, nbits


@_jit
def _pack(symbols, lo, lens, words):
    """Write the canonical codes of ``symbols`` (lengths ``lens`` indexed from symbol ``lo``)
    into ``words`` as 32-bit words, most significant bit first, the last one left-aligned
    (sized by the caller: one word per 32 bits, plus one). Canonical: by length, then
    symbol, so a length's codes are handed out in symbol order from that length's first code."""
    per_length = np.zeros(MAX_CODE_LENGTH + 2, np.int64)
    for s in range(lens.size):
        per_length[lens[s]] += 1
    per_length[0] = 0
    first = np.zeros(MAX_CODE_LENGTH + 2, np.int64)
    for n in range(1, MAX_CODE_LENGTH + 1):
        first[n + 1] = (first[n] + per_length[n]) << 1
    codes = np.zeros(lens.size, np.int64)  # int64 like every other table here: one np.zeros to compile
    for s in range(lens.size):
        if lens[s]:
            codes[s] = first[lens[s]]
            first[lens[s]] += 1
    # Branch-free: every code stores the word that would be flushed and moves on only when
    # 32 bits are complete (a store the next code overwrites costs less than the mispredicted
    # flush branch: 1.6 -> 0.9 ns per code on the turbulence field at rel 1e-3). At most 31
    # pending bits plus a code of at most 32 fit the uint64.
    acc, pending, w = np.uint64(0), np.uint64(0), np.uint64(0)
    five = np.uint64(5)
    for i in range(symbols.size):
        s = np.uint64(np.int64(symbols[i]) - lo)  # unsigned: no wrap-around test (see _histogram)
        n = np.uint64(lens[s])
        acc = (acc << n) | np.uint64(codes[s])
        pending += n
        full = pending >> five
        pending -= full << five
        words[w] = np.uint32((acc >> pending) & np.uint64(0xFFFFFFFF))
        w += full
    words[w] = np.uint32((acc << (_U32 - pending)) & np.uint64(0xFFFFFFFF))  # the tail, left-aligned


@_jit
def _entropy_bits(symbols, alphabet_size):
    """The Shannon entropy of the symbols in bits (sum of c * log2(n / c) over their
    counts), or -1.0 where one is outside the alphabet. One dispatch: a candidate sized
    on a 64 KiB chunk's sample spent 14 us in the histogram's checks and six numpy calls
    on its counts, this 4 us."""
    counts, lo, bad = _histogram(symbols, alphabet_size)
    if bad >= 0:
        return -1.0
    n = np.float64(symbols.size)
    bits = 0.0
    for c in counts:
        if c > 0:
            bits += c * np.log2(n / c)
    return bits


# ----------------------------------------------------------------------------- helpers


def _read_varint(data: np.ndarray, pos: int, what: str) -> tuple[int, int]:
    return varint.read(data, pos, what, "huffman block")


def _histogram_checked(symbols, alphabet_size: int) -> tuple[np.ndarray, np.ndarray, int]:
    a = np.asarray(symbols)
    if a.ndim != 1 or a.dtype.kind not in "iu":
        raise UnsupportedInputError(f"symbols must be a 1-D integer array, got {a.dtype} with ndim={a.ndim}")
    if a.dtype != np.int32 and a.dtype != np.uint32:
        a = a.astype(np.int64)  # out-of-range values (even wrapped uint64) still fail the check
    a = np.ascontiguousarray(a)
    alphabet_size = int(alphabet_size)
    if not 1 <= alphabet_size <= MAX_ALPHABET:
        raise UnsupportedInputError(f"alphabet_size must be in [1, {MAX_ALPHABET}], got {alphabet_size}")
    counts, lo, bad = _histogram(a, alphabet_size)
    if bad >= 0:
        raise UnsupportedInputError(f"symbol {a[bad]} at index {bad} is outside [0, {alphabet_size})")
    return a, counts, int(lo)


# ----------------------------------------------------------------------------- public API


def encode(symbols: np.ndarray, alphabet_size: int) -> bytes:
    """Huffman-code ``symbols`` (1-D integer array, values in ``[0, alphabet_size)``).

    ``alphabet_size`` may be up to ``2**20``. Returns a self-contained blob (see the module
    docstring); the output depends only on the input values, never on the machine.
    """
    return _encode(symbols, alphabet_size, MAX_CODE_LENGTH, False)


def histogram(symbols: np.ndarray, alphabet_size: int) -> tuple[np.ndarray, int]:
    """(counts of the symbols lo..hi, lo) for a 1-D integer array with values in
    ``[0, alphabet_size)``: the counts :func:`encode` builds its code from."""
    _, counts, lo = _histogram_checked(symbols, alphabet_size)
    return counts, lo


def entropy_bytes(symbols: np.ndarray, alphabet_size: int) -> float:
    """The Shannon entropy of a 1-D integer array with values in ``[0, alphabet_size)``, in
    bytes: what an ideal coder of their frequencies would need (policies size candidates
    by it). The kernels' int32 codes go straight to the kernel."""
    alphabet_size = int(alphabet_size)
    if not (isinstance(symbols, np.ndarray) and symbols.dtype == np.int32 and symbols.ndim == 1) or not (
        1 <= alphabet_size <= MAX_ALPHABET
    ):
        symbols, _, _ = _histogram_checked(symbols, alphabet_size)  # checked (raises), converted
    if symbols.size == 0:
        return 0.0
    bits = _entropy_bits(np.ascontiguousarray(symbols), alphabet_size)
    if bits < 0:  # a symbol outside the alphabet: named
        _histogram_checked(symbols, alphabet_size)
    return bits / 8


def encoded_size_estimate(symbols: np.ndarray, alphabet_size: int) -> int:
    """Exact ``len(encode(symbols, alphabet_size))`` without packing any bits.

    Costs a histogram plus code-length construction, so it is cheap enough to compare
    candidate predictors on samples.
    """
    return _encode(symbols, alphabet_size, MAX_CODE_LENGTH, True)


def one_symbol_block(count: int, symbol: int | None) -> bytes:
    """Block type 1 (``symbol`` ``count`` times), or type 0 where there is none."""
    return (
        bytes([_EMPTY if symbol is None else _SINGLE])
        + varint.encode(count)
        + (b"" if symbol is None else varint.encode(symbol))
    )


def _encode(symbols, alphabet_size: int, max_len: int, size_only: bool):
    a, counts, lo = _histogram_checked(symbols, alphabet_size)
    used = np.flatnonzero(counts)
    if used.size <= 1:
        blob = one_symbol_block(a.size, int(used[0]) + lo if used.size else None)
        return len(blob) if size_only else blob
    if used.size > 1 << max_len:
        raise ValueError(f"{used.size} symbols cannot have codes of at most {max_len} bits")
    return coded_block(a, lo, _code_lengths(counts, max_len), counts, size_only)


def coded_block(a: np.ndarray, lo: int, lens: np.ndarray, counts: np.ndarray, size_only: bool):
    """Block type 2 of the symbols ``a`` with code lengths ``lens`` (and ``counts``) of the
    symbols lo, lo + 1, ...; or its size."""
    table, m, nbits = _table_varints(lens, counts, lo)
    head = bytes([_HUFFMAN]) + varint.encode(a.size) + varint.encode(m) + table.tobytes() + varint.encode(nbits)
    size = len(head) + (nbits + 7) // 8
    if size_only:
        return size
    words = np.empty(nbits // 32 + 1, np.uint32)
    _pack(a, np.int64(lo), lens, words)
    # big-endian words are the bytes MSB first: swapped in place on a little-endian machine,
    # then joined to the head in one copy
    if sys.byteorder == "little":
        words.byteswap(inplace=True)
    return head + words.view(np.uint8)[: (nbits + 7) // 8].data


def _as_bytes(blob) -> np.ndarray:
    if isinstance(blob, np.ndarray):
        return np.ascontiguousarray(blob).reshape(-1).view(np.uint8)
    return np.frombuffer(blob, np.uint8)


def decode(
    blob: bytes | memoryview | np.ndarray,
    count: int | None = None,
    alphabet_size: int | None = None,
    out: np.ndarray | None = None,
    parts: bool = True,
) -> np.ndarray:
    """Decode a blob produced by :func:`encode` into an int32 array.

    ``count`` and ``alphabet_size``, when given, are checked against the blob: the symbol
    count must match and every stored symbol must lie in ``[0, alphabet_size)``. Any malformed,
    truncated or inconsistent blob raises :class:`~errbound.errors.CorruptStreamError`; the
    decoder never reads outside the blob. Undetected corruption still yields an array of the
    stored length whose values are symbols of the stored table (so within ``alphabet_size``).
    ``out``: a 1-D int32 array of at least the symbol count to decode a non-empty block
    into (a reused buffer saves the page faults of a fresh one); the result is then a view
    of it. An unsuitable ``out`` is not used. ``parts=False`` refuses a block in parts (a
    stream whose huffman record is version 1 holds none).
    """
    limit = MAX_ALPHABET if alphabet_size is None else min(int(alphabet_size), MAX_ALPHABET)
    data = _as_bytes(blob)
    if data.size == 0:
        raise CorruptStreamError("huffman block is empty")
    head = blob if isinstance(blob, bytes) else data  # indexing bytes costs less than an array
    kind = int(head[0])
    n, pos = _read_varint(head, 1, "symbol count")
    if count is not None and n != count:
        raise CorruptStreamError(f"huffman block holds {n} symbols, expected {count}")
    if n > MAX_COUNT:
        raise CorruptStreamError(f"huffman block claims an implausible {n} symbols")
    if kind == _EMPTY:
        if n != 0 or pos != data.size:
            raise CorruptStreamError("malformed empty huffman block")
        return np.empty(0, np.int32)
    if kind == _SINGLE:
        sym, pos = _read_varint(data, pos, "symbol")
        if sym >= limit or pos != data.size or n == 0:
            raise CorruptStreamError("malformed single-symbol huffman block")
        result = _output(out, n)
        result.fill(sym)
        return result
    if kind == IN_PARTS:
        if not parts:
            raise CorruptStreamError("huffman block in parts under a version-1 huffman record")
        return _decode_parts(data, pos, n, limit, out)
    if kind != _HUFFMAN:
        raise CorruptStreamError(f"unknown huffman block type {kind}")
    # n <= nbits <= 8 * (bytes left) in any block that passes the kernel's checks: a larger
    # claimed count fails them before a symbol is written, and must not allocate first
    out = _output(out, n if n <= 8 * data.size else 0)
    err, a, b = decode_coded(data, pos, n, limit, out)
    if err:
        raise CorruptStreamError(coded_error(err, a, b))
    return out


def _decode_parts(data: np.ndarray, pos: int, n: int, limit: int, out: np.ndarray | None) -> np.ndarray:
    """The parts of a type-3 block (from its part count on), each decoded into its run of
    the result; every part is a block of type 0-2 inside the stated length. The parts are
    all read and checked before the result is allocated."""
    k, pos = _read_varint(data, pos, "part count")
    if not 2 <= k <= MAX_PARTS:
        raise CorruptStreamError(f"huffman block claims {k} parts (2..{MAX_PARTS})")
    parts, total = [], 0
    for _ in range(k):
        length, pos = _read_varint(data, pos, "part length")
        if length > data.size - pos:
            raise CorruptStreamError(f"huffman part of {length} bytes overruns the block")
        part = data[pos : pos + length]
        pos += length
        if length == 0 or int(part[0]) not in (_EMPTY, _SINGLE, _HUFFMAN):
            raise CorruptStreamError("huffman part is not a block of type 0, 1 or 2")
        count, _ = _read_varint(part, 1, "part symbol count")
        if int(part[0]) == _HUFFMAN and count > 8 * length:  # a code is at least a bit
            raise CorruptStreamError(f"huffman part claims {count} symbols in {length} bytes")
        parts.append((part, count))
        total += count
    if total != n:
        raise CorruptStreamError(f"huffman parts hold {total} of the block's {n} symbols")
    if pos != data.size:
        raise CorruptStreamError("huffman block has bytes after its parts")
    out = _output(out, n)
    done = 0
    for part, count in parts:
        decode(part, count, limit, out=out[done : done + count], parts=False)  # in place: a view of out
        done += count
    return out


def _output(out: np.ndarray | None, size: int) -> np.ndarray:
    """``out[:size]`` where ``out`` can take the symbols (1-D, C-contiguous int32 of at least
    ``size``), else a new array."""
    if out is None or out.dtype != np.int32 or out.ndim != 1 or out.size < size or not out.flags.c_contiguous:
        return np.empty(size, np.int32)
    return out[:size]
