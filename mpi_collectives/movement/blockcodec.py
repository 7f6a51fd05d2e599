"""Compressing one block (or chunk) of a data-movement collective within an absolute bound.

With ``codec="fz"`` (the default) a block travels as the fz codec's own stages without its
container: ``errbound.quantized.quantize`` (codes on the grid of step 2 * bound, every
value's reconstruction checked in the output dtype, failures kept exactly as outliers; with
predict=True, their Lorenzo residuals in the same pass), the lossless code stream of
``encode_residuals`` (or ``encode_codes``), then the outliers. That is what ``errbound.compress``
would store, minus the work a message does not need (the container, an extra pass to size
the integer type, copies on decode): on 16 MiB of the CCSM field, one core, 620 against 360
MB/s to encode and 770 against 570 MB/s to decode, for the same ratio. The
decoded values do not depend on how a message is cut into chunks (quantization is pointwise
and the code stream is lossless), so pipelined and unpipelined paths give the same bytes.
Other codecs go through ``errbound.compress``/``decompress`` unchanged.
"""

from __future__ import annotations

import struct

import numpy as np

import errbound
from errbound import quantized as qz

from ..compute import compute
from ..errors import MismatchError

# magic, kind, eb (float64), outlier count, code stream length
_HEAD = struct.Struct("<4sB3xdQQ")
_MAGIC = b"EBmc"
_STREAM, _CODES = 0, 1
# int32 codes hold |x| / (2 bound) < 2**26; when more than this share of a block lands
# outside (huge values against a small bound), int64 codes are cheaper than the outliers
_WIDE_SHARE = 1 / 64


def encode(
    values: np.ndarray, shape: tuple[int, ...], bound: float, codec: str, reconstruct: np.ndarray | None = None
) -> bytes:
    """values (a contiguous 1-D block) compressed within `bound`; with `reconstruct`, also
    write there exactly what a receiver will decode."""
    if codec != "fz":
        with compute():
            blob = errbound.compress(values.reshape(shape), codec=codec, abs=bound)
        payload = _HEAD.pack(_MAGIC, _STREAM, bound, 0, len(blob)) + blob
        if reconstruct is not None:
            decode(payload, reconstruct)
        return payload
    # the reconstruction needs the codes; a plain send only their residuals, which the
    # quantizer makes in the same pass without storing the codes
    predict = reconstruct is None
    with compute():
        q = qz.quantize(values.reshape(shape), bound, np.int32, predict=predict)
        if q.outlier_index.size > values.size * _WIDE_SHARE:
            q = qz.quantize(values.reshape(shape), bound, np.int64, predict=predict)
        if predict:
            stream = qz.encode_residuals(q.codes, shape)
        else:
            stream = qz.encode_codes(q.codes, shape)
            qz.dequantize(q.codes, bound, out=reconstruct.reshape(-1))
    if reconstruct is not None and q.outlier_index.size:
        reconstruct[q.outlier_index] = q.outlier_value
    head = _HEAD.pack(_MAGIC, _CODES, bound, q.outlier_index.size, len(stream))
    return b"".join((head, stream, q.outlier_index.astype(np.int64).tobytes(), q.outlier_value.tobytes()))


def decode(payload, target: np.ndarray) -> None:
    """Decode a block made by encode() into target (1-D, the block's dtype and size)."""
    view = memoryview(payload).cast("B")
    if len(view) < _HEAD.size:
        raise MismatchError("received a truncated block")
    magic, kind, bound, outliers, length = _HEAD.unpack_from(view, 0)
    body = view[_HEAD.size : _HEAD.size + length]
    if magic != _MAGIC or kind not in (_STREAM, _CODES) or len(body) != length:
        raise MismatchError("received a block that is not a compressed collective block")
    if kind == _STREAM:
        with compute():
            values = errbound.decompress(body)
        if values.size != target.size or values.dtype != target.dtype:
            raise MismatchError(
                f"received {values.size} {values.dtype} values for a block of {target.size} {target.dtype}"
            )
        target[...] = np.ravel(values, order="K")
        return
    tail = view[_HEAD.size + length :]
    if len(tail) != outliers * (8 + target.dtype.itemsize):
        raise MismatchError("received a block whose outlier list is truncated")
    with compute():
        codes = qz.decode_codes(body, scratch_slot="collective-block", predicted=True).reshape(-1)
        if codes.size != target.size:
            raise MismatchError(f"received {codes.size} values for a block of {target.size}")
        qz.dequantize(codes.reshape(-1), bound, out=target.reshape(-1))
    if outliers:
        index = np.frombuffer(tail[: 8 * outliers], np.int64)
        if index.min() < 0 or index.max() >= target.size:
            raise MismatchError("received a block whose outlier list points outside it")
        target[index] = np.frombuffer(tail[8 * outliers :], target.dtype)
