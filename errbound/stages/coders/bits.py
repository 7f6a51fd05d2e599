"""Bit and byte I/O inside kernels: bits on arrays of uint64 words, for the coders that write
single bits (SPECK and sperr's outlier lists; bit ``pos`` is bit ``pos % 64`` of word
``pos // 64``), and the varints of coded blocks' tables (:func:`read_varint`)."""

from __future__ import annotations

import numpy as np

from ...jit import kernel


@kernel(internal=True)
def put_bit(words, pos, bit):
    """Write one bit straight into ``words`` (zeroed); returns the next position."""
    words[pos >> 6] |= np.uint64(bit) << np.uint64(pos & 63)
    return pos + 1


@kernel(internal=True)
def put_bit_if(words, acc, pos, bit, cond):
    """Append ``bit`` when cond is 1, without branches: the open word lives in ``acc`` and is
    stored on every call (a store inside a branch makes numba count references on each call)."""
    acc |= np.uint64(bit & cond) << np.uint64(pos & 63)
    words[pos >> 6] = acc
    pos += cond
    keep = np.uint64(0) - np.uint64((pos & 63) != 0)  # all ones, or zero at a word boundary
    return acc & keep, pos


@kernel(internal=True)
def get_bit(words, pos):
    """Bit ``pos``; reads past the end return the last word's bits (callers keep a zero word of
    padding there, so a forged stream's garbage reads stay in bounds)."""
    w = min(pos >> 6, words.size - 1)
    return np.int64((words[w] >> np.uint64(pos & 63)) & np.uint64(1))


VARINT_OK, VARINT_TRUNCATED, VARINT_TOO_LONG = 0, 1, 2


@kernel(inline="always", internal=True)
def read_varint(data, pos, end, most_shift):
    """(value, next position, status) of the LEB128 varint at ``data[pos:end]`` (bytes):
    VARINT_TRUNCATED where it runs past ``end``, VARINT_TOO_LONG where it needs a shift of
    ``most_shift`` bits or more (``varint.read``, the Python reader, allows 63)."""
    value = np.int64(0)
    shift = 0
    while True:
        if pos >= end:
            return value, pos, VARINT_TRUNCATED
        b = np.int64(data[pos])
        pos += 1
        value |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return value, pos, VARINT_OK
        if shift >= most_shift:
            return value, pos, VARINT_TOO_LONG
