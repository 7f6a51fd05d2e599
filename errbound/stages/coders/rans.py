"""Context-modelled rANS coding of quantization codes (an alternative to Huffman + zstd).

Quantization codes are not independent: a large residual is followed by large ones (edges,
rough regions), a run of zero residuals by more. This coder conditions each code on the two
codes before it in the stream: the context is the bucket ``min(bit_length(a1 + a2), 7)`` of
the sum of their distances ``a`` from ``center`` (the zero-residual code; the
unpredictable code 0 counts as a distance of 9). Each of the 8 contexts has its own static
frequency table (normalized to ``2**precision``), and one rANS state (32 bits, byte-wise
renormalization, encoded backwards) codes the stream. On the shared fields the conditional
entropy is 0-14 % below what Huffman + zstd reach; ``sz`` keeps whichever is smaller.

Blob layout (varint = unsigned LEB128):

* byte 0: ``0`` empty, ``1`` a single distinct symbol (varint count, varint symbol), ``2`` rANS,
  ``3`` rANS in lanes (stage version 2; see :mod:`.rans_lanes`).
* type 2: varint count ``n``; varint ``precision``; varint used-symbol count ``m``; ``m``
  varints of symbol gaps (as Huffman's table, without lengths); then per context a varint
  flag (0: unused) and for a used context ``m`` varint frequencies summing to
  ``2**precision``; varint byte count of the payload; the payload (its first 4 bytes are the
  final encoder state, big-endian).
* type 3: as type 2 up to the frequency tables (``precision`` at most 15); then LANES
  varint byte counts, one per lane, and the lanes' payloads in order. Lane ``j`` codes
  ``n // LANES`` codes from ``j * (n // LANES)`` (the last lane the rest) with its context
  history starting afresh; its payload is 16-bit little-endian words, the first two the
  final encoder state (high word first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...errors import CorruptStreamError, UnsupportedInputError
from ...jit import kernel
from ...stage import Stage
from . import rans_tables, varint
from .rans_lanes import LANES, MAX_LANE_PRECISION, decode_lanes, encode_lane, lane_bounds

CONTEXTS = 8
UNPREDICTABLE_DISTANCE = 9
_L = 1 << 23  # lower bound of the normalized state
MIN_PRECISION, MAX_PRECISION = 12, 20
MAX_SYMBOLS = 1 << 16  # distinct symbols (16 bits of the decoder's table entry)
MAX_COUNT = 1 << 40
MIN_LANE_CODES = 1024  # below it, three more states and sizes (about 16 bytes) are not worth it
_EMPTY, _SINGLE, _RANS, _RANS_LANES = 0, 1, 2, 3


@dataclass
class Rans(Stage):
    """Stage: context-modelled rANS coding of symbols below ``alphabet`` whose zero residual
    is ``center``."""

    name = "rans"
    version = 2  # v2: block type 3 (in lanes)

    alphabet: int
    center: int

    def __post_init__(self):
        self.alphabet = int(self.alphabet)
        self.center = int(self.center)
        # not a stored parameter (the block says so): whether the block is in lanes, which
        # needs version 2; a record says version 2 then, and stays version 1 otherwise
        self.in_lanes = False

    def record(self) -> dict:
        return {**super().record(), "version": 2 if self.in_lanes else 1}

    def loaded_from(self, version: int) -> None:
        self.in_lanes = version >= 2  # a version-1 record's block may not be in lanes

    def encode(self, symbols: np.ndarray, model: ContextModel | None = None) -> bytes:
        """The block of ``symbols`` (see :func:`encode`; ``model``: their :func:`context_model`,
        made already); the record then says whether it is in lanes."""
        blob = encode(symbols, self.alphabet, self.center, model=model)
        self.in_lanes = blob[0] == _RANS_LANES
        return blob

    def decode(self, blob, count: int) -> np.ndarray:
        return decode(blob, count, self.alphabet, self.center, lanes=self.in_lanes)


# ----------------------------------------------------------------------------- kernels


# the context of two distances, each capped at 63 (so their sum is below 128)
_PAIR_BUCKETS = np.minimum([int(v).bit_length() for v in range(128)], CONTEXTS - 1).astype(np.int64)


@kernel(inline="always")
def _bucket(a1, a2):
    return _PAIR_BUCKETS[a1 + a2]


@kernel(inline="always")
def _distance(s, center):
    """How far code ``s`` is from the zero residual, capped at 63 (the unpredictable code 0
    counts as UNPREDICTABLE_DISTANCE)."""
    if s == 0:
        return UNPREDICTABLE_DISTANCE
    return min(abs(s - center), 63)


@kernel(inline="always")
def _renormalization_bytes(precision):
    """The most bytes one symbol moves between state and stream. The decoder's state is
    at least L = 2**23 before a symbol and at least f * 2**(23 - precision) after it, so
    refilling L takes two bytes when f >= 2**(precision - 16) and three for any f up to
    precision 24. The encoder mirrors this. (Up to 0.3.0 the decoder read at most two: a
    stream of precision 17 with a symbol of frequency 1 did not decode. The encoder
    always wrote it correctly; those streams decode now.)"""
    return 2 if precision <= 16 else 3


def _reciprocals(freq: np.ndarray, cum: np.ndarray, precision: int):
    """Tables that let the encoder divide its state x by a frequency f with a multiply:
    after renormalization x < 2**31, and for 2**(t-1) < f <= 2**t the reciprocal
    r = ceil(2**(t+31) / f) (< 2**32) gives x // f = (x * r) >> (31 + t) for every such x
    (exact division by a constant, Alverson 1991; ryg_rans does the same). f = 1 takes
    r = 2**32 - 1, which gives x - 1 for 0 < x < 2**32, and 2**precision - 1 more bias.
    Returns (r, shift, bias, 2**precision - f), uint64, shaped like ``freq``."""
    f = np.maximum(freq, 1).astype(np.uint64)
    t = np.ceil(np.log2(f.astype(np.float64))).astype(np.uint64)  # exact: f < 2**21
    one = f == 1
    rcp = np.where(one, np.uint64((1 << 32) - 1), ((np.uint64(1) << (t + np.uint64(31))) + f - np.uint64(1)) // f)
    shift = np.where(one, np.uint64(32), t + np.uint64(31))
    bias = cum.astype(np.uint64) + np.where(one, np.uint64((1 << precision) - 1), np.uint64(0))
    return rcp, shift, bias, np.uint64(1 << precision) - f


@kernel
def _contexts(symbols, index, m, center, bounds):
    """(context of every symbol, counts per (context, used-symbol index)), the context
    history starting afresh at each of ``bounds`` (lanes; a type 2 block is one lane)."""
    contexts = np.empty(symbols.size, np.uint8)
    counts = np.zeros((CONTEXTS, m), np.int64)
    for lane in range(bounds.size - 1):
        a1, a2 = 0, 0
        for i in range(bounds[lane], bounds[lane + 1]):
            s = np.int64(symbols[i])
            k = _bucket(a1, a2)
            contexts[i] = k
            counts[k, index[s]] += 1
            a2 = a1
            a1 = _distance(s, center)
    return contexts, counts


@kernel
def _encode(symbols, index, freq, rcp, rcp_shift, bias, complement, precision, center, out):
    """rANS-encode backwards into ``out`` (written from the end); returns the first byte used."""
    n = symbols.size
    ctx = np.empty(n, np.uint8)
    a1, a2 = 0, 0
    for i in range(n):
        s = np.int64(symbols[i])
        ctx[i] = _bucket(a1, a2)
        a2 = a1
        a1 = _distance(s, center)
    x = np.uint64(_L)
    pos = out.size
    steps = _renormalization_bytes(precision)
    for i in range(n - 1, -1, -1):
        k = ctx[i]
        j = index[np.int64(symbols[i])]
        f = np.uint64(freq[k, j])
        limit = np.uint64((_L >> precision) << 8) * f
        # as many bytes as the decoder reads back (see _renormalization_bytes), without a
        # branch, as in the decoder: the byte below pos is scratch until pos moves over it
        for _ in range(steps):
            more = x >= limit
            out[pos - 1] = np.uint8(x & np.uint64(0xFF))
            pos -= 1 if more else 0
            x = (x >> np.uint64(8)) if more else x
        # x' = (x // f) * 2**precision + x % f + cum = x + q * (2**precision - f) + cum, with
        # q = x // f from a multiply (see _reciprocals; the division was most of the time)
        q = (x * rcp[k, j]) >> rcp_shift[k, j]
        x += bias[k, j] + q * complement[k, j]
    for b in range(4):
        pos -= 1
        out[pos] = np.uint8((x >> np.uint64(8 * b)) & np.uint64(0xFF))
    return pos


@kernel
def _decode(data, pos, slots, symbols_of, precision, out):
    """Decode len(out) symbols from data[pos:] (padded with 8 zero bytes past its end) with
    one packed entry per (context, slot): symbol index << 48 | capped distance << 42 |
    frequency << 21 | (slot - cumulative frequency); all ones for a context without a table.
    The next context comes from the entry itself, and renormalization is branch-free: the
    loop's dependency chain is a few operations long. Returns 0, 4 for a stream that does not
    end where its last symbol does (truncated, padded or corrupt), or 5 for a context
    without a table."""
    end = data.size - 8
    if pos + 4 > end:
        return 4
    x = np.uint64(0)
    for b in range(4):
        x = (x << np.uint64(8)) | np.uint64(data[pos + b])
    pos += 4
    mask = np.uint64((1 << precision) - 1)
    shift = np.uint64(precision)
    low = np.uint64(_L)
    field = np.uint64((1 << 21) - 1)
    missing = np.uint64(0xFFFFFFFFFFFFFFFF)
    a1 = np.uint64(0)
    a2 = np.uint64(0)
    steps = _renormalization_bytes(precision)
    for i in range(out.size):
        e = slots[np.uint64(_PAIR_BUCKETS[a1 + a2]), x & mask]
        if e == missing:
            return 5
        x = ((e >> np.uint64(21)) & field) * (x >> shift) + (e & field)
        for _ in range(steps):
            more = x < low
            x = (x << np.uint64(8)) | np.uint64(data[np.uint64(pos)]) if more else x
            pos += 1 if more else 0
            if pos > end:
                return 4
        out[np.uint64(i)] = symbols_of[e >> np.uint64(48)]
        a2 = a1
        a1 = (e >> np.uint64(42)) & np.uint64(63)
    return 0 if pos == end and x == low else 4


# ----------------------------------------------------------------------------- tables


def _varints(values) -> bytes:
    """LEB128 bytes of non-negative values below 2**28, concatenated (vectorized)."""
    values = np.asarray(values, np.int64).reshape(-1)
    if values.size == 0:
        return b""
    sizes = 1 + (values >= 1 << 7) + (values >= 1 << 14) + (values >= 1 << 21)
    ends = np.cumsum(sizes)
    which = np.repeat(np.arange(values.size), sizes)
    k = np.arange(int(ends[-1])) - np.repeat(ends - sizes, sizes)
    out = ((values[which] >> (7 * k)) & 0x7F) | np.where(k + 1 < sizes[which], 0x80, 0)
    return out.astype(np.uint8).tobytes()


class _Reader:
    def __init__(self, data: np.ndarray, pos: int):
        self.data, self.pos = data, pos

    def varints(self, count: int, what: str) -> np.ndarray:
        """``count`` varints of at most 4 bytes each."""
        out = np.empty(count, np.int64)
        status, self.pos = rans_tables.read_varints(self.data, self.pos, count, out)
        _raise_for(status, what)
        return out

    def varint(self, what: str) -> int:
        v, self.pos = varint.read(self.data, self.pos, what, "rans block")
        return v


def normalize(counts: np.ndarray, total: int) -> np.ndarray:
    """Frequencies summing to ``total`` with every counted symbol >= 1 (deterministic)."""
    counts = counts.astype(np.int64)
    used = counts > 0
    freq = np.where(used, np.maximum(1, counts * total // max(int(counts.sum()), 1)), 0)
    excess = int(freq.sum()) - total
    order = np.argsort(-counts, kind="stable")  # largest first take the correction
    while excess != 0:
        for j in order:
            if excess == 0 or not used[j]:
                break
            if excess > 0:
                give = min(excess, int(freq[j]) - 1)
                freq[j] -= give
                excess -= give
            else:
                freq[j] -= excess
                excess = 0
    return freq


def _in_lanes(count: int, precision: int) -> bool:
    return count >= MIN_LANE_CODES and precision <= MAX_LANE_PRECISION


def _precision(m: int) -> int:
    """Table size: 4096 slots (32 KiB per context) unless many symbols need more room."""
    return min(MAX_PRECISION, max(MIN_PRECISION, (2 * m - 1).bit_length()))


# ----------------------------------------------------------------------------- public API


@dataclass
class ContextModel:
    """What :func:`encode` builds before it codes: the distinct symbols, their table index and
    precision, the lanes' ``bounds``, every symbol's context and the counts per context (None
    where no table is built). Made once, it sizes (:func:`estimated_size`) and codes a block."""

    symbols: np.ndarray
    used: np.ndarray
    index: np.ndarray | None = None
    precision: int = 0
    bounds: np.ndarray | None = None
    contexts: np.ndarray | None = None
    counts: np.ndarray | None = None


def context_model(symbols: np.ndarray, alphabet: int, center: int, lanes: bool = True) -> ContextModel:
    """The :class:`ContextModel` of ``symbols`` (1-D, values in ``[0, alphabet)``): in lanes
    where ``lanes`` allows, there are at least MIN_LANE_CODES symbols and the table's
    precision is at most 15 bits (up to 16384 distinct symbols)."""
    a = np.ascontiguousarray(symbols, np.int32)
    if a.ndim != 1:
        raise UnsupportedInputError("symbols must be a 1-D integer array")
    if a.size == 0:
        return ContextModel(a, np.zeros(0, np.int64))
    lo, hi = int(a.min()), int(a.max())
    if lo < 0 or hi >= alphabet:
        raise UnsupportedInputError(f"symbols must lie in [0, {alphabet})")
    used = np.flatnonzero(np.bincount(a - lo)) + lo
    if not 2 <= used.size <= MAX_SYMBOLS:
        return ContextModel(a, used)
    index = np.zeros(hi + 1, np.int32)
    index[used] = np.arange(used.size, dtype=np.int32)
    precision = _precision(used.size)
    bounds = np.array(lane_bounds(a.size) if lanes and _in_lanes(a.size, precision) else [0, a.size], np.int64)
    contexts, counts = _contexts(a, index, used.size, center, bounds)
    return ContextModel(a, used, index, precision, bounds, contexts, counts)


def encode(
    symbols: np.ndarray, alphabet: int, center: int, lanes: bool = True, model: ContextModel | None = None
) -> bytes:
    """rANS-code ``symbols`` (1-D int32, values in ``[0, alphabet)``) with the context model
    of the module docstring, in lanes (type 3) or in one (type 2) as :func:`context_model`
    decides (``model``: the one of these symbols, made already). The output depends only
    on the input values."""
    m = context_model(symbols, alphabet, center, lanes) if model is None else model
    a, used = m.symbols, m.used
    if a.size == 0:
        return bytes([_EMPTY]) + _varints([0])
    if used.size == 1:
        return bytes([_SINGLE]) + _varints([a.size, used[0]])
    if used.size > MAX_SYMBOLS:
        raise ValueError(f"{used.size} distinct symbols are too many for the rans coder")
    precision, bounds, contexts, counts = m.precision, m.bounds, m.contexts, m.counts
    total = 1 << precision
    freq = np.zeros((CONTEXTS, used.size), np.int64)
    table = [np.array([a.size, precision, used.size]), np.diff(used, prepend=-1) - 1]
    for k in range(CONTEXTS):
        if counts[k].sum() == 0:
            table.append(np.zeros(1, np.int64))
            continue
        freq[k] = normalize(counts[k], total)
        table += [np.ones(1, np.int64), freq[k]]
    cum = np.zeros_like(freq)
    cum[:, 1:] = np.cumsum(freq, axis=1)[:, :-1]
    division = _reciprocals(freq, cum, precision)
    if bounds.size == 2:  # one lane: type 2
        # each symbol costs at most precision + 1 bits; plus the state
        out = np.empty(a.size * (precision + 8) // 8 + 16, np.uint8)
        payload = out[_encode(a, m.index, freq, *division, precision, center, out) :]
        return bytes([_RANS]) + _varints(np.concatenate(table)) + _varints([payload.size]) + payload.tobytes()
    payloads = []
    for first, end in zip(bounds[:-1], bounds[1:], strict=True):
        # a symbol moves at most one word; plus the state's two
        out = np.empty(end - first + 2, np.uint16)
        start = encode_lane(a[first:end], m.index, freq, contexts[first:end], *division, precision, out)
        payloads.append(out[start:].astype("<u2").tobytes())
    sizes = _varints([len(p) for p in payloads])
    return bytes([_RANS_LANES]) + _varints(np.concatenate(table)) + sizes + b"".join(payloads)


def estimated_size(symbols: np.ndarray, alphabet: int, center: int, model: ContextModel | None = None) -> float:
    """Bytes :func:`encode` would need, from the per-context entropies and the table: one
    counting pass, which ``model`` (then handed to :func:`encode`) spares the coder."""
    m = context_model(symbols, alphabet, center) if model is None else model
    used = m.used
    if used.size < 2 or used.size > MAX_SYMBOLS:
        return float("inf") if used.size > MAX_SYMBOLS else 8.0
    counts = m.counts.astype(np.float64)
    bits = 0.0
    tables = 2.0 * used.size
    for k in range(CONTEXTS):
        row = counts[k][counts[k] > 0]
        if row.size:
            bits -= float((row * np.log2(row / row.sum())).sum())
            tables += used.size * 1.2  # a varint per used symbol, mostly one byte
    return bits / 8 + tables + 16


def decode(
    blob, count: int | None = None, alphabet: int | None = None, center: int = 0, lanes: bool = True
) -> np.ndarray:
    """Decode a blob produced by :func:`encode` into int32 symbols; anything malformed raises
    :class:`~errbound.errors.CorruptStreamError`, and the decoder never reads outside the blob.
    ``lanes=False`` (a version-1 stage record) refuses a block in lanes."""
    data = np.frombuffer(blob, np.uint8) if not isinstance(blob, np.ndarray) else blob.reshape(-1).view(np.uint8)
    if data.size == 0:
        raise CorruptStreamError("rans block is empty")
    limit = alphabet if alphabet is not None else 1 << 20
    kind = int(data[0])
    r = _Reader(data, 1)
    n = r.varint("symbol count")
    if count is not None and n != count:
        raise CorruptStreamError(f"rans block holds {n} symbols, expected {count}")
    if n > MAX_COUNT:
        raise CorruptStreamError(f"rans block claims an implausible {n} symbols")
    if kind == _EMPTY:
        if n or r.pos != data.size:
            raise CorruptStreamError("malformed empty rans block")
        return np.empty(0, np.int32)
    if kind == _SINGLE:
        sym = r.varint("symbol")
        if sym >= limit or r.pos != data.size or n == 0:
            raise CorruptStreamError("malformed single-symbol rans block")
        return np.full(n, sym, np.int32)
    if kind == _RANS_LANES and not lanes:
        raise CorruptStreamError("rans block in lanes under a version-1 rans record")
    if kind not in (_RANS, _RANS_LANES):
        raise CorruptStreamError(f"unknown rans block type {kind}")
    precision = r.varint("precision")
    if not MIN_PRECISION <= precision <= MAX_PRECISION:
        raise CorruptStreamError(f"rans block: precision {precision}")
    m = r.varint("table size")
    if not 2 <= m <= min(MAX_SYMBOLS, data.size):
        raise CorruptStreamError(f"rans table claims {m} symbols")
    # the encoder derives the precision from the table size: holding the stream to it keeps
    # the decoder's tables proportional to the bytes it was given (a forged precision of 20
    # with two symbols would ask for 8 contexts x 2**20 slots)
    if precision != _precision(m):
        raise CorruptStreamError(
            f"rans block: precision {precision} for {m} symbols (the encoder uses {_precision(m)})"
        )
    if kind == _RANS_LANES and precision > MAX_LANE_PRECISION:
        raise CorruptStreamError(f"rans block in lanes with precision {precision} (at most {MAX_LANE_PRECISION})")
    symbols_of = np.cumsum(r.varints(m, "symbol table") + 1) - 1
    if symbols_of[-1] >= limit:
        raise CorruptStreamError(f"rans table holds symbol {symbols_of[-1]} outside [0, {limit})")
    total = 1 << precision
    slots = np.empty((CONTEXTS, total), np.uint64)
    distance = np.where(symbols_of == 0, UNPREDICTABLE_DISTANCE, np.abs(symbols_of - center))
    capped = np.minimum(distance, 63).astype(np.uint64)
    status, r.pos = rans_tables.build_slots(data, r.pos, total, capped, slots)
    _raise_for(status, "frequencies")
    out = np.empty(n, np.int32)
    if kind == _RANS_LANES:
        return _decode_in_lanes(r, data, slots, symbols_of, precision, out)
    size = r.varint("payload size")
    if size != data.size - r.pos:
        raise CorruptStreamError(f"rans payload of {size} bytes, {data.size - r.pos} present")
    padded = np.concatenate((data, np.zeros(8, np.uint8)))
    err = _decode(padded, r.pos, slots, symbols_of.astype(np.int32), precision, out)
    if err == 5:
        raise CorruptStreamError("rans block: a context without a frequency table")
    if err:
        raise CorruptStreamError("rans block: the payload does not decode to the symbol count (corrupt)")
    return out


def _raise_for(status: int, what: str) -> None:
    """The error of a table kernel's status (none for OK)."""
    messages = {
        rans_tables.TRUNCATED: f"rans block: {what} truncated or malformed",
        rans_tables.TOO_LONG: f"rans block: a varint of {what} is too long",
        rans_tables.FLAG_TRUNCATED: "rans block truncated while reading context flag",
        rans_tables.FLAG_TOO_LONG: "rans block: varint for context flag is too long",
        rans_tables.TABLE_TRUNCATED: "rans frequency table is truncated",
        rans_tables.BAD_SUM: "rans frequencies do not add up to the table size",
    }
    if status != rans_tables.OK:
        raise CorruptStreamError(messages[status])


def _decode_in_lanes(r: _Reader, data: np.ndarray, slots, symbols_of, precision: int, out: np.ndarray):
    sizes = [r.varint("lane size") for _ in range(LANES)]
    if any(size < 4 or size % 2 for size in sizes):
        raise CorruptStreamError(f"rans lanes of {sizes} bytes (each an even count, at least 4)")
    if sum(sizes) != data.size - r.pos:
        raise CorruptStreamError(f"rans lanes of {sum(sizes)} bytes, {data.size - r.pos} present")
    # one zero word past the end: a lane reads at most one word past its own end before the
    # decoder stops it
    words = np.zeros(sum(sizes) // 2 + 1, np.uint16)
    words[:-1] = data[r.pos :].view("<u2")
    ends = np.cumsum(sizes) // 2
    starts = ends - np.array(sizes) // 2
    bounds = np.array(lane_bounds(out.size), np.int64)
    err = decode_lanes(words, starts, ends, bounds, slots, symbols_of.astype(np.int32), _PAIR_BUCKETS, precision, out)
    if err == 5:
        raise CorruptStreamError("rans block: a context without a frequency table")
    if err:
        raise CorruptStreamError("rans block: a lane does not decode to its symbol count (corrupt)")
    return out
