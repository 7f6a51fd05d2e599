"""Bit I/O on arrays of uint64 words, for the coders that write single bits (SPECK and
sperr's outlier lists). Bit ``pos`` is bit ``pos % 64`` of word ``pos // 64``."""

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
