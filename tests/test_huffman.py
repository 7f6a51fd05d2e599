"""Tests for the canonical Huffman stage: round trips, format size, limits, corruption."""

import hashlib
import heapq

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from errbound.errors import CorruptStreamError, UnsupportedInputError
from errbound.stages.coders import huffman, huffman_decoding, huffman_runs, varint


def roundtrip(symbols, alphabet_size):
    blob = huffman.encode(symbols, alphabet_size)
    assert isinstance(blob, bytes)
    assert huffman.encoded_size_estimate(symbols, alphabet_size) == len(blob)
    out = huffman.decode(blob, len(symbols), alphabet_size)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, np.asarray(symbols))
    return blob


def typical(n, rng, sigma=None):
    """95% on the zero code 32768, the rest a discretized Laplace (or a Gaussian)."""
    if sigma is not None:
        return np.clip(np.rint(rng.normal(32768, sigma, n)), 0, 65535).astype(np.int32)
    s = np.full(n, 32768, np.int32)
    m = rng.random(n) < 0.05
    s[m] += np.rint(rng.laplace(0, 6, m.sum())).astype(np.int32)
    return s


def lengths_kraft(lens):
    lens = lens[lens > 0].astype(np.int64)
    return int(np.sum(np.int64(1) << (64 - 2 - lens)))  # == 2**62 for a complete code


# ----------------------------------------------------------------------------- round trips


def test_empty():
    blob = roundtrip(np.empty(0, np.int32), 65536)
    assert len(blob) == 2


def test_single_symbol_costs_no_bits():
    blob = roundtrip(np.full(3_000_000, 40000, np.uint32), 65536)
    assert len(blob) <= 8
    roundtrip(np.zeros(1, np.int32), 1)


def test_two_symbols_one_bit_each():
    s = np.tile(np.array([3, 9], np.int32), 4000)
    blob = roundtrip(s, 16)
    assert len(blob) <= 8000 // 8 + 12


@pytest.mark.parametrize("alphabet", [2, 256, 65536, 1 << 20])
def test_all_distinct(alphabet):
    s = np.random.default_rng(alphabet).permutation(alphabet).astype(np.int32)
    roundtrip(s, alphabet)


@pytest.mark.parametrize("sigma", [None, 5.0, 50.0, 3000.0])
def test_typical_distributions_near_entropy(sigma):
    s = typical(200_000, np.random.default_rng(1), sigma)
    blob = roundtrip(s, 65536)
    p = np.bincount(s)[np.bincount(s) > 0] / s.size
    entropy = -(p * np.log2(p)).sum()
    bits = 8 * len(blob) / s.size
    assert bits <= entropy + 1.0 + 0.05  # Huffman redundancy bound plus the table


def test_long_codes_take_the_slow_path():
    s = np.random.default_rng(2).geometric(0.45, 300_000).astype(np.int32)  # lengths up to ~20
    assert huffman._code_lengths(np.bincount(s), 32).max() > huffman_decoding._TABLE_BITS
    roundtrip(s, int(s.max()) + 1)


@pytest.mark.parametrize("n", [2047, 2048, 5000, 70_000])
@pytest.mark.parametrize("sigma", [None, 3.0, 40.0, 3000.0])
def test_multi_symbol_tables_roundtrip(n, sigma):
    # both decoder tables (small and large streams), with and without multi-symbol entries,
    # and streams whose last symbols end inside an entry
    s = typical(n, np.random.default_rng(n), sigma)
    for cut in (n, n - 1, n - 2, n - 17):
        roundtrip(s[:cut], 65536)


def test_multi_symbol_entries_keep_far_symbols_apart():
    # short codes more than 2**16 apart cannot share an entry's 16-bit fields
    rng = np.random.default_rng(14)
    s = rng.choice(np.array([3, 70_000, 1_000_000, 200_000], np.int32), 100_000, p=[0.4, 0.3, 0.2, 0.1])
    roundtrip(s.astype(np.int32), 1 << 20)
    s[rng.random(s.size) < 0.01] = 65_539  # just past the fields' reach from base 3
    roundtrip(s, 1 << 20)


def test_long_and_short_codes_interleaved():
    # geometric tails give codes well past the 10- and 12-bit tables between runs of short ones
    rng = np.random.default_rng(15)
    for n in (3000, 40_000, 200_000):
        s = (32768 + rng.geometric(0.3, n) * rng.choice([-1, 1], n)).astype(np.int32)
        s[rng.random(n) < 0.5] = 32768
        roundtrip(s, 65536)


def test_input_dtypes_give_identical_bytes():
    s = typical(5000, np.random.default_rng(3), 40.0)
    blobs = {huffman.encode(s.astype(dt), 65536) for dt in (np.int32, np.uint32, np.int64, np.uint16)}
    assert len(blobs) == 1


def test_format_is_pinned():
    # Same bytes on every machine: a change here is a format change.
    s = np.array([0, 0, 0, 0, 1, 1, 2, 5, 5, 5, 7], np.int32)
    assert huffman.encode(s, 8).hex() == GOLDEN_SMALL
    big = huffman.encode(typical(100_000, np.random.default_rng(4)), 65536)
    assert hashlib.sha256(big).hexdigest()[:16] == GOLDEN_TYPICAL


GOLDEN_SMALL = "020b05010102412218005d57"
GOLDEN_TYPICAL = "52c8a293fef664e8"


def test_decode_into_a_callers_buffer():
    s = typical(5000, np.random.default_rng(8), 30.0)
    blob = huffman.encode(s, 65536)
    buf = np.full(6000, -1, np.int32)
    out = huffman.decode(blob, s.size, 65536, out=buf)
    assert np.shares_memory(out, buf) and out.size == s.size
    np.testing.assert_array_equal(out, s)
    # a buffer that cannot hold the symbols as int32 in one row is not used
    for unsuitable in (np.zeros(10, np.int32), np.zeros(6000, np.int64), np.zeros((2, 3000), np.int32), buf[::2]):
        out = huffman.decode(blob, s.size, 65536, out=unsuitable)
        assert not np.shares_memory(out, unsuitable)
        np.testing.assert_array_equal(out, s)
    # a single-symbol block fills the buffer as well
    out = huffman.decode(huffman.encode(np.full(700, 9, np.int32), 16), 700, 16, out=buf)
    assert np.shares_memory(out, buf) and out.size == 700 and np.all(out == 9)


def test_decode_accepts_buffers():
    s = typical(1000, np.random.default_rng(5), 10.0)
    blob = huffman.encode(s, 65536)
    for b in (bytearray(blob), memoryview(blob), np.frombuffer(blob, np.uint8), memoryview(b"xx" + blob)[2:]):
        np.testing.assert_array_equal(huffman.decode(b), s)


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_roundtrip_property(data):
    alphabet = data.draw(st.integers(1, 70_000))
    hi = data.draw(st.integers(0, alphabet - 1))
    values = data.draw(st.lists(st.integers(0, hi), max_size=400))
    roundtrip(np.array(values, np.int32), alphabet)


def _runs_of_the_common_symbol(rng, n, common=7):
    """Mostly `common` (over half the symbols: a one-bit code) in runs of 0-70, other
    symbols between them: the decoder's run path and its exits at every offset."""
    out = []
    while len(out) < n:
        out += [common] * int(rng.integers(0, 71))
        out += rng.integers(0, 12, int(rng.integers(1, 4))).tolist()
    return np.array(out[:n], np.int32)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 3000))
def test_runs_of_a_one_bit_symbol_roundtrip(seed, n):
    symbols = _runs_of_the_common_symbol(np.random.default_rng(seed), n)
    blob = huffman.encode(symbols, 12)
    assert np.array_equal(huffman.decode(blob, symbols.size, 12), symbols)


def _reference_bits(symbols, alphabet_size):
    """The code bits of ``encode``'s payload, written one bit at a time from the canonical
    codes of its lengths (by length, then symbol): what the word-at-a-time packer must give."""
    counts = np.bincount(symbols, minlength=alphabet_size)
    lens = huffman._code_lengths(counts, huffman.MAX_CODE_LENGTH)
    code, codes = 0, {}
    for length in range(1, int(lens.max()) + 1):
        for symbol in np.flatnonzero(lens == length):
            codes[int(symbol)] = format(code, f"0{length}b")
            code += 1
        code <<= 1
    bits = "".join(codes[int(s)] for s in symbols)
    bits += "0" * (-len(bits) % 8)
    return bytes(int(bits[i : i + 8], 2) for i in range(0, len(bits), 8))


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_packed_bits_match_a_bit_by_bit_writer(data):
    # long codes (Fibonacci-like counts reach the 32-bit limit) and short ones, every
    # alignment against the 32-bit words the packer writes
    kinds = data.draw(st.integers(2, 40))
    fib = [1, 1]
    while len(fib) < kinds:
        fib.append(fib[-1] + fib[-2])
    weights = (
        fib[:kinds]
        if data.draw(st.booleans())
        else data.draw(st.lists(st.integers(1, 50), min_size=kinds, max_size=kinds))
    )
    # the first `size` of the shuffled multiset, drawn without building the rest: 40
    # Fibonacci weights are 267 million symbols, and shuffling them all took most of a minute
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    size = data.draw(st.integers(2, max(2, sum(weights))))
    counts = rng.multivariate_hypergeometric(np.array(weights, np.int64), min(size, sum(weights)))
    symbols = np.repeat(np.arange(kinds, dtype=np.int32), counts)
    rng.shuffle(symbols)
    if np.unique(symbols).size < 2:
        return
    blob = roundtrip(symbols, kinds)
    payload = _reference_bits(symbols, kinds)
    assert blob.endswith(payload)


def test_packed_bits_of_deep_codes_match_a_bit_by_bit_writer():
    # the whole multiset of 27 Fibonacci weights (514 228 symbols): codes of 1 to 26 bits,
    # deeper than the sampled prefixes above reach, every one packed across word boundaries
    fib = [1, 1]
    while len(fib) < 27:
        fib.append(fib[-1] + fib[-2])
    symbols = np.repeat(np.arange(27, dtype=np.int32), fib)
    np.random.default_rng(5).shuffle(symbols)
    lens = huffman._code_lengths(np.array(fib), huffman.MAX_CODE_LENGTH)
    assert lens.max() == 26
    assert roundtrip(symbols, 27).endswith(_reference_bits(symbols, 27))


@pytest.mark.parametrize("width", [1, 7, 2048, 2049, 40_000])
@pytest.mark.parametrize("n", [1, 5, 4099, 70_001])
def test_histogram_counts_the_range_in_use(width, n):
    # four interleaved tables up to 2048 symbols in use, one beyond; lengths not a multiple of 4
    rng = np.random.default_rng(width + n)
    symbols = (rng.integers(0, width, n) + 1000).astype(np.int32)
    if n > 1:
        symbols[0], symbols[-1] = 1000, 1000 + width - 1
    counts, lo = huffman.histogram(symbols, 65536)
    assert lo == symbols.min() and counts.size == symbols.max() - symbols.min() + 1
    np.testing.assert_array_equal(counts, np.bincount(symbols - lo))


@pytest.mark.parametrize("crowd", [0, 5, 32768, 65535])
@pytest.mark.parametrize("outliers", [0.0, 0.05, 0.4])
def test_histogram_of_a_crowd_with_far_outliers(crowd, outliers):
    # quantization codes: a crowd around one code, the zero code of unpredictable values and
    # a few far codes; the crowd near either end of the range moves the counting window
    rng = np.random.default_rng(int(crowd + 100 * outliers))
    n = 50_001
    symbols = np.clip(np.rint(rng.laplace(crowd, 30, n)), 0, 65535).astype(np.int32)
    far = rng.random(n) < outliers
    symbols[far] = rng.choice([0, 1, 40_000, 65535], int(far.sum()))
    counts, lo = huffman.histogram(symbols, 65536)
    assert lo == symbols.min()
    np.testing.assert_array_equal(counts, np.bincount(symbols - lo))
    roundtrip(symbols, 65536)


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.uint32])
@pytest.mark.parametrize("outliers", [0.0, 0.05])
@pytest.mark.parametrize("n", [1, 4099, 50_001])
def test_entropy_is_that_of_the_symbol_counts(dtype, outliers, n):
    # the policies size candidates by it: the Shannon entropy of the counts, in bytes
    rng = np.random.default_rng(n + int(100 * outliers))
    symbols = np.clip(np.rint(rng.laplace(32768, 30, n)), 0, 65535).astype(np.int64)
    far = rng.random(n) < outliers
    symbols[far] = rng.choice([0, 1, 40_000, 65535], int(far.sum()))
    counts = np.bincount(symbols).astype(np.float64)
    counts = counts[counts > 0]
    expected = float(-(counts * np.log2(counts / n)).sum()) / 8
    assert huffman.entropy_bytes(symbols.astype(dtype), 65536) == pytest.approx(expected, rel=1e-12, abs=1e-12)
    strided = symbols.astype(np.int32)[::2]  # not contiguous
    assert huffman.entropy_bytes(strided, 65536) == huffman.entropy_bytes(strided.copy(), 65536)


def test_entropy_of_nothing_and_of_one_symbol():
    assert huffman.entropy_bytes(np.zeros(0, np.int32), 16) == 0.0
    assert huffman.entropy_bytes(np.full(100, 7, np.int32), 16) == 0.0


@pytest.mark.parametrize(
    "bad, alphabet",
    [
        (np.array([0, 16], np.int32), 16),
        (np.array([-1, 0], np.int32), 16),
        (np.array([0.0, 1.0]), 16),
        (np.zeros((2, 2), np.int32), 16),
        (np.zeros(3, np.int32), 0),
        (np.zeros(3, np.int32), (1 << 20) + 1),
    ],
)
def test_entropy_refuses_what_encode_refuses(bad, alphabet):
    with pytest.raises(UnsupportedInputError):
        huffman.entropy_bytes(bad, alphabet)
    with pytest.raises(UnsupportedInputError):
        huffman.encode(bad, alphabet)


# ----------------------------------------------------------------------------- code lengths


def test_length_limit_on_fibonacci_counts():
    fib = [1, 1]
    while len(fib) < 60:
        fib.append(fib[-1] + fib[-2])
    counts = np.array(fib, np.int64)  # unlimited Huffman depth would be 59
    lens = huffman._code_lengths(counts, 32)
    assert lens.max() == 32 and lens.min() >= 1
    assert lengths_kraft(lens) == 1 << 62
    assert np.all(np.diff(lens.astype(int)) <= 0)  # more frequent never gets a longer code


def test_length_limited_stream_roundtrips():
    s = np.random.default_rng(6).geometric(0.5, 20_000).astype(np.int32)
    counts = np.bincount(s)
    lens = huffman._code_lengths(counts, 6)
    assert lens.max() == 6 and lengths_kraft(lens) == 1 << 62
    out = huffman.decode(huffman._encode(s, 64, 6, False), s.size)
    np.testing.assert_array_equal(out, s)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(1, 10**6), min_size=2, max_size=300))
def test_lengths_are_optimal(weights):
    counts = np.array(weights, np.int64)
    lens = huffman._code_lengths(counts, 32)
    assert lengths_kraft(lens) == 1 << 62
    heap = list(weights)  # optimal cost = sum of all merged weights
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        merged = heapq.heappop(heap) + heapq.heappop(heap)
        cost += merged
        heapq.heappush(heap, merged)
    assert int(np.sum(counts * lens)) == cost


def test_huge_counts_use_int64():
    counts = np.zeros(65536, np.int64)
    counts[[10, 11, 500]] = [4 * 10**9, 3 * 10**9, 7]
    lens = huffman._code_lengths(counts, 32)
    _, m, nbits = huffman._table_varints(lens, counts)
    assert m == 3 and nbits == 4 * 10**9 + 2 * (3 * 10**9 + 7)


def test_sparse_table_is_small():
    rng = np.random.default_rng(7)
    used = np.sort(rng.choice(65536, 200, replace=False))
    s = rng.permutation(np.repeat(used, 30)).astype(np.int32)
    counts = np.bincount(s, minlength=65536)
    table, m, nbits = huffman._table_varints(huffman._code_lengths(counts, 32), counts)
    assert m == 200 and table.size <= 3 * 200  # ~2.2 bytes per used symbol here
    blob = roundtrip(s, 65536)
    assert len(blob) <= table.size + (nbits + 7) // 8 + 12


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "bad",
    [
        np.array([0, 1, 16], np.int32),
        np.array([-1, 0], np.int32),
        np.array([0.0, 1.0]),
        np.zeros((2, 2), np.int32),
        np.array([2**40], np.uint64),
    ],
)
def test_rejects_bad_symbols(bad):
    with pytest.raises(UnsupportedInputError):
        huffman.encode(bad, 16)


@pytest.mark.parametrize("alphabet", [0, (1 << 20) + 1])
def test_rejects_bad_alphabet(alphabet):
    with pytest.raises(UnsupportedInputError):
        huffman.encode(np.zeros(3, np.int32), alphabet)


def test_count_and_alphabet_are_checked():
    s = typical(1000, np.random.default_rng(8), 3.0)
    blob = huffman.encode(s, 65536)
    with pytest.raises(CorruptStreamError, match="expected 999"):
        huffman.decode(blob, 999)
    with pytest.raises(CorruptStreamError, match="outside"):
        huffman.decode(blob, alphabet_size=32768)
    with pytest.raises(CorruptStreamError):
        huffman.decode(huffman.encode(np.full(5, 9, np.int32), 10), alphabet_size=9)


# ----------------------------------------------------------------------------- corruption


def decode_or_raise(blob, n, alphabet):
    """Corrupt input may decode to garbage but must keep the contract; returns whether it raised."""
    for count in (n, None):
        try:
            out = huffman.decode(blob, count, alphabet)
        except CorruptStreamError:
            return True
        assert out.dtype == np.int32 and out.ndim == 1
        assert count is None or out.size == n
        assert out.size == 0 or (out.min() >= 0 and out.max() < alphabet)
    return False


CORRUPTION_CASES = [
    (typical(3000, np.random.default_rng(9)), 65536),
    (typical(2000, np.random.default_rng(10), 40.0), 65536),
    (np.random.default_rng(11).geometric(0.4, 1500).astype(np.int32), 64),
    (np.full(100, 5, np.int32), 16),
    (_runs_of_the_common_symbol(np.random.default_rng(13), 2000), 12),
    # multi-symbol entries: the small table, then the large one (over 2**18 bits)
    (typical(6000, np.random.default_rng(16), 40.0), 65536),
    (typical(50_000, np.random.default_rng(17), 40.0), 65536),
]


@pytest.mark.parametrize("symbols,alphabet", CORRUPTION_CASES)
def test_truncation_always_detected(symbols, alphabet):
    blob = huffman.encode(symbols, alphabet)
    cuts = range(len(blob))
    if len(blob) > 8000:  # every cut of the header and the tail, a sample of the rest
        rng = np.random.default_rng(len(blob))
        cuts = sorted({*range(64), *range(len(blob) - 64, len(blob)), *rng.integers(0, len(blob), 300).tolist()})
    for cut in cuts:
        assert decode_or_raise(blob[:cut], symbols.size, alphabet), cut


@pytest.mark.parametrize("symbols,alphabet", CORRUPTION_CASES)
def test_random_damage_never_crashes(symbols, alphabet):
    rng = np.random.default_rng(12)
    blob = np.frombuffer(huffman.encode(symbols, alphabet), np.uint8)
    for trial in range(300):
        bad = blob.copy()
        if trial % 3 == 2:  # overwrite a byte inside the header/table region
            bad[rng.integers(min(bad.size, 40))] = rng.integers(256)
        else:
            for _ in range(1 + trial % 3):
                i = rng.integers(bad.size * 8)
                bad[i // 8] ^= np.uint8(1 << (i % 8))
        decode_or_raise(bad.tobytes(), symbols.size, alphabet)
        decode_or_raise(bad.tobytes() + bytes(rng.integers(0, 256, 3, np.uint8)), symbols.size, alphabet)


def test_garbage_blobs():
    rng = np.random.default_rng(13)
    for _ in range(500):
        junk = rng.integers(0, 256, rng.integers(0, 64), np.uint8)
        junk[:1] = rng.integers(0, 4)
        decode_or_raise(junk.tobytes(), 10, 1 << 20)


# ----------------------------------------------------------------------------- in parts


def _runs_of(data, n):
    cuts = sorted(data.draw(st.lists(st.integers(0, n), min_size=1, max_size=6)))
    return np.diff([0, *cuts, n]).tolist()


@settings(max_examples=150, deadline=None)
@given(st.data())
def test_runs_are_sized_exactly_and_coded_in_parts(data):
    """Each run's size (from its counts, no code built) is its block's; one table over all
    is encode()'s block; the runs in parts decode to the symbols, each piece ending in the
    run's own block."""
    alphabet = data.draw(st.sampled_from([2, 12, 300, 65536]))
    kind = data.draw(st.sampled_from(["typical", "wide", "constant", "mixed"]))
    n = data.draw(st.integers(2, 5000))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    s = {
        "typical": lambda: typical(n, rng, 6.0) % alphabet,
        "wide": lambda: rng.integers(0, alphabet, n),
        "constant": lambda: np.full(n, alphabet - 1),
        "mixed": lambda: np.where(np.arange(n) < n // 3, rng.integers(0, alphabet, n), alphabet // 2),
    }[kind]().astype(np.int32)
    runs = _runs_of(data, n)
    sized = huffman_runs.size_runs(s, alphabet, runs)
    for run in sized:
        block = huffman.encode(s[run.start : run.start + run.length], alphabet)
        assert run.size == len(block) and huffman_runs.encode_run(s, run) == block
    whole = huffman_runs.one_table(sized)
    assert whole.size == len(huffman.encode(s, alphabet)) and huffman_runs.encode_run(s, whole) == huffman.encode(
        s, alphabet
    )
    if len(runs) >= 2:
        pieces = huffman_runs.encode_runs(s, sized)
        assert len(pieces) == len(runs)
        for run, piece in zip(sized, pieces, strict=True):
            assert piece.endswith(huffman.encode(s[run.start : run.start + run.length], alphabet))
        np.testing.assert_array_equal(huffman.decode(b"".join(pieces), n, alphabet), s)
        out = np.full(n + 3, -1, np.int32)
        got = huffman.decode(b"".join(pieces), n, alphabet, out=out)
        np.testing.assert_array_equal(got, s)
        assert got.ctypes.data == out.ctypes.data  # decoded into the caller's buffer


def _parts_blob(*blocks, n=None, k=None):
    """A type-3 block of the given part blocks (n, k: what its head claims)."""
    head = bytes([3]) + varint.encode(n if n is not None else _symbols_in(blocks))
    head += varint.encode(k if k is not None else len(blocks))
    return head + b"".join(varint.encode(len(b)) + b for b in blocks)


def _symbols_in(blocks):
    return sum(huffman._read_varint(np.frombuffer(b, np.uint8), 1, "count")[0] for b in blocks)


def test_parts_blocks_are_checked():
    a = huffman.encode(typical(300, np.random.default_rng(1), 5.0), 65536)
    b = huffman.encode(np.full(50, 7, np.int32), 65536)
    good = _parts_blob(a, b)
    assert huffman.decode(good, 350, 65536).size == 350
    bad = {
        "claims 1 parts": _parts_blob(a, k=1),
        "claims 65 parts": _parts_blob(*[b] * 65),
        "overruns the block": good[:-1],
        "not a block of type 0, 1 or 2": _parts_blob(a, _parts_blob(a, b)),
        "hold 350 of the block's 349 symbols": _parts_blob(a, b, n=349),
        "hold 350 of the block's 351 symbols": _parts_blob(a, b, n=351),
        "bytes after its parts": good + b"\0",
        "claims 17 symbols in 2 bytes": _parts_blob(a, bytes([2]) + varint.encode(17), n=317),
        "not a block of type": _parts_blob(a, b"", n=300),
        "truncated while reading part count": good[:3],
    }
    for words, blob in bad.items():
        with pytest.raises(CorruptStreamError, match=words):
            huffman.decode(blob, None, 65536)
    with pytest.raises(CorruptStreamError, match="holds 350 symbols, expected 351"):
        huffman.decode(good, 351, 65536)
    with pytest.raises(CorruptStreamError, match="in parts under a version-1 huffman record"):
        huffman.decode(good, 350, 65536, parts=False)
    for sym, words in ((70000, "malformed single-symbol"), (7, "malformed single-symbol")):
        single = bytes([1]) + varint.encode(50) + varint.encode(sym) + (b"\0" if sym == 7 else b"")
        with pytest.raises(CorruptStreamError, match=words):  # beyond the alphabet; a byte too many
            huffman.decode(_parts_blob(a, single), 350, 65536)
    out = np.full(400, -1, np.int32)
    got = huffman.decode(good, 350, 65536, out=out)  # the one-symbol part is filled in place
    assert got.ctypes.data == out.ctypes.data and (got[300:] == 7).all() and (out[350:] == -1).all()
    with pytest.raises(CorruptStreamError, match="outside"):  # a part's symbol beyond the alphabet
        huffman.decode(good, 350, 1000)


@pytest.mark.parametrize("seed", range(3))
def test_damaged_parts_never_crash(seed):
    rng = np.random.default_rng(seed)
    s = np.concatenate([typical(3000, rng, 40.0), typical(2000, rng), np.full(500, 9, np.int32)])
    sized = huffman_runs.size_runs(s, 65536, [3000, 2000, 500])
    blob = np.frombuffer(b"".join(huffman_runs.encode_runs(s, sized)), np.uint8)
    for cut in (*range(40), *rng.integers(0, blob.size, 100).tolist()):
        assert decode_or_raise(blob[:cut].tobytes(), s.size, 65536), cut
    for trial in range(300):
        bad = blob.copy()
        for _ in range(1 + trial % 3):
            i = rng.integers(bad.size * 8)
            bad[i // 8] ^= np.uint8(1 << (i % 8))
        decode_or_raise(bad.tobytes(), s.size, 65536)
