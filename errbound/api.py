"""The public entry points: compress, decompress, info.

Everything that is the same for every codec happens here, once: input checks, the bound
modes, memory order and byte order, the pw_rel transform, the after-the-fact check that
patches codecs which do not check their own bound, the PSNR retry loop, the lossless
fallback, and the container.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

from . import stream
from .bounds import Bound, absolute_bound, finite_range, parse_bound, psnr_to_abs
from .bounds import psnr as measure_psnr
from .codec import Codec, get_codec
from .device import finite_range as device_finite_range
from .device import is_device_array, require_cupy
from .errors import (
    BoundError,
    CodecOptionError,
    CorruptStreamError,
    OutputLimitError,
    UnknownCodecError,
    UnsupportedInputError,
    UnsupportedStreamError,
)
from .layout import MAX_DIMS, from_kernel_layout, to_kernel_layout
from .stages.coders.zstd import ZstdLossless
from .stages.corrections.patches import decode_patches, encode_patches, violations
from .stages.transforms.pwrel import PointwiseRelative, pack_mask, unpack_mask
from .stream import section

PSNR_RETRIES = 8
# A header claiming a larger array is corrupt: it keeps every size derived from the shape
# (buffer limits, numpy shapes) far inside 64-bit integers.
MAX_STREAM_ARRAY_BYTES = 1 << 56


def compress(
    data,
    codec: str = "sz",
    *,
    abs=None,  # noqa: A002 - the public keyword
    rel=None,
    pw_rel=None,
    psnr=None,
    **options,
) -> bytes:
    """Compress a float32/float64 array so every value comes back within the bound.

    Exactly one bound: ``abs`` (|x - x'| <= abs), ``rel`` (abs = rel * (max - min) of the
    finite values), ``pw_rel`` (|x - x'| <= pw_rel * |x|, zeros exact) or ``psnr`` (the
    result's PSNR in dB is at least this). NaN, +-Inf and -0.0 always round-trip exactly.
    ``options`` go to the codec (see ``errbound.codecs()``).
    """
    if is_device_array(data):
        return _compress_device(data, codec, parse_bound(abs=abs, rel=rel, pw_rel=pw_rel, psnr=psnr), options)
    array = _check_input(data)
    bound = parse_bound(abs=abs, rel=rel, pw_rel=pw_rel, psnr=psnr)
    codec_obj = _make_codec(codec, options)
    native = array.astype(array.dtype.newbyteorder("="), copy=False)
    work, order = to_kernel_layout(native.reshape(native.shape or (1,)))
    header = stream.Header(
        codec=codec_obj.name,
        codec_version=codec_obj.version,
        dtype=array.dtype.str,
        shape=array.shape,
        order=order,
        bound=bound.to_json(),
        abs_bound=None,
    )
    if work.size == 0 or codec_obj.name == "raw":  # raw is lossless: exact under every bound
        return _pack_raw(header, work)
    kernels = np.dtype(np.float64) if bound.mode == "pw_rel" else work.dtype  # pw_rel codes log2|x|
    with _first_use("encode", codec_obj.name, kernels, work.ndim):
        if bound.mode == "pw_rel":
            blob = _compress_pw_rel(header, codec_obj, work, bound)
        elif bound.mode == "psnr":
            blob = _compress_psnr(header, codec_obj, work, bound)
        else:
            blob = _compress_abs(header, codec_obj, work, absolute_bound(bound, work))
    if len(blob) > work.nbytes + stream.OVERHEAD + 512:
        raw = _pack_raw(header, work)
        if len(raw) < len(blob):
            return raw
    return blob


def decompress(
    blob, out: np.ndarray | None = None, device: str | None = None, *, max_bytes: int | None = None
) -> np.ndarray:
    """Decode a stream made by :func:`compress` into an array of the original dtype and shape.

    ``max_bytes`` refuses (with :class:`~errbound.errors.OutputLimitError`) a stream whose
    declared array is larger, before anything is allocated: use it for streams from
    untrusted sources, where a few bytes may legitimately describe gigabytes (a constant
    array compresses to nothing). ``out=`` (an array of the stream's shape and dtype)
    receives the values and caps the size the same way. ``device="gpu"`` (or a CuPy ``out=``)
    decodes on the GPU and returns a CuPy array; codecs without GPU kernels decode on the
    host and are copied over.
    """
    if device not in (None, "cpu", "gpu"):
        raise UnsupportedInputError(f"device must be 'cpu' or 'gpu', got {device!r}")
    if device == "gpu" or is_device_array(out):
        return _decompress_device(blob, out, max_bytes)
    header, sections = stream.unpack(blob, shared=True)
    shape = header.shape
    # what the header alone says, checked once for a shared one (the chunks of a dataset)
    memo = stream.derived(header.stages)
    checked = None if memo is None else memo.get("decompress")
    if checked is None:
        dtype = _header_dtype(header)
        if header.order not in ("C", "F"):
            raise CorruptStreamError(f"unknown memory order {header.order!r} in stream header")
    else:
        dtype, codec, pw_rel = checked
    count = math.prod(shape)
    _check_output(out, shape, dtype)
    _check_size(count * dtype.itemsize, shape, dtype, max_bytes)
    if checked is None:
        codec = _codec_for(header)
        if count == 0 and header.codec != "raw":  # compress stores every empty array with "raw"
            raise CorruptStreamError(f"stream header has an empty shape {shape} for a {header.codec!r} stream")
        pw_rel = PointwiseRelative.present(header.stages)
        if memo is not None:
            memo["decompress"] = dtype, codec, pw_rel
    try:
        kernels = np.dtype(np.float64) if pw_rel else dtype.newbyteorder("=")  # pw_rel codes log2|x|
        with _first_use("decode", header.codec, kernels, max(len(shape), 1)):
            result = _decode(header, codec, sections, shape, dtype, pw_rel)
    except MemoryError:
        raise OutputLimitError(
            f"not enough memory to decode the declared {shape} {dtype} array ({count * dtype.itemsize} bytes)"
        ) from None
    if out is not None:
        np.copyto(out, result)
        return out
    if header.order == "F" and result.ndim >= 2:
        return np.asfortranarray(result)
    return np.ascontiguousarray(result).reshape(shape)  # ascontiguousarray makes 0-d 1-d


_FIRST_USES_DONE: set[tuple] = set()


def _first_use(direction: str, codec: str, dtype: np.dtype, ndim: int):
    """The first encode or decode of a codec for a dtype and number of dimensions in this
    process compiles (or loads) its kernels: errbound.compiling coordinates that (a lock between
    processes, a notice when it takes long). Later calls skip it for a set lookup."""
    key = (direction, codec, dtype.char, ndim)
    if key in _FIRST_USES_DONE or codec == "raw":
        return contextlib.nullcontext()
    return _first_use_block(key, f"{codec} {direction}r ({ndim}-D {dtype})")


@contextlib.contextmanager
def _first_use_block(key: tuple, what: str):
    from .compiling import first_use  # numba: loaded with the first codec, never by `import errbound`

    with first_use(key, what):
        yield
    # only a call that got through marks the path warm: a first call that failed (a corrupt
    # stream, a bad bound) leaves the next one under the compile lock and its notice
    _FIRST_USES_DONE.add(key)


def _decode(header, codec, sections, shape, dtype, pw_rel: bool) -> np.ndarray:
    kernel_shape = (shape or (1,))[::-1] if header.order == "F" else (shape or (1,))
    native = dtype.newbyteorder("=")
    flat = _decode_values(header, codec, sections, kernel_shape, native, pw_rel)
    if "patches" in sections:
        idx, values = decode_patches(sections["patches"], native, flat.size)
        flat[idx] = values
    result = from_kernel_layout(flat.reshape(kernel_shape), header.order).reshape(shape)
    return result.astype(dtype, copy=False)


def _check_output(out, shape, dtype) -> None:
    """out= must be a writable numpy array of the stream's shape and dtype (checked before decoding)."""
    if out is None:
        return
    if not isinstance(out, np.ndarray) or out.shape != tuple(shape) or out.dtype != dtype:
        raise UnsupportedInputError(
            f"out= must be a numpy array of shape {tuple(shape)} and dtype {dtype}, got "
            f"{getattr(out, 'shape', None)} {getattr(out, 'dtype', type(out).__name__)}"
        )
    if not out.flags.writeable:
        raise UnsupportedInputError("out= is a read-only array")


def _check_size(nbytes: int, shape, dtype, max_bytes: int | None) -> None:
    if max_bytes is None:
        return
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, (int, np.integer)) or max_bytes < 0:
        raise UnsupportedInputError(f"max_bytes must be an integer >= 0, got {max_bytes!r}")
    if nbytes > max_bytes:
        raise OutputLimitError(
            f"stream declares a {tuple(shape)} {dtype} array of {nbytes} bytes, above max_bytes={int(max_bytes)}"
        )


def info(blob) -> dict:
    """The stream's header as a dict, plus sizes and the compression ratio."""
    header, _ = stream.unpack(blob)
    dtype = _header_dtype(header)
    original = math.prod(header.shape) * dtype.itemsize
    return {
        "codec": header.codec,
        "codec_version": header.codec_version,
        "dtype": str(dtype),
        "shape": header.shape,
        "order": header.order,
        "bound": header.bound,
        "abs_bound": header.abs_bound,
        "stages": header.stages,
        "sections": dict(header.sections),
        "original_bytes": original,
        "compressed_bytes": len(blob),
        "ratio": original / len(blob) if len(blob) else math.inf,
        "format_version": "{}.{}".format(*header.format),
    }


# ---------------------------------------------------------------------------------------------


def _make_codec(name, options: dict) -> Codec:
    if not isinstance(name, str):
        raise UnknownCodecError(f"codec must be a codec name (a str), got {type(name).__name__} {name!r}")
    cls = get_codec(name)
    try:
        return cls(**options)
    except (TypeError, ValueError) as exc:
        raise CodecOptionError(f"codec '{name}': {exc}") from None


def _check_input(data) -> np.ndarray:
    if not isinstance(data, np.ndarray):
        raise UnsupportedInputError(f"expected a numpy array of float32 or float64, got {type(data).__name__}")
    if isinstance(data, np.ma.MaskedArray):
        raise UnsupportedInputError(
            "masked arrays are not supported: fill the masked values (e.g. with NaN) or pass .data"
        )
    if data.dtype.kind != "f" or data.dtype.itemsize not in (4, 8):
        raise UnsupportedInputError(f"unsupported dtype {data.dtype}: errbound compresses float32 and float64 arrays")
    if data.ndim > MAX_DIMS:
        raise UnsupportedInputError(f"{data.ndim}-D array: errbound compresses arrays of 0 to {MAX_DIMS} dimensions")
    return data


def _header_dtype(header: stream.Header) -> np.dtype:
    try:
        dtype = np.dtype(header.dtype)
    except Exception:  # numpy parses some strings as Python (",f4": SyntaxError)
        raise CorruptStreamError(f"unknown dtype {header.dtype!r} in stream header") from None
    if dtype.kind != "f" or dtype.itemsize not in (4, 8):
        raise CorruptStreamError(f"stream header names dtype {dtype}, which errbound never writes")
    if (
        len(header.shape) > MAX_DIMS
        or any(n < 0 for n in header.shape)
        or math.prod(max(n, 1) for n in header.shape) * dtype.itemsize > MAX_STREAM_ARRAY_BYTES
    ):
        raise CorruptStreamError(f"stream header has an impossible shape {header.shape}")
    return dtype


def _codec_for(header: stream.Header) -> Codec:
    try:
        cls = get_codec(header.codec)
    except ValueError:
        raise CorruptStreamError(f"stream was written by unknown codec {header.codec!r}") from None
    if header.codec_version > cls.version:
        raise UnsupportedStreamError(
            f"stream needs codec {header.codec} v{header.codec_version}; this errbound has v{cls.version}"
        )
    return cls.__new__(cls)  # decoding needs no options: they are in the stage records


def _decode_values(header, codec, sections, kernel_shape, dtype, pw_rel: bool) -> np.ndarray:
    # The pw_rel transform wraps any codec, raw included: errbound 0.2.0 wrote raw streams of
    # log magnitudes under pw_rel, and they must decode through the inverse transform too.
    if ("signs" in sections or "zeros" in sections) and not pw_rel:
        raise CorruptStreamError("stream has pw_rel sign/zero sections but no pw_rel stage")
    if header.codec == "raw" and not pw_rel:
        return codec.decode(header.stages, sections, kernel_shape, dtype, 0.0).reshape(-1)
    eb = header.abs_bound
    if eb is None or not (eb > 0 and math.isfinite(eb)):
        raise CorruptStreamError(f"stream header has an invalid absolute bound {eb!r}")
    if pw_rel:
        transform = PointwiseRelative.load(header.stages)
        lossless = ZstdLossless.load(header.stages)
        size = math.prod(kernel_shape)
        y = codec.decode(header.stages, sections, kernel_shape, np.dtype(np.float64), eb)
        signs = unpack_mask(section(sections, "signs"), size, lossless)
        zeros = unpack_mask(section(sections, "zeros"), size, lossless)
        return transform.inverse(y, signs, zeros, dtype)
    return np.array(codec.decode(header.stages, sections, kernel_shape, dtype, eb), copy=False).reshape(-1)


def _pack_raw(header: stream.Header, work: np.ndarray) -> bytes:
    raw = get_codec("raw")()
    stages, sections = raw.encode(np.ascontiguousarray(work), 0.0)
    header = stream.Header(
        **{
            **header.__dict__,
            "codec": raw.name,
            "codec_version": raw.version,
            "abs_bound": 0.0,
            "stages": stages,
            "sections": [],
        }
    )
    return stream.pack(header, sections)


def _compress_abs(header, codec: Codec, work: np.ndarray, eb: float) -> bytes:
    if not (eb > 0 and math.isfinite(eb)) or eb < _smallest_useful_bound(work):
        return _pack_raw(header, work)  # nothing to gain: store exactly
    stages, sections = codec.encode(work, eb)
    if not codec.checks_bound:
        decoded = codec.decode(stages, dict(sections), work.shape, work.dtype, eb)
        bad = violations(work, decoded, eb)
        if bad.size:
            sections = sections + [("patches", encode_patches(bad, work.reshape(-1)[bad]))]
    header.abs_bound = eb
    header.stages = stages
    return _pack(header, codec, sections)


def _pack(header: stream.Header, codec: Codec, sections) -> bytes:
    """The container, naming the codec version a decoder needs for these stages: a stream
    that uses nothing newer keeps the older version, so older errbounds still read it."""
    header.codec_version = codec.stream_version(header.stages)
    return stream.pack(header, sections)


def _smallest_useful_bound(work: np.ndarray) -> float:
    """Below the smallest subnormal nothing but exact values can pass; and below the smallest
    normal float64 the codecs' float64 step arithmetic (level bounds eb / beta, 2 * eb, 1 / step)
    underflows to zero, so such bounds are stored exactly too."""
    return max(float(np.finfo(work.dtype).smallest_subnormal), float(np.finfo(np.float64).tiny))


def _compress_pw_rel(header, codec: Codec, work: np.ndarray, bound: Bound) -> bytes:
    transform = PointwiseRelative(bound.value)
    lossless = ZstdLossless()
    eb = transform.log_bound()
    if not eb > 0:  # 1 + p rounds to 1: no relative error is allowed in float64, store exactly
        return _pack_raw(header, work)
    y, signs, zeros, nonfinite = transform.forward(work)
    stages, sections = codec.encode(y, eb)
    decoded_y = codec.decode(stages, dict(sections), y.shape, y.dtype, eb)
    decoded = transform.inverse(decoded_y, signs, zeros, work.dtype)
    bad = np.union1d(nonfinite, transform.failures(work, decoded))
    sections = sections + [("signs", pack_mask(signs, lossless)), ("zeros", pack_mask(zeros, lossless))]
    if bad.size:
        sections.append(("patches", encode_patches(bad, work.reshape(-1)[bad])))
    header.abs_bound = eb
    header.stages = [transform.record()] + stages + ([] if ZstdLossless.present(stages) else [lossless.record()])
    return _pack(header, codec, sections)


def _compress_psnr(header, codec: Codec, work: np.ndarray, bound: Bound) -> bytes:
    direct = getattr(codec, "encode_psnr", None)  # a codec that aims at a PSNR itself (sperr)
    aimed = None
    if direct is not None:
        found = direct(work, bound.value)  # (stages, sections, header bound) or None
        if found is not None:
            header.stages, sections, header.abs_bound = found
            aimed = _pack(header, codec, sections)
            if not codec.psnr_by_bound_too:
                return aimed
    value_range = finite_range(work)
    eb = psnr_to_abs(bound.value, value_range)
    for _ in range(PSNR_RETRIES):
        blob = _compress_abs(header, codec, work, eb)
        got = measure_psnr(work, decompress(blob).reshape(work.shape) if header.order == "C" else decompress(blob).T)
        if got >= bound.value:
            return blob if aimed is None or len(blob) < len(aimed) else aimed
        # tighten by the deficit (PSNR moves 20 dB per decade of the bound) plus a margin
        eb *= 10.0 ** (-(bound.value - got + 0.2) / 20.0)
    if aimed is not None:
        return aimed
    blob = _pack_raw(header, work)
    if measure_psnr(work, work) < bound.value:  # pragma: no cover - exact data always meets it
        raise BoundError(f"psnr target {bound.value} dB cannot be met")
    return blob


def _compress_device(data, codec: str, bound: Bound, options: dict) -> bytes:
    """compress() for a CuPy array: the same container, stages computed on the GPU."""
    cp = require_cupy()
    if data.dtype.kind != "f" or data.dtype.itemsize not in (4, 8) or data.ndim > MAX_DIMS:
        raise UnsupportedInputError(f"unsupported GPU array: dtype {data.dtype}, {data.ndim} dimensions")
    codec_obj = _make_codec(codec, options)
    if not hasattr(codec_obj, "encode_device"):
        raise UnsupportedInputError(f"codec '{codec}' has no GPU kernels; use codec='fz' or pass a numpy array")
    if bound.mode not in ("abs", "rel"):
        raise UnsupportedInputError(f"on a GPU array the bound must be abs= or rel=, not {bound.mode}=")
    shaped = data.reshape(data.shape or (1,))
    if shaped.ndim >= 2 and shaped.flags.f_contiguous and not shaped.flags.c_contiguous:
        work, order = shaped.T, "F"
    else:
        work, order = cp.ascontiguousarray(shaped), "C"
    eb = bound.value if bound.mode == "abs" else bound.value * device_finite_range(work)
    unusable = work.size == 0 or not (eb > 0 and math.isfinite(eb)) or eb < _smallest_useful_bound(work)
    if unusable:  # the exact paths are host code; same stream either way
        return compress(cp.asnumpy(data), codec, **{bound.mode: bound.value}, **options)
    header = stream.Header(
        codec=codec_obj.name,
        codec_version=codec_obj.version,
        dtype=np.dtype(data.dtype).str,
        shape=data.shape,
        order=order,
        bound=bound.to_json(),
        abs_bound=eb,
    )
    header.stages, sections = codec_obj.encode_device(work, eb)
    blob = stream.pack(header, sections)
    if len(blob) > work.nbytes + stream.OVERHEAD + 512:
        return compress(cp.asnumpy(data), codec, **{bound.mode: bound.value}, **options)
    return blob


def _decompress_device(blob, out, max_bytes: int | None):
    cp = require_cupy()
    header, sections = stream.unpack(blob)
    dtype = _header_dtype(header)
    # the host path's checks, before any device memory is asked for
    if header.order not in ("C", "F"):
        raise CorruptStreamError(f"unknown memory order {header.order!r} in stream header")
    _check_size(math.prod(header.shape) * dtype.itemsize, header.shape, dtype, max_bytes)
    if out is not None and (out.shape != tuple(header.shape) or out.dtype != dtype):
        raise UnsupportedInputError(f"out= must have shape {tuple(header.shape)} and dtype {dtype}")
    codec = _codec_for(header)
    plain = not PointwiseRelative.present(header.stages)
    if hasattr(codec, "decode_device") and plain and math.prod(header.shape) > 0:
        shape = header.shape or (1,)
        kernel_shape = shape[::-1] if header.order == "F" else shape
        eb = header.abs_bound
        if eb is None or not (eb > 0 and math.isfinite(eb)):
            raise CorruptStreamError(f"stream header has an invalid absolute bound {eb!r}")
        try:
            flat = codec.decode_device(header.stages, sections, kernel_shape, dtype.newbyteorder("="), eb).reshape(-1)
        except (MemoryError, cp.cuda.memory.OutOfMemoryError):
            raise OutputLimitError(
                f"not enough device memory to decode the declared {header.shape} {dtype} array "
                f"({math.prod(header.shape) * dtype.itemsize} bytes)"
            ) from None
        if "patches" in sections:
            idx, values = decode_patches(sections["patches"], dtype, flat.size)
            flat[cp.asarray(idx)] = cp.asarray(values)
        grid = flat.reshape(kernel_shape)
        result = (grid.T if header.order == "F" else grid).reshape(header.shape)
        result = cp.asfortranarray(result) if header.order == "F" and result.ndim >= 2 else cp.ascontiguousarray(result)
    else:
        result = cp.asarray(decompress(blob, max_bytes=max_bytes))
    if out is not None:
        out[...] = result
        return out
    return result
