"""The Huffman stage's decoder kernels (the block layout is in :mod:`.huffman`): the code
table read and checked, a lookup table of up to three symbols per entry built from it, and
one kernel that decodes a whole block, so that a small block pays one dispatch.

Every malformed, truncated or inconsistent block is reported as an error code (which
:func:`coded_error` names) before anything is read outside it or written past ``out``.
"""

from __future__ import annotations

import numpy as np

from ...jit import kernel
from .bits import VARINT_OK, read_varint

MAX_CODE_LENGTH = 32
MAX_ALPHABET = 1 << 20
_TABLE_BITS = 12  # a 32 KiB lookup table stays in L1 and covers nearly all codes in practice
_SMALL_TABLE_BITS = 10
_LARGE_TABLE_FROM_BITS = 1 << 18
_U32 = np.uint64(32)
_jit = kernel

_ERRORS = {
    1: "code-length table is truncated",
    2: "code-length table entry is malformed or names a symbol beyond 2**20",
    3: "code lengths do not form a complete prefix code",
    4: "bit stream length does not match the symbol count (truncated or corrupt stream)",
    5: "bit stream contains an invalid code",
}


def coded_error(err: int, a: int, b: int) -> str:
    """The message for an error code of :func:`decode_coded`."""
    if err in _ERRORS:
        return f"huffman block: {_ERRORS[err]}"
    return {
        6: "huffman block truncated while reading table size",
        7: "huffman block: varint for table size is too long",
        8: f"huffman table claims {a} symbols",
        9: f"huffman table holds symbol {a} outside [0, {b})",
        10: "huffman block truncated while reading bit count",
        11: "huffman block: varint for bit count is too long",
        12: f"huffman block: bit stream needs {a} bytes, {b} present",
        13: f"huffman block: {a} bits cannot hold {b} symbols",
    }[err]


# The decoder's table steps stay kernels: on a small stream (a 16 KiB chunk) their numpy
# versions cost ~50 us more per call than these, which compile in a fraction of a second.
#
# The decoder resolves up to three codes per table lookup. An entry of the 2**table_bits
# table (int64) holds: bits 0-4 the bits it consumes (0: the first code is longer than the
# table), bits 5-6 how many symbols it yields (1-3), bits 7-11 the length of its first code
# (for a longer code: the shortest code length under this prefix, where the canonical walk
# starts), bits 12-31 its first symbol and bits 32-47, 48-63 the second and third, each
# minus ``base`` (the smallest symbol with a short code). A symbol joins an entry only when
# its code fits in the bits left and it fits 16 bits above ``base``.


@_jit
def _read_table(data, pos, m):
    syms = np.empty(m, np.int32)
    lens = np.empty(m, np.uint8)
    end = data.size
    prev = np.int64(-1)
    for k in range(m):
        # legal entries never need more than 4 bytes
        v, pos, status = read_varint(data, pos, end, 28)
        if status != VARINT_OK:
            return status, pos, syms, lens  # 1: truncated, 2: malformed
        prev = prev + 1 + (v >> 5)
        if prev >= MAX_ALPHABET:
            return 2, pos, syms, lens
        syms[k] = prev
        lens[k] = (v & 31) + 1
    return 0, pos, syms, lens


@_jit
def _build_decoder(syms, lens, table_bits, multi):
    """The lookup table (see above; ``multi``: entries of up to three symbols, else one) +
    the canonical walk's data for codes longer than the table."""
    bl = np.zeros(MAX_CODE_LENGTH + 2, np.int64)
    kraft, maxlen = np.int64(0), 0
    base = np.int64(MAX_ALPHABET)
    for k in range(lens.size):
        bl[lens[k]] += 1
        kraft += np.int64(1) << (MAX_CODE_LENGTH - lens[k])
        maxlen = max(maxlen, np.int64(lens[k]))
        if lens[k] <= table_bits:
            base = min(base, np.int64(syms[k]))
    size = np.int64(1) << table_bits
    table = np.empty(size, np.int64)  # a complete code fills every entry (checked below)
    ordered = np.empty(lens.size, np.int32)
    first = np.zeros(MAX_CODE_LENGTH + 2, np.int64)
    offs = np.zeros(MAX_CODE_LENGTH + 2, np.int64)
    for n in range(1, MAX_CODE_LENGTH + 1):
        first[n + 1] = (first[n] + bl[n]) << 1
        offs[n + 1] = offs[n] + bl[n]
    # An incomplete or over-full code would leave undecodable bit patterns or ambiguities.
    if kraft != np.int64(1) << MAX_CODE_LENGTH:
        return 3, table, first, bl, offs, ordered, maxlen, base
    fill = offs.copy()
    for k in range(lens.size):  # symbols arrive ascending, so this is the canonical order
        n = np.int64(lens[k])
        ordered[fill[n]] = syms[k]
        if n <= table_bits:
            lo = (first[n] + (fill[n] - offs[n])) << (table_bits - n)
            entry = n | (1 << 5) | (n << 7) | ((np.int64(syms[k]) - base) << 12)
            for e in range(lo, lo + (np.int64(1) << (table_bits - n))):
                table[e] = entry
        fill[n] += 1
    # Entries for codes longer than the table: where the walk starts (the shortest length
    # under the prefix). Left-aligned canonical codes grow with their length, so the
    # prefixes of each length follow those of shorter ones, overlapping at most in one.
    done = (first[table_bits + 1] >> 1) - 1  # the last prefix of a short code
    for n in range(table_bits + 1, maxlen + 1):
        if bl[n]:
            for prefix in range(
                max(first[n] >> (n - table_bits), done + 1), ((first[n] + bl[n] - 1) >> (n - table_bits)) + 1
            ):
                table[prefix] = n << 7
            done = (first[n] + bl[n] - 1) >> (n - table_bits)
    if multi:
        mask = size - 1
        for e in range(size):
            entry = table[e]
            used = entry & 31
            if used == 0:
                continue
            count = 1
            for slot in range(2):
                nxt = table[(e << used) & mask]  # maybe filled already: read its first code only
                n = (nxt >> 7) & 31
                sym = (nxt >> 12) & 0xFFFFF
                if nxt & 31 == 0 or used + n > table_bits or sym >= 1 << 16:
                    break
                entry |= sym << (32 + 16 * slot)
                used += n
                count += 1
            table[e] = (entry & ~np.int64(0x7F)) | used | (count << 5)
    return 0, table, first, bl, offs, ordered, maxlen, base


@_jit
def _walk(buf, start, first, cnt, offs, ordered, maxlen):
    """(symbol, length) of a code longer than the table at the top of ``buf`` (>= 32 valid
    bits): the canonical walk from length ``start``; (-1, _) where no code matches."""
    top = np.int64(buf >> _U32)
    n = start
    while n <= maxlen:
        idx = (top >> (32 - n)) - first[n]
        if idx < cnt[n]:
            if idx < 0:
                return -1, n
            return np.int64(ordered[offs[n] + idx]), n
        n += 1
    return -1, n


@_jit
def _read_varint_kernel(data, pos):
    """(value, next position, 0), or (_, _, 1) truncated, (_, _, 2) longer than 63 bits."""
    v = np.int64(0)
    shift = 0
    while True:
        if pos >= data.size:
            return v, pos, 1
        b = np.int64(data[pos])
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, pos, 0
        if shift >= 63:
            return v, pos, 2


@_jit
def decode_coded(data, pos, n, limit, out):
    """The Huffman-coded block from its table size on, into ``out`` (n symbols): one call,
    so a small block pays one dispatch. Returns (error, detail, detail): 0, or a code that
    :func:`coded_error` turns into its message, checked in the order of the format."""
    m, pos, err = _read_varint_kernel(data, pos)
    if err:
        return 5 + err, 0, 0
    if not (2 <= m and m <= min(MAX_ALPHABET, data.size - pos)):
        return 8, m, 0
    err, pos, syms, lens = _read_table(data, pos, m)
    if err:
        return err, 0, 0
    if syms[m - 1] >= limit:  # symbols are stored ascending
        return 9, np.int64(syms[m - 1]), limit
    nbits, pos, err = _read_varint_kernel(data, pos)
    if err:
        return 9 + err, 0, 0
    if (nbits + 7) // 8 != data.size - pos:
        return 12, (nbits + 7) // 8, data.size - pos
    if not (n <= nbits and nbits <= MAX_CODE_LENGTH * n):
        return 13, nbits, n
    if out.size != n:  # unreachable: the caller sized out for every n that passes the checks
        return 4, 0, 0
    # Filling a table costs about one symbol's decoding per entry: a stream of fewer than
    # 2**18 bits decodes faster with the small table, one of fewer than 2048 symbols with
    # single-symbol entries (measured on 1-256 KiB chunks and the shared fields).
    table_bits = _TABLE_BITS if nbits >= _LARGE_TABLE_FROM_BITS else _SMALL_TABLE_BITS
    err, table, first, cnt, offs, ordered, maxlen, base = _build_decoder(syms, lens, table_bits, n >= 2048)
    if err:
        return err, 0, 0
    end, start = data.size, pos
    buf, nb = np.uint64(0), np.int64(0)
    tshift = np.uint64(64 - table_bits)
    n_out = out.size
    # A symbol with a one-bit code (over half the symbols at loose bounds: the zero residual)
    # has the canonical code 0, so 16 zero bits at the top are 16 of it at once.
    runs = ((table[0] >> 7) & 31) == 1
    b32 = np.int32(base)
    run_symbol = np.int32(((table[0] >> 12) & 0xFFFFF) + base)
    i = 0
    # Fast loop, while 8 bytes can be read and 16 symbols written: refill without a branch
    # (the 8 bytes at pos, big-endian, under the valid bits; whole bytes counted), then up to
    # three entries. Every bit of buf is stream data after a refill, so a long code (<= 32
    # bits) can be walked whenever nb >= 32.
    while pos + 8 <= end and i + 16 <= n_out:
        w = np.uint64(0)
        for k in range(8):  # unsigned indices: no wrap-around test (see _histogram)
            w = (w << np.uint64(8)) | np.uint64(data[np.uint64(pos + k)])
        buf |= w >> np.uint64(nb)
        pos += (63 - nb) >> 3
        nb |= 56
        if runs and (buf >> np.uint64(48)) == 0:
            for k in range(16):
                out[np.uint64(i + k)] = run_symbol
            i += 16
            buf <<= np.uint64(16)
            nb -= 16
            continue
        for _ in range(3):
            if nb >= 32:
                e = table[buf >> tshift]
                n = e & 31
                if n:
                    out[np.uint64(i)] = b32 + np.int32((e >> 12) & 0xFFFFF)
                    out[np.uint64(i + 1)] = b32 + np.int32((e >> 32) & 0xFFFF)
                    out[np.uint64(i + 2)] = b32 + np.int32((e >> 48) & 0xFFFF)
                    i += (e >> 5) & 3
                else:
                    sym, n = _walk(buf, (e >> 7) & 31, first, cnt, offs, ordered, maxlen)
                    if sym < 0:
                        return 5, 0, 0
                    out[i] = sym
                    i += 1
                buf <<= np.uint64(n)
                nb -= n
    # The last symbols one at a time; past the end reads zeros, the final length check
    # catches that.
    while i < n_out:
        if nb < 32:
            w = np.uint64(0)
            for k in range(4):
                w = (w << np.uint64(8)) | np.uint64(data[pos + k] if pos + k < end else 0)
            pos += 4
            buf |= w << np.uint64(32 - nb)
            nb += 32
        e = table[buf >> tshift]
        if e & 31:
            out[i] = base + ((e >> 12) & 0xFFFFF)
            n = (e >> 7) & 31
        else:
            sym, n = _walk(buf, (e >> 7) & 31, first, cnt, offs, ordered, maxlen)
            if sym < 0:
                return 5, 0, 0
            out[i] = sym
        buf <<= np.uint64(n)
        nb -= n
        i += 1
    if (pos - start) * 8 - nb != nbits:
        return 4, 0, 0
    return 0, 0, 0
