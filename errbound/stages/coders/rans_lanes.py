"""rANS in lanes (block type 3 of :mod:`.rans`): the kernels.

One rANS state decodes a symbol only when the one before it is done: the table entry gives
the next state, the state the next entry, and a byte-wise refill reads up to three bytes in
between. That chain, not the work, set the speed of type 2 blocks (about 100 M codes/s,
against 215-1600 for Huffman on the same codes). A type 3 block cuts the codes into LANES
contiguous lanes, each with its own state, its own stream and its own context history
(reset at the lane's start), decoded side by side in one loop: four independent chains. Each state lives in
[2**15, 2**31) and refills 16 bits at a time, which a precision of at most 15 bits makes
one step. The four lanes share the frequency tables.

Measured on the codes of the shared 3-D fields (rel 1e-2..1e-4): decoding 97-116 -> 165-260
M codes/s (tables included), encoding as fast as before; the lanes' context resets and
three more states change the size by +0.16 % to -0.54 % (the CHANGELOG has the cases).
"""

from __future__ import annotations

import numpy as np

from ...jit import kernel

LANES = 4
MAX_LANE_PRECISION = 15  # the one-step 16-bit refill needs x >> precision >= 1 for x >= 2**15
_LOW = 1 << 15  # lower bound of a lane's state; it stays below 2**31


def lane_bounds(count: int) -> list[int]:
    """Where each lane's codes start, and the end: LANES - 1 lanes of count // LANES codes,
    the last one the rest."""
    share = count // LANES
    return [share * j for j in range(LANES)] + [count]


@kernel
def encode_lane(symbols, index, freq, contexts, rcp, rcp_shift, bias, complement, precision, out):
    """rANS-code one lane backwards into ``out`` (uint16 words, written from the end) with
    the per-symbol ``contexts``; returns the index of the first word used (the final state,
    high word first). The state is kept below 2**31, so the reciprocals of ``rans`` divide
    it exactly (see ``rans._reciprocals``)."""
    x = np.uint64(_LOW)
    pos = out.size
    for i in range(symbols.size - 1, -1, -1):
        k = contexts[i]
        j = index[np.int64(symbols[i])]
        f = np.uint64(freq[k, j])
        if x >= np.uint64((_LOW >> precision) << 16) * f:
            pos -= 1
            out[pos] = np.uint16(x & np.uint64(0xFFFF))
            x >>= np.uint64(16)
        q = (x * rcp[k, j]) >> rcp_shift[k, j]
        x += bias[k, j] + q * complement[k, j]
    out[pos - 1] = np.uint16(x & np.uint64(0xFFFF))
    out[pos - 2] = np.uint16(x >> np.uint64(16))
    return pos - 2


@kernel(inline="always")
def _step(x, pos, a1, a2, words, slots, buckets, mask, shift):
    """One symbol of one lane: (state, position, entry) after it; the refill is branch-free."""
    e = slots[np.uint64(buckets[a1 + a2]), x & mask]
    field = np.uint64((1 << 21) - 1)
    x = ((e >> np.uint64(21)) & field) * (x >> shift) + (e & field)
    more = x < np.uint64(_LOW)
    x = (x << np.uint64(16)) | np.uint64(words[np.uint64(pos)]) if more else x
    return x, pos + (1 if more else 0), e


@kernel
def decode_lanes(words, starts, ends, bounds, slots, symbols_of, buckets, precision, out):
    """Decode the lanes of ``words`` (lane j: words[starts[j]:ends[j]], its codes
    out[bounds[j]:bounds[j + 1]]; the last lane is the longest) with ``rans``'s packed table
    entries (all ones: a context without a table). ``words`` holds one zero word past its
    end, so a lane that runs over its own end reads in range until the check after its step
    stops it. Returns 0, 4 for a lane that does not end where its last symbol does, or 5 for
    a context without a table."""
    missing = np.uint64(0xFFFFFFFFFFFFFFFF)
    mask = np.uint64((1 << precision) - 1)
    shift = np.uint64(precision)
    distance = np.uint64(63)
    for j in range(LANES):
        if ends[j] - starts[j] < 2:
            return 4
    x0 = (np.uint64(words[starts[0]]) << np.uint64(16)) | np.uint64(words[starts[0] + 1])
    x1 = (np.uint64(words[starts[1]]) << np.uint64(16)) | np.uint64(words[starts[1] + 1])
    x2 = (np.uint64(words[starts[2]]) << np.uint64(16)) | np.uint64(words[starts[2] + 1])
    x3 = (np.uint64(words[starts[3]]) << np.uint64(16)) | np.uint64(words[starts[3] + 1])
    p0, p1, p2, p3 = starts[0] + 2, starts[1] + 2, starts[2] + 2, starts[3] + 2
    # each lane's last two distances, its context history
    u0 = v0 = u1 = v1 = u2 = v2 = u3 = v3 = np.uint64(0)
    b0, b1, b2, b3 = bounds[0], bounds[1], bounds[2], bounds[3]
    for i in range(bounds[1] - bounds[0]):
        x0, p0, e0 = _step(x0, p0, u0, v0, words, slots, buckets, mask, shift)
        x1, p1, e1 = _step(x1, p1, u1, v1, words, slots, buckets, mask, shift)
        x2, p2, e2 = _step(x2, p2, u2, v2, words, slots, buckets, mask, shift)
        x3, p3, e3 = _step(x3, p3, u3, v3, words, slots, buckets, mask, shift)
        if e0 == missing or e1 == missing or e2 == missing or e3 == missing:
            return 5
        if p0 > ends[0] or p1 > ends[1] or p2 > ends[2] or p3 > ends[3]:
            return 4
        v0, v1, v2, v3 = u0, u1, u2, u3
        u0 = (e0 >> np.uint64(42)) & distance
        u1 = (e1 >> np.uint64(42)) & distance
        u2 = (e2 >> np.uint64(42)) & distance
        u3 = (e3 >> np.uint64(42)) & distance
        out[np.uint64(b0 + i)] = symbols_of[e0 >> np.uint64(48)]
        out[np.uint64(b1 + i)] = symbols_of[e1 >> np.uint64(48)]
        out[np.uint64(b2 + i)] = symbols_of[e2 >> np.uint64(48)]
        out[np.uint64(b3 + i)] = symbols_of[e3 >> np.uint64(48)]
    for i in range(b3 + (bounds[1] - bounds[0]), bounds[4]):  # the last lane's remainder
        x3, p3, e3 = _step(x3, p3, u3, v3, words, slots, buckets, mask, shift)
        if e3 == missing:
            return 5
        if p3 > ends[3]:
            return 4
        v3 = u3
        u3 = (e3 >> np.uint64(42)) & distance
        out[np.uint64(i)] = symbols_of[e3 >> np.uint64(48)]
    low = np.uint64(_LOW)
    ended = p0 == ends[0] and p1 == ends[1] and p2 == ends[2] and p3 == ends[3]
    return 0 if ended and x0 == low and x1 == low and x2 == low and x3 == low else 4
