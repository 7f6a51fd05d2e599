"""The rANS decoder's tables (:mod:`.rans`): the symbol table and the per-context frequency
tables read from a block and expanded into one packed entry per (context, slot).

Done in numpy, reading the tables (about 20 array operations per context) took as long as
decoding the codes of a 150k-value field; here it is one kernel call each.
"""

from __future__ import annotations

import numpy as np

from ...jit import kernel
from .bits import VARINT_TOO_LONG, VARINT_TRUNCATED, read_varint

# statuses of read_varints and build_slots (rans.decode names them)
OK, TRUNCATED, TOO_LONG, FLAG_TRUNCATED, FLAG_TOO_LONG, TABLE_TRUNCATED, BAD_SUM = range(7)
MISSING = np.uint64(0xFFFFFFFFFFFFFFFF)  # the entry of every slot of a context without a table


@kernel
def read_varints(data, pos, count, out):
    """(status, next position): ``count`` LEB128 varints of at most 4 bytes each from
    ``data[pos:]`` into ``out[:count]``. TRUNCATED where the 4 * count bytes from ``pos``
    (or the data's end) hold fewer than ``count`` last bytes, else TOO_LONG where a varint
    takes more than 4 bytes."""
    stop = min(pos + 4 * count, data.size)
    ends = 0
    i = pos
    while ends < count and i < stop:
        if data[i] < 0x80:
            ends += 1
        i += 1
    if ends < count:
        return TRUNCATED, pos
    p = pos
    for j in range(count):
        value = np.int64(0)
        length = 0
        while True:
            b = np.int64(data[p])
            p += 1
            if length < 4:
                value |= (b & 0x7F) << (7 * length)
            length += 1
            if b < 0x80:
                break
        if length > 4:
            return TOO_LONG, pos
        out[j] = value
    return OK, p


@kernel
def build_slots(data, pos, total, capped, slots):
    """(status, next position): the per-context tables at ``data[pos:]`` expanded into
    ``slots`` (CONTEXTS x ``total``) of packed entries: symbol index << 48 | capped
    distance << 42 | frequency << 21 | (slot - cumulative frequency); MISSING for every slot
    of a context whose flag (a varint of up to 9 bytes) is 0. A used context's table is
    ``m = capped.size`` varints summing to ``total``."""
    m = capped.size
    freq = np.empty(m, np.int64)
    for k in range(slots.shape[0]):
        flag, pos, status = read_varint(data, pos, data.size, 63)
        if status == VARINT_TRUNCATED:
            return FLAG_TRUNCATED, pos
        if status == VARINT_TOO_LONG:
            return FLAG_TOO_LONG, pos
        if flag == 0:
            for s in range(total):
                slots[k, s] = MISSING
            continue
        if m > data.size - pos:
            return TABLE_TRUNCATED, pos
        status, pos = read_varints(data, pos, m, freq)
        if status != OK:
            return status, pos
        if freq.sum() != total:
            return BAD_SUM, pos
        slot = 0
        for j in range(m):
            head = (np.uint64(j) << np.uint64(48)) | (np.uint64(capped[j]) << np.uint64(42))
            head |= np.uint64(freq[j]) << np.uint64(21)
            for s in range(freq[j]):
                slots[k, slot] = head | np.uint64(s)
                slot += 1
    return OK, pos
