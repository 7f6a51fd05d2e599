"""The rANS decoder's table kernels (``rans_tables``) read exactly what the numpy reader
they replaced read, and refuse exactly what it refused, on any bytes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errbound.errors import CorruptStreamError
from errbound.stages.coders import rans, rans_tables

CENTER = 32768


def numpy_varints(data: np.ndarray, pos: int, count: int):
    """The reader up to 0.3.0 (vectorized): (status, values, next position)."""
    window = data[pos : pos + 4 * count].astype(np.int64)
    ends = np.flatnonzero(window < 0x80)[:count]
    if ends.size < count:
        return rans_tables.TRUNCATED, None, pos
    starts = np.concatenate(([0], ends[:-1] + 1))
    if np.any(ends - starts >= 4):
        return rans_tables.TOO_LONG, None, pos
    entry = np.repeat(np.arange(count), ends - starts + 1)
    used = int(ends[-1]) + 1
    shift = 7 * (np.arange(used) - starts[entry])
    return rans_tables.OK, np.add.reduceat((window[:used] & 0x7F) << shift, starts), pos + used


# varints of 1-6 bytes (continuation bytes, then a last byte), and stray bytes
varint_bytes = st.lists(
    st.one_of(
        st.tuples(st.lists(st.integers(0x80, 0xFF), max_size=5), st.integers(0, 0x7F)).map(lambda v: [*v[0], v[1]]),
        st.integers(0, 0xFF).map(lambda b: [b]),
    ),
    max_size=30,
).map(lambda parts: [b for part in parts for b in part])


@settings(max_examples=400, deadline=None)
@given(varint_bytes, st.integers(0, 6), st.integers(1, 20))
def test_varints_read_as_the_numpy_reader_did(raw, pos, count):
    data = np.array(raw, np.uint8)
    pos = min(pos, data.size)
    out = np.empty(count, np.int64)
    status, after = rans_tables.read_varints(data, pos, count, out)
    expected_status, expected, expected_after = numpy_varints(data, pos, count)
    assert status == expected_status
    if status == rans_tables.OK:
        np.testing.assert_array_equal(out, expected)
        assert after == expected_after


def numpy_slots(data: np.ndarray, pos: int, total: int, capped: np.ndarray):
    """The table expansion up to 0.3.0 (numpy, with varint.read's flags): (status, slots, pos)."""
    from errbound.stages.coders import varint

    m = capped.size
    slots = np.full((rans.CONTEXTS, total), 0xFFFFFFFFFFFFFFFF, np.uint64)
    for k in range(rans.CONTEXTS):
        try:
            flag, pos = varint.read(data, pos, "context flag", "rans block")
        except CorruptStreamError as exc:
            return (rans_tables.FLAG_TOO_LONG if "too long" in str(exc) else rans_tables.FLAG_TRUNCATED), None, pos
        if flag == 0:
            continue
        if m > data.size - pos:
            return rans_tables.TABLE_TRUNCATED, None, pos
        status, freq, pos = numpy_varints(data, pos, m)
        if status != rans_tables.OK:
            return status, None, pos
        if int(freq.sum()) != total:
            return rans_tables.BAD_SUM, None, pos
        owner = np.repeat(np.arange(m), freq)
        cum = np.cumsum(freq) - freq
        slots[k] = (
            (owner.astype(np.uint64) << np.uint64(48))
            | (capped[owner] << np.uint64(42))
            | (freq[owner].astype(np.uint64) << np.uint64(21))
            | (np.arange(total) - cum[owner]).astype(np.uint64)
        )
    return rans_tables.OK, slots, pos


def table_bytes(draw_freqs, m, total, used):
    """A tables section: per context a flag and, where used, m frequencies summing to total."""
    out = []
    for k in range(rans.CONTEXTS):
        if not used[k]:
            out.append(0)
            continue
        out.append(1)
        out.extend(rans._varints(draw_freqs[k]))
    return out


@settings(max_examples=200, deadline=None)
@given(
    st.integers(2, 40),
    st.lists(st.booleans(), min_size=rans.CONTEXTS, max_size=rans.CONTEXTS),
    st.integers(0, 2**32 - 1),
    st.sampled_from(["intact", "cut", "flip", "extend", "stretch"]),
    st.integers(0, 10_000),
)
def test_tables_expand_as_the_numpy_reader_did(m, used, seed, damage, where):
    rng = np.random.default_rng(seed)
    total = 1 << rans._precision(m)
    freqs = []
    for _ in range(rans.CONTEXTS):
        cuts = np.sort(rng.integers(0, total + 1, m - 1))
        freqs.append(np.diff(np.concatenate(([0], cuts, [total]))))
    data = np.array(table_bytes(freqs, m, total, used), np.uint8)
    if damage == "cut":
        data = data[: where % (data.size + 1)]
    elif damage == "flip" and data.size:
        data = data.copy()
        data[where % data.size] ^= np.uint8(1 << (where % 8))
    elif damage == "stretch":  # continuation bytes before a byte: a varint (or flag) too long
        at = where % (data.size + 1)
        data = np.concatenate((data[:at], np.full(1 + where % 12, 0x80, np.uint8), data[at:]))
    elif damage == "extend":
        data = np.concatenate((data, rng.integers(0, 256, where % 9).astype(np.uint8)))
    capped = rng.integers(0, 64, m).astype(np.uint64)
    slots = np.empty((rans.CONTEXTS, total), np.uint64)
    status, after = rans_tables.build_slots(data, 0, total, capped, slots)
    expected_status, expected, expected_after = numpy_slots(data, 0, total, capped)
    assert status == expected_status
    if status == rans_tables.OK:
        np.testing.assert_array_equal(slots, expected)
        assert after == expected_after
    if damage == "intact":
        assert status == rans_tables.OK and after == data.size


@pytest.mark.parametrize("n", [5000, 200_000])
def test_decode_reads_its_own_tables(n):
    rng = np.random.default_rng(n)
    c = (np.rint(rng.laplace(0, 3, n)).astype(np.int64) + CENTER).astype(np.int32)
    c[rng.random(n) < 0.01] = 0
    np.testing.assert_array_equal(rans.decode(rans.encode(c, 2 * CENTER, CENTER), n, 2 * CENTER, CENTER), c)
