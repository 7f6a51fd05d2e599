"""The fz codec's integer stages: exact, deterministic, independent of the thread count."""

from __future__ import annotations

import numba
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import errbound
from errbound.datasets import demo_field
from errbound.errors import CorruptStreamError, UnsupportedInputError
from errbound.quantized import (
    decode_codes,
    dequantize,
    dequantize_residuals,
    encode_codes,
    encode_residuals,
    predict,
    quantize,
    quantize_residuals,
    unpredict,
)
from errbound.stages.coders import bitshuffle
from errbound.stages.predictors.integer_lorenzo import lorenzo_residuals, lorenzo_restore

SHAPES = [(1,), (7,), (1000,), (33, 65), (5, 7, 11), (2, 3, 4, 5), (1, 1, 130), (129, 1)]


@pytest.mark.parametrize("dtype", [np.int32, np.int64])
@pytest.mark.parametrize("shape", SHAPES)
def test_code_stream_round_trips_exactly_including_extreme_integers(dtype, shape):
    rng = np.random.default_rng(sum(shape))
    info = np.iinfo(dtype)
    codes = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
    codes.reshape(-1)[0] = info.min
    codes.reshape(-1)[-1] = info.max
    assert np.array_equal(decode_codes(encode_codes(codes)), codes)
    small = rng.integers(-5, 6, size=shape).astype(dtype)
    assert np.array_equal(decode_codes(encode_codes(small)), small)


@given(st.lists(st.integers(-(2**31), 2**31 - 1), min_size=1, max_size=600), st.integers(1, 32))
def test_narrow_code_width_sends_wide_residuals_to_the_outlier_list(values, width):
    codes = np.array(values, np.int32)
    assert np.array_equal(decode_codes(encode_codes(codes, width=width)), codes)


def test_lorenzo_residuals_of_a_linear_ramp_vanish_inside_the_array():
    i, j, k = np.meshgrid(np.arange(6), np.arange(7), np.arange(8), indexing="ij")
    codes = (3 * i + 5 * j - 2 * k).astype(np.int32)
    r = lorenzo_residuals(codes.reshape(-1), codes.shape).reshape(codes.shape)
    assert np.all(r[1:, 1:, 1:] == 0)
    assert np.array_equal(lorenzo_restore(r.reshape(-1).copy(), codes.shape).reshape(codes.shape), codes)


def test_bit_planes_of_small_residuals_skip_empty_planes():
    r = np.zeros(bitshuffle.BLOCK * 4, np.int32)
    r[5] = 3  # zigzag 6: planes 1 and 2 in block 0 only
    masks, dense, sparse, wide_idx, _, dense_count = bitshuffle.shuffle(r, dense=2)
    assert masks.tolist() == [0b110, 0, 0, 0]
    # plane 1 is below the dense split, plane 2 above it
    assert dense.size == sparse.size == bitshuffle.WORDS and wide_idx.size == 0 and dense_count == 2


def test_quantize_lists_nan_inf_negative_zero_and_overflow_as_outliers():
    x = np.array([1.0, np.nan, -np.inf, -0.0, 3e38, 2.5], np.float32)
    q = quantize(x, 1e-3)
    assert sorted(q.outlier_index.tolist()) == [1, 2, 3, 4]
    y = dequantize(q)
    assert np.array_equal(y.view(np.uint32)[[1, 2, 3, 4]], x.view(np.uint32)[[1, 2, 3, 4]])
    assert np.max(np.abs(y[[0, 5]] - x[[0, 5]])) <= 1e-3


def test_integer_sums_of_decoded_codes_equal_sums_of_the_original_codes():
    """What compressed collectives rely on: decode(encode(q1)) + decode(encode(q2)) == q1 + q2."""
    a = quantize(demo_field((16, 32, 32), seed=1), 1e-3).codes
    b = quantize(demo_field((16, 32, 32), seed=2), 1e-3).codes
    total = decode_codes(encode_codes(a, (16, 32, 32))) + decode_codes(encode_codes(b, (16, 32, 32)))
    assert np.array_equal(total.reshape(-1), a + b)


@given(
    st.sampled_from(SHAPES),
    st.sampled_from([np.int32, np.int64]),
    st.integers(0, 2**32 - 1),
    st.sampled_from([None, 3, 17]),
)
def test_residual_sums_restore_to_the_sum_of_the_codes(shape, dtype, seed, width):
    """The reduction path of the collectives: predict each rank's codes, add residuals while
    decoding (wrapping), restore once."""
    rng = np.random.default_rng(seed)
    info = np.iinfo(dtype)
    a = rng.integers(info.min // 2, info.max // 2, size=shape, dtype=dtype)
    b = rng.integers(-40, 41, size=shape).astype(dtype)
    acc = predict(a)
    blob = encode_codes(predict(b), shape, width=width, predict=False)
    assert np.array_equal(decode_codes(blob), predict(b).reshape(shape))  # stored as they are
    decode_codes(blob, add_to=acc)
    assert np.array_equal(unpredict(acc, shape).reshape(shape), a + b)
    # add_to also takes a predicted stream: it restores first
    codes = a.copy()
    assert decode_codes(encode_codes(b), add_to=codes) is codes
    assert np.array_equal(codes, a + b)


@given(
    st.sampled_from(SHAPES + [(70, 3, 40), (3, 33, 2), (2, 40, 1, 7)]),
    st.sampled_from([np.float32, np.float64]),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1e-6, 1e-3, 0.5, 1e30]),
)
def test_quantize_residuals_is_predict_of_quantize_in_one_pass(shape, dtype, seed, eb):
    """Tasks of 32 rows start mid-plane and planes end mid-task; specials and values off the
    grid get code 0 in both."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-3, 6)).astype(dtype)
    flat = x.reshape(-1)
    specials = [np.nan, np.inf, -np.inf, -0.0, np.finfo(dtype).max]
    for i, v in zip(rng.integers(0, x.size, 3), rng.choice(specials, 3), strict=True):
        flat[i] = v
    expected = predict(quantize(x, eb).codes, shape)
    assert np.array_equal(quantize_residuals(x, eb), expected)
    out = np.empty(x.size, expected.dtype)
    assert quantize_residuals(np.asfortranarray(x), eb, out=out) is out and np.array_equal(out, expected)


@given(
    st.sampled_from(SHAPES + [(70, 3, 40), (2, 40, 1, 7)]),
    st.sampled_from([np.float32, np.float64]),
    st.integers(0, 2**32 - 1),
    st.sampled_from([1e-7, 1e-3, 0.5]),
)
def test_quantize_with_predict_gives_the_residuals_and_the_same_outliers(shape, dtype, seed, eb):
    """The fz codec's single pass: the same outliers as quantize(), predict() of its codes,
    and encode_residuals writes the bytes encode_codes writes from the codes."""
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(shape) * 10.0 ** rng.integers(-9, 9)).astype(dtype)
    flat = x.reshape(-1)
    for i, v in zip(rng.integers(0, x.size, 4), [np.nan, -np.inf, -0.0, np.finfo(dtype).max], strict=True):
        flat[i] = v
    plain = quantize(x, eb)
    fused = quantize(x, eb, predict=True)
    assert fused.predicted and not plain.predicted
    assert np.array_equal(fused.outlier_index, plain.outlier_index)
    assert np.array_equal(fused.outlier_value.view(np.uint8), plain.outlier_value.view(np.uint8))
    assert np.array_equal(fused.codes, predict(plain.codes, shape))
    assert encode_residuals(fused.codes, shape) == encode_codes(plain.codes, shape)
    assert np.array_equal(decode_codes(encode_residuals(fused.codes, shape)).reshape(-1), plain.codes)
    with pytest.raises(UnsupportedInputError, match="unpredict them first"):
        dequantize(fused)


@pytest.mark.parametrize("shape", [(70_000,), (3, 70_001), (2, 2, 66_000), (200_000, 1), (2 * 16_384 + 1,)])
def test_long_rows_take_the_segmented_kernels_with_the_same_results(shape):
    """Rows longer than the ring's (1-D arrays above all: flat MPI buffers) are quantized in
    segments, each repeating the code before it."""
    rng = np.random.default_rng(len(shape))
    x = np.cumsum(rng.standard_normal(shape), axis=-1).astype(np.float32)
    flat = x.reshape(-1)
    flat[[5, 16_384, 16_385, flat.size - 1]] = [np.nan, 1e30, -0.0, np.inf]
    plain = quantize(x, 1e-3)
    fused = quantize(x, 1e-3, predict=True)
    assert np.array_equal(fused.codes, predict(plain.codes, shape))
    assert np.array_equal(fused.outlier_index, plain.outlier_index)
    assert np.array_equal(quantize_residuals(x, 1e-3), fused.codes)


@pytest.mark.parametrize("shape", [(0,), (3000, 0), (0, 5, 7)])
def test_empty_arrays_pass_every_integer_stage(shape):
    x = np.zeros(shape, np.float32)
    assert quantize_residuals(x, 0.1).size == 0 and quantize(x, 0.1, predict=True).codes.size == 0
    codes = np.zeros(shape, np.int32)
    assert predict(codes).size == 0 and unpredict(codes.reshape(-1)).size == 0
    assert decode_codes(encode_codes(codes)).shape == shape
    assert decode_codes(encode_codes(codes, predict=False)).shape == shape


def test_the_integer_type_is_checked():
    x = np.zeros(10, np.float32)
    for bad in (np.int16, np.float64, np.uint32):
        for fn in (quantize, quantize_residuals):
            with pytest.raises(UnsupportedInputError, match="int_dtype must be int32 or int64"):
                fn(x, 0.1, int_dtype=bad)
    with pytest.raises(UnsupportedInputError, match="does not match out="):
        quantize_residuals(x, 0.1, out=np.zeros(10, np.int64), int_dtype=np.int32)


def test_a_forged_shape_whose_product_wraps_around_is_rejected():
    import struct
    import zlib

    blob = encode_codes(np.arange(4, dtype=np.int32))
    head = bytearray(blob[:52])  # the fixed header; the one dimension follows
    assert struct.unpack_from("<Q", blob, 52)[0] == 4
    head[5] = 2  # two dimensions: 4 x (2**62 + 1), whose product is 4 modulo 2**64
    body = bytes(head) + struct.pack("<2Q", 4, 2**62 + 1) + blob[60:-4]
    decode_codes(bytes(blob[:-4]) + struct.pack("<I", zlib.crc32(blob[:-4])))  # the resealing itself is sound
    with pytest.raises(CorruptStreamError, match="inconsistent"):
        decode_codes(body + struct.pack("<I", zlib.crc32(body)))
    with pytest.raises(UnsupportedInputError, match="integers"):
        encode_codes(np.arange(6, dtype=np.int32), shape=(2.0, 3.0))
    with pytest.raises(UnsupportedInputError, match="shape"):
        encode_codes(np.arange(6, dtype=np.int32), shape=(-2, -3))


@pytest.mark.parametrize("shape", [(1,), (1000,), (33, 65), (5, 7, 11), (2, 3, 4, 5), (0,)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_dequantize_residuals_restores_and_writes_in_one_pass(shape, dtype):
    rng = np.random.default_rng(7)
    codes = rng.integers(-(2**24), 2**24, size=shape).astype(np.int64)
    for kwargs, expected in (
        ({"eb": 0.05}, dequantize(codes, 0.05, dtype)),
        ({"divisor": 7}, (codes.reshape(-1) / 7).astype(dtype)),
    ):
        residuals = predict(codes, shape)
        out = np.empty(codes.size, dtype)
        assert dequantize_residuals(residuals, shape, out, **kwargs) is out
        assert np.array_equal(out.view(np.uint8), expected.reshape(-1).view(np.uint8))
        assert np.array_equal(residuals, codes.reshape(-1))  # restored in place
    with pytest.raises(UnsupportedInputError, match="exactly one"):
        dequantize_residuals(predict(codes, shape), shape, np.empty(codes.size, dtype))


def test_add_to_and_predict_check_their_arrays():
    blob = encode_codes(np.arange(100, dtype=np.int32), predict=False)
    for bad in (np.zeros(99, np.int32), np.zeros(100, np.int64), np.zeros(200, np.int32)[::2]):
        with pytest.raises(UnsupportedInputError, match="add_to"):
            decode_codes(blob, add_to=bad)
    with pytest.raises(UnsupportedInputError, match="int32 or int64"):
        predict(np.zeros(4, np.float64))
    with pytest.raises(UnsupportedInputError, match="out="):
        predict(np.zeros(4, np.int32), out=np.zeros(4, np.int64))
    with pytest.raises(UnsupportedInputError, match="in place"):
        unpredict(np.zeros(8, np.int32)[::2])
    with pytest.raises(CorruptStreamError, match="without the Lorenzo step"):
        decode_codes(blob, predicted=True)  # what fz asks for: its stages name the Lorenzo step
    assert np.array_equal(decode_codes(blob, predicted=False), np.arange(100))
    with pytest.raises(UnsupportedInputError, match="float32/float64"):
        quantize_residuals(np.zeros(4, np.int32), 1.0)
    with pytest.raises(UnsupportedInputError, match="out="):
        quantize_residuals(np.zeros(4), 1.0, out=np.zeros(5, np.int32))


def test_dense_split_sample_does_not_alias_with_the_data():
    """An even stride of blocks that divides the plane size samples one row of every plane;
    here that row (every 16384th value, as in 64 x 128 planes with a stride of 128 blocks) is
    the only one with small residuals."""
    rng = np.random.default_rng(0)
    r = rng.integers(-8, 8, size=2048 * 128 * 4).astype(np.int32)
    r.reshape(-1, 16384)[:, :128] = 0
    assert bitshuffle.dense_plane_count(r) == bitshuffle.dense_plane_count(r, np.arange(r.size // 128)) > 0
    blocks = bitshuffle.density_sample(r.size // 128)
    assert blocks.size == bitshuffle.DENSITY_SAMPLE_BLOCKS and np.all(np.diff(blocks) > 0)
    assert len(set((blocks % 128).tolist())) > 32


def test_fz_streams_do_not_depend_on_the_thread_count():
    field = demo_field((40, 64, 64))
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = errbound.compress(field, codec="fz", rel=1e-3)
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
        many = errbound.compress(field, codec="fz", rel=1e-3)
    finally:
        numba.set_num_threads(before)
    assert one == many


def test_code_stream_errors_are_specific():
    with pytest.raises(UnsupportedInputError, match="int32 or int64"):
        encode_codes(np.zeros(4, np.float32))
    with pytest.raises(UnsupportedInputError, match="shape"):
        encode_codes(np.zeros(4, np.int32), shape=(3,))
    blob = encode_codes(np.arange(1000, dtype=np.int32))
    with pytest.raises(CorruptStreamError):
        decode_codes(blob[:-1])
    damaged = bytearray(blob)
    damaged[len(blob) // 2] ^= 0x10
    with pytest.raises(CorruptStreamError):
        decode_codes(bytes(damaged))


def test_concurrent_threads_do_not_share_scratch_or_zstd_contexts():
    # fz keeps its temporaries in thread-local scratch and caches zstd contexts per thread:
    # streams made at the same time on several threads must equal the ones made alone
    import threading

    rng = np.random.default_rng(11)
    arrays = [np.cumsum(rng.standard_normal((40, 50, 30)), axis=i % 3).astype(np.float32) for i in range(6)]
    alone = [errbound.compress(a, "fz", abs=1e-2) for a in arrays]
    results = [None] * len(arrays)

    def work(i):
        for _ in range(5):
            blob = errbound.compress(arrays[i], "fz", abs=1e-2)
            assert np.array_equal(errbound.decompress(blob), errbound.decompress(alone[i]))
        results[i] = blob

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(arrays))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == alone


def test_quantize_into_a_callers_buffer():
    x = demo_field((20, 30, 40), seed=3)
    fresh = quantize(x, 1e-3)
    for dtype in (np.int32, np.int64):
        out = np.full(x.size, 7, dtype)
        q = quantize(x, 1e-3, out=out)
        assert q.codes is out or np.shares_memory(q.codes, out)
        np.testing.assert_array_equal(out, fresh.codes)
    with pytest.raises(UnsupportedInputError, match="out="):
        quantize(x, 1e-3, out=np.empty(x.size, np.float32))
    with pytest.raises(UnsupportedInputError, match="out="):
        quantize(x, 1e-3, out=np.empty(x.size - 1, np.int32))
    with pytest.raises(UnsupportedInputError, match="int_dtype"):
        quantize(x, 1e-3, np.int64, out=np.empty(x.size, np.int32))
