"""Integer codes, in the open: the `fz` codec's exact stages as a public sub-API.

Compressed collectives reduce quantized data exactly: every rank quantizes on a common
grid, the ranks add *integers*, and only the final sum is turned back into floats. That
needs the stages below without the float container around them:

    q = quantize(x, eb)                      # QuantizedArray: integer codes + exact outliers
    blob = encode_codes(q.codes, x.shape)    # lossless: Lorenzo + zigzag + bit shuffle + zstd
    codes = decode_codes(blob)               # the same integers, bit for bit
    y = dequantize(codes, eb, x.dtype)       # codes * 2eb in the output dtype

``decode_codes(encode_codes(c))`` is the identity for any int32/int64 array (it is exact
integer arithmetic), so sums of decoded codes are the same on every rank and machine.

The Lorenzo step is public too, because it is linear: ``predict(a + b) == predict(a) +
predict(b)`` in wrapping integer arithmetic. A reduction can therefore predict each rank's
codes once, add *residuals* on the way, and restore only the final sum:

    r = predict(q.codes, shape)                      # Lorenzo residuals (or, in one pass
                                                     # and without outliers: quantize_residuals)
    blob = encode_codes(r, shape, predict=False)     # stored as they are
    decode_codes(blob, add_to=acc)                   # acc += the residuals, in one pass
    codes = unpredict(acc, shape)                    # in place: the codes of the sum
"""

from __future__ import annotations

import math
import operator
import struct
import zlib
from dataclasses import dataclass

import numpy as np

from .errors import CorruptStreamError, UnsupportedInputError
from .layout import MAX_DIMS
from .scratch import scratch
from .stages.coders import bitshuffle
from .stages.coders.zstd import ZstdLossless
from .stages.corrections.patches import decode_patches, encode_patches
from .stages.predictors.integer_lorenzo import lorenzo_residuals, lorenzo_restore
from .stages.predictors.integer_lorenzo import quantize_residuals as _quantize_residuals
from .stages.quantizers.prequantize import code_type, prequantize
from .stages.quantizers.prequantize import dequantize as _dequantize

__all__ = [
    "QuantizedArray",
    "quantize",
    "dequantize",
    "encode_codes",
    "decode_codes",
    "predict",
    "unpredict",
    "quantize_residuals",
    "encode_residuals",
    "dequantize_residuals",
    "first_use",
    "compiled_once_per_cache",
]

_MAGIC = b"EBQ1"
# magic, int bytes, ndim, code width, dense planes, flags, lengths of masks / dense planes /
# sparse planes / wide residuals, count
_HEAD = struct.Struct("<4sBBBBB3xQQQQQ")
_CHECKSUM = 1
_UNPREDICTED = 2  # the values were stored as they are, not as Lorenzo residuals
_CRC = struct.Struct("<I")
# zstd where it pays: the block bitmaps and the sparse (high) bit planes; the dense low
# planes are close to random and are stored as they are
_LOSSLESS = ZstdLossless(level=1)


@dataclass
class QuantizedArray:
    """Integer codes on the grid of step 2*eb, plus the values that must be stored exactly."""

    codes: np.ndarray  # flat int32 or int64, C order of the array
    outlier_index: np.ndarray  # flat indices (int64)
    outlier_value: np.ndarray  # exact values (the input dtype)
    eb: float
    shape: tuple[int, ...]
    dtype: np.dtype
    predicted: bool = False  # codes holds their Lorenzo residuals (quantize(predict=True))


def quantize(
    data: np.ndarray, eb: float, int_dtype=None, out: np.ndarray | None = None, predict: bool = False
) -> QuantizedArray:
    """q = round(x / 2eb). Points whose reconstruction q*2eb misses eb in the input dtype, that
    overflow the integer type, or are NaN/Inf/-0.0 are listed as exact outliers.

    ``out`` (a C-contiguous int32/int64 array with one element per value) receives the codes
    instead of a fresh array, and its dtype is the integer type: callers that quantize many
    messages reuse their buffers (a fresh array costs page faults on first touch).
    ``predict=True`` gives predict(codes) instead of the codes, in the same single pass (the
    codes themselves are never stored), ready for encode_residuals: what the fz codec does."""
    _check_quantize_args("quantize", data, out, int_dtype)
    contiguous = np.ascontiguousarray(data)
    if not predict:
        codes, idx, values = prequantize(contiguous, float(eb), int_dtype, out=None if out is None else out.reshape(-1))
        return QuantizedArray(codes, idx, values, float(eb), data.shape, data.dtype)
    flat = contiguous.reshape(-1)
    int_dtype, limit = code_type(flat, float(eb), int_dtype, out)
    residuals = np.empty(flat.size, int_dtype) if out is None else out.reshape(-1)
    bad = scratch("prequantize-bad", flat.size, np.bool_)
    _quantize_residuals(flat, float(eb), limit, residuals, data.shape, bad)
    idx = np.flatnonzero(bad)
    return QuantizedArray(residuals, idx, flat[idx].copy(), float(eb), data.shape, data.dtype, True)


def _check_quantize_args(what: str, data, out, int_dtype) -> None:
    if not isinstance(data, np.ndarray) or data.dtype.kind != "f":
        raise UnsupportedInputError(f"{what} expects a float32/float64 numpy array")
    if out is not None and not (
        isinstance(out, np.ndarray)
        and out.dtype in (np.int32, np.int64)
        and out.flags.c_contiguous
        and out.flags.writeable
        and out.size == data.size
    ):
        raise UnsupportedInputError("out= must be a writable C-contiguous int32/int64 array with one element per value")
    if int_dtype is not None and np.dtype(int_dtype) not in (np.int32, np.int64):
        raise UnsupportedInputError(f"int_dtype must be int32 or int64, got {np.dtype(int_dtype)}")
    if out is not None and int_dtype is not None and np.dtype(int_dtype) != out.dtype:
        raise UnsupportedInputError(f"int_dtype {np.dtype(int_dtype)} does not match out= of {out.dtype}")


def dequantize(
    codes: np.ndarray | QuantizedArray, eb: float | None = None, dtype=None, out: np.ndarray | None = None
) -> np.ndarray:
    """codes * 2eb in dtype (outliers of a QuantizedArray put back exactly): the float64
    product, rounded once. ``out`` (C-contiguous, as many elements as codes) receives the
    values in place, e.g. a message buffer; its dtype is the output dtype."""
    if out is not None:
        if not (
            isinstance(out, np.ndarray)
            and out.flags.c_contiguous
            and out.dtype.kind == "f"
            and out.size == np.size(codes.codes if isinstance(codes, QuantizedArray) else codes)
        ):
            raise UnsupportedInputError("out= must be a C-contiguous float array with one element per code")
        dtype = out.dtype
    if isinstance(codes, QuantizedArray):
        q = codes
        if q.predicted:
            raise UnsupportedInputError(
                "these codes are Lorenzo residuals (quantize(predict=True)): unpredict them first"
            )
        result = _dequantize(q.codes, q.eb, dtype or q.dtype, q.outlier_index, q.outlier_value, out=out)
        return out if out is not None else result.reshape(q.shape)
    result = _dequantize(np.ascontiguousarray(codes).reshape(-1), float(eb), np.dtype(dtype), out=out)
    return out if out is not None else result


def predict(codes: np.ndarray, shape=None, out: np.ndarray | None = None) -> np.ndarray:
    """First-order Lorenzo residuals of int32/int64 codes (flat, C order of `shape`), wrapping;
    into ``out`` (flat, same size and dtype) when given. Linear in the codes."""
    codes = np.ascontiguousarray(codes)
    shape = _checked_shape(codes, shape)
    if out is not None and not (
        isinstance(out, np.ndarray)
        and out.dtype == codes.dtype
        and out.size == codes.size
        and out.flags.c_contiguous
        and out.flags.writeable
    ):
        raise UnsupportedInputError(f"out= must be a writable C-contiguous {codes.dtype} array of {codes.size} values")
    return lorenzo_residuals(codes.reshape(-1), shape, None if out is None else out.reshape(-1))


def unpredict(residuals: np.ndarray, shape=None) -> np.ndarray:
    """Inverse of predict, in place on a writable C-contiguous int32/int64 array; returns it
    (flat)."""
    if not (isinstance(residuals, np.ndarray) and residuals.flags.c_contiguous and residuals.flags.writeable):
        raise UnsupportedInputError("unpredict works in place: give it a writable C-contiguous array")
    shape = _checked_shape(residuals, shape)
    return lorenzo_restore(residuals.reshape(-1), shape)


def dequantize_residuals(
    residuals: np.ndarray, shape, out: np.ndarray, *, eb: float | None = None, divisor: int | None = None
) -> np.ndarray:
    """unpredict(residuals, shape) and the floats of the codes in one pass: residuals become
    the codes (in place) and ``out`` (C-contiguous floats, one per code) receives
    ``codes * 2eb`` as dequantize() computes it, or with ``divisor=M`` the correctly rounded
    ``codes / M`` (a grid of step 1/M), each rounded once to out's dtype. Returns out.
    Outliers are the caller's to put back."""
    if (eb is None) == (divisor is None):
        raise UnsupportedInputError("dequantize_residuals takes exactly one of eb= and divisor=")
    if not (
        isinstance(out, np.ndarray)
        and out.flags.c_contiguous
        and out.flags.writeable
        and out.dtype.kind == "f"
        and out.size == np.size(residuals)
    ):
        raise UnsupportedInputError("out= must be a writable C-contiguous float array with one element per code")
    if not (isinstance(residuals, np.ndarray) and residuals.flags.c_contiguous and residuals.flags.writeable):
        raise UnsupportedInputError("dequantize_residuals restores in place: give it a writable C-contiguous array")
    shape = _checked_shape(residuals, shape)
    if divisor is not None:
        lorenzo_restore(residuals.reshape(-1), shape, out.reshape(-1), float(divisor), divide=True)
    else:
        lorenzo_restore(residuals.reshape(-1), shape, out.reshape(-1), 2.0 * float(eb))
    return out


def quantize_residuals(data: np.ndarray, eb: float, out: np.ndarray | None = None, int_dtype=None) -> np.ndarray:
    """predict(quantize(data, eb).codes, data.shape), flat, in one pass over the data: the
    codes are formed row by row in cache and never stored (measured 2x faster than the two
    steps). There is no outlier list: values that quantize() would list keep its codes (0
    for NaN, +-Inf, -0.0 and values off the integer grid, the nearest code otherwise), for
    callers that treat such points themselves, as a reduction does. ``out`` and
    ``int_dtype`` as in quantize()."""
    _check_quantize_args("quantize_residuals", data, out, int_dtype)
    flat = np.ascontiguousarray(data).reshape(-1)
    int_dtype, limit = code_type(flat, float(eb), int_dtype, out)
    result = np.empty(flat.size, int_dtype) if out is None else out
    _quantize_residuals(flat, float(eb), limit, result.reshape(-1), data.shape)
    return result


def _checked_shape(codes: np.ndarray, shape) -> tuple[int, ...]:
    if codes.dtype not in (np.int32, np.int64):
        raise UnsupportedInputError(f"integer codes must be int32 or int64, got {codes.dtype}")
    try:
        shape = tuple(operator.index(n) for n in (codes.shape if shape is None else shape))
    except TypeError:
        raise UnsupportedInputError(f"shape {shape} is not a tuple of integers") from None
    # math.prod is exact: a product that wraps around in int64 cannot pass for the size
    if len(shape) > MAX_DIMS or min(shape, default=0) < 0 or math.prod(shape) != codes.size:
        raise UnsupportedInputError(f"shape {shape} does not describe {codes.size} codes (at most {MAX_DIMS}-D)")
    return shape


@dataclass
class CodeStreamParts:
    """The pieces of an encoded code stream, as the bit-shuffle stage produces them."""

    shape: tuple[int, ...]
    dtype: np.dtype  # int32 or int64
    width: int
    dense: int  # planes below this index are stored without zstd
    masks: np.ndarray  # per-block plane bitmaps
    dense_planes: np.ndarray  # uint32 words
    sparse_planes: np.ndarray  # uint32 words
    wide_index: np.ndarray
    wide_value: np.ndarray
    predicted: bool = True  # the planes hold Lorenzo residuals (else the values themselves)


def encode_codes(
    codes: np.ndarray, shape=None, width: int | None = None, checksum: bool = True, predict: bool = True
) -> bytes:
    """Losslessly encode an int32/int64 code array (flat, C order of `shape`).

    ``width`` caps the zigzagged residual width (wider ones are stored exactly on the side);
    ``checksum=False`` leaves out the CRC-32 when an outer container already carries one;
    ``predict=False`` stores the values as they are, for values that are residuals already
    (see predict()); decode_codes gives back exactly the array given here either way.
    """
    codes = np.ascontiguousarray(codes)
    shape = _checked_shape(codes, shape)
    if predict:
        residuals = lorenzo_residuals(codes.reshape(-1), shape, scratch("codes-residuals", codes.size, codes.dtype))
        return _encode_planes(residuals, shape, width, checksum, predicted=True)
    return _encode_planes(codes.reshape(-1), shape, width, checksum, predicted=False)


def encode_residuals(residuals: np.ndarray, shape=None, width: int | None = None, checksum: bool = True) -> bytes:
    """The stream encode_codes(codes, shape) writes, made from residuals = predict(codes,
    shape) (as quantize(predict=True) gives them): decode_codes returns the codes."""
    residuals = np.ascontiguousarray(residuals)
    shape = _checked_shape(residuals, shape)
    return _encode_planes(residuals.reshape(-1), shape, width, checksum, predicted=True)


def _encode_planes(
    values: np.ndarray, shape: tuple[int, ...], width: int | None, checksum: bool, predicted: bool
) -> bytes:
    masks, dense_planes, sparse_planes, wide_idx, wide_val, dense = bitshuffle.shuffle(values, width)
    bits = values.dtype.itemsize * 8
    parts = CodeStreamParts(
        shape,
        values.dtype,
        bits if width is None else int(width),
        dense,
        masks,
        dense_planes,
        sparse_planes,
        wide_idx,
        wide_val,
        predicted,
    )
    return pack_code_stream(parts, checksum)


def pack_code_stream(parts: CodeStreamParts, checksum: bool = True) -> bytes:
    # the dense planes go in as a stored lossless section (method byte 0), without a copy
    stored_dense = [b"\x00", np.ascontiguousarray(parts.dense_planes)]
    sections = [
        [_LOSSLESS.compress(np.ascontiguousarray(parts.masks))],
        stored_dense,
        [_LOSSLESS.compress(np.ascontiguousarray(parts.sparse_planes))],
        [encode_patches(parts.wide_index, parts.wide_value, _LOSSLESS) if parts.wide_index.size else b""],
    ]
    lengths = [sum(memoryview(piece).nbytes for piece in sec) for sec in sections]
    count = math.prod(parts.shape)
    head = _HEAD.pack(
        _MAGIC,
        parts.dtype.itemsize,
        len(parts.shape),
        parts.width,
        parts.dense,
        (_CHECKSUM if checksum else 0) | (0 if parts.predicted else _UNPREDICTED),
        *lengths,
        count,
    )
    dims = struct.pack(f"<{len(parts.shape)}Q", *parts.shape)
    body = b"".join([head, dims, *(piece for sec in sections for piece in sec)])
    return body + (_CRC.pack(zlib.crc32(body)) if checksum else b"")


def unpack_code_stream(blob, count: int | None = None, check=None) -> CodeStreamParts:
    """Check and split a code stream; every length is validated before anything is decoded.
    ``count``: the number of codes the caller expects (a container's shape, a message's
    size); a stream declaring another number is refused before anything is allocated.
    ``check(count, dtype)`` sees the declared count and code type at the same point."""
    view = memoryview(blob).cast("B")
    if len(view) < _HEAD.size:
        raise CorruptStreamError("code stream is truncated")
    magic, itemsize, ndim, width, dense, flags, *lengths, declared = _HEAD.unpack_from(view, 0)
    if magic != _MAGIC or itemsize not in (4, 8) or ndim > MAX_DIMS or dense > 8 * itemsize or flags > 3:
        raise CorruptStreamError("not an errbound code stream")
    if count is not None and declared != count:
        raise CorruptStreamError(f"code stream holds {declared} codes where {count} were expected")
    count = declared
    if check is not None:
        check(count, np.dtype(np.int32 if itemsize == 4 else np.int64))
    end = len(view)
    if flags & _CHECKSUM:
        if end < _HEAD.size + _CRC.size:
            raise CorruptStreamError("code stream is truncated")
        end -= _CRC.size
        (crc,) = _CRC.unpack_from(view, end)
        if zlib.crc32(view[:end]) != crc:
            raise CorruptStreamError("code stream checksum mismatch: truncated or damaged")
    pos = _HEAD.size
    if pos + 8 * ndim > end:
        raise CorruptStreamError("code stream is truncated")
    shape = struct.unpack_from(f"<{ndim}Q", view, pos)
    pos += 8 * ndim
    if math.prod(shape) != count or pos + sum(lengths) != end:
        raise CorruptStreamError("code stream lengths are inconsistent")
    sections = []
    for length in lengths:
        sections.append(view[pos : pos + length])
        pos += length
    dtype = np.dtype(np.int32 if itemsize == 4 else np.int64)
    nblocks = (count + bitshuffle.BLOCK - 1) // bitshuffle.BLOCK
    raw_masks = _LOSSLESS.decompress(sections[0], nblocks * itemsize)
    if len(raw_masks) != nblocks * itemsize:
        raise CorruptStreamError("code stream block bitmap has the wrong length")
    masks = np.frombuffer(raw_masks, np.uint32 if itemsize == 4 else np.uint64)
    need_dense, need_sparse = bitshuffle.planes_needed(masks, dense)
    planes = []
    for section, need in ((sections[1], need_dense), (sections[2], need_sparse)):
        raw = _LOSSLESS.decompress(section, need * 4)
        if len(raw) != need * 4:
            raise CorruptStreamError("code stream bit planes do not match the block bitmaps")
        planes.append(np.frombuffer(raw, np.uint32))
    if lengths[3]:
        wide_idx, wide_val = decode_patches(sections[3], dtype, count, _LOSSLESS)
    else:
        wide_idx, wide_val = np.zeros(0, np.int64), np.zeros(0, dtype)
    return CodeStreamParts(
        tuple(shape), dtype, width, dense, masks, planes[0], planes[1], wide_idx, wide_val, not flags & _UNPREDICTED
    )


def decode_codes(
    blob,
    *,
    scratch_slot: str | None = None,
    add_to: np.ndarray | None = None,
    predicted: bool | None = None,
    count: int | None = None,
) -> np.ndarray:
    """Inverse of encode_codes: the integer array that was encoded, reshaped to its shape.

    ``scratch_slot`` decodes into that thread-local scratch slot (see errbound.scratch)
    instead of a fresh array, for callers that are done with the codes before they decode
    again on the same thread. ``add_to`` (a writable C-contiguous array of the stream's
    size and integer type) receives add_to + the decoded values, wrapping, and is returned;
    for a stream of predict=False this is one pass over the data. ``predicted`` (True or
    False) requires the stream to have been written with that predict= setting, as a
    container whose stage chain names the Lorenzo step does. ``count`` (or ``add_to``'s size)
    is the number of codes expected: for streams from elsewhere, it keeps a forged stream
    from declaring a huge array (checked before anything is allocated)."""

    def check_add_to(declared: int, dtype: np.dtype) -> None:
        if not (
            isinstance(add_to, np.ndarray)
            and add_to.dtype == dtype
            and add_to.size == declared
            and add_to.flags.c_contiguous
            and add_to.flags.writeable
        ):
            raise UnsupportedInputError(
                f"add_to= must be a writable C-contiguous {dtype} array of {declared} values, as the stream holds"
            )

    parts = unpack_code_stream(blob, count, None if add_to is None else check_add_to)
    if predicted is not None and parts.predicted != predicted:
        raise CorruptStreamError(
            "code stream was written "
            + ("without" if predicted else "with")
            + " the Lorenzo step, unlike what its container says"
        )
    count = math.prod(parts.shape)
    if add_to is not None:  # checked against the stream's declaration before it was unpacked
        if not parts.predicted:
            flat = add_to.reshape(-1)
            bitshuffle.unshuffle(
                parts.masks, parts.dense_planes, parts.sparse_planes, parts.dense, count, parts.dtype, flat, add=True
            )
            if parts.wide_index.size:
                flat[parts.wide_index] += parts.wide_value  # unshuffle added zeros there
            return add_to
        np.add(add_to.reshape(-1), _decode(parts, count, "decode-add"), out=add_to.reshape(-1))
        return add_to
    return _decode(parts, count, scratch_slot).reshape(parts.shape)


def _decode(parts: CodeStreamParts, count: int, scratch_slot: str | None) -> np.ndarray:
    out = None if scratch_slot is None else scratch(scratch_slot, count, parts.dtype)
    values = bitshuffle.unshuffle(
        parts.masks, parts.dense_planes, parts.sparse_planes, parts.dense, count, parts.dtype, out
    )
    if parts.wide_index.size:
        values[parts.wide_index] = parts.wide_value
    return lorenzo_restore(values, parts.shape) if parts.predicted else values


def first_use(name: str, what: str, hint: str, *, shared: bool = False, say: bool = True):
    """A context manager for a package that calls these kernels directly and warms them up
    (mpi_collectives): the block runs as errbound's codecs run their first use, under a
    lock between processes sharing the numba cache (one compiles, the others then load)
    unless a stamp shows it done, and with the compile notice (``what`` is compiling, then
    ``hint``) where it compiles for more than a second. ``shared``: processes running the
    block together split its compiles between them instead (each signature of each kernel
    compiles once, in whichever process gets to it first; the others wait for it and load
    it), so that they should take the work in different orders; ``say=False``: this
    process gives no notice (another of the group does)."""
    from .compiling import first_use as codec_first_use  # numba: loaded here, not by `import errbound.quantized`

    return codec_first_use(("quantized", name), what, hint, shared=shared, say=say)


def compiled_once_per_cache(dispatcher):
    """For a package's own numba kernels beside these (``cache=True``): processes sharing
    the cache compile each signature once between them, as errbound's own kernels do, and
    never write the cache at once (see errbound.compiling). Returns ``dispatcher``."""
    from .compiling import compiled_once_per_cache as share

    return share(dispatcher)
