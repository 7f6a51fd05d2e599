"""errbound as an HDF5 filter, registered in the running process through h5py (no C build).

    import h5py, errbound
    with h5py.File("out.h5", "w") as f:
        f.create_dataset("T", data=x, chunks=(16, 96, 192), **errbound.hdf5.filter(codec="sz", rel=1e-3))
    with h5py.File("out.h5") as f:
        part = f["T"][3:5]          # decodes only the chunks it touches

Registration: ``import errbound`` registers the filter at once when h5py is already imported,
and otherwise the moment h5py is first imported (a one-shot import hook), so a process that
never touches HDF5 pays nothing. :func:`register` does it explicitly.

Filter id 60160 (0xEB00, "EB" for errbound): The HDF Group assigns ids below 32768 (its
registered list runs from 305 to ~32033, hdf5plugin's filters among them) and leaves 32768-65535
to unregistered uses; 0xEB00 sits in that free range, far from the 32768 that test filters tend
to take. A process without errbound sees the id in the file and fails to read the data with
HDF5's usual missing-filter error; shape, dtype and attributes stay readable.

Parameters (``cd_values``, 32-bit words), like H5Z-SZ3/H5Z-ZFP keep theirs::

    0      layout version (1)
    1, 2   codec name, ASCII, 8 bytes at most
    3      bound mode: 1 abs, 2 rel, 3 pw_rel, 4 psnr
    4, 5   bound value (float64, low word first)
    6, 7   absolute bound every chunk uses (float64; 0 = derive it per chunk)
    --- added by the filter when the dataset is created (set_local):
    8      value type: item size (4 or 8) | 256 if big-endian
    9      chunk rank n
    10..   n chunk sizes
    10+n   the value HDF5 pads edge chunks with (float64, 2 words): the fill value, or 0

Bounds per chunk: abs and pw_rel are pointwise, so every chunk simply uses them. rel and psnr
are whole-dataset properties; :mod:`errbound.h5tools` (and ``filter(..., data=x)``) convert
them into one absolute bound from the dataset's finite range before writing, so rel means
the dataset's range exactly. Without that, the filter (which HDF5 shows one chunk at a time,
with a chunk-shaped dataspace, never the dataset's) derives each chunk's absolute bound from
the finite range of its values other than the padding value: HDF5 fills the part of an edge
chunk outside the dataset (and unwritten elements) with the fill value -- 0 when none is set or
the fill time is "never" -- which may lie far outside the data. That range is never larger than
the dataset's, so the rel bound holds against the dataset's range. For psnr the chunk uses
``range * 10**(-psnr/20)``: its max error bounds every chunk's MSE by range**2 * 10**(-psnr/10),
so the whole dataset's PSNR meets the target (conservatively).

Like every lossy HDF5 filter, the bound holds for chunks written once: writing part of a chunk
that is already stored makes HDF5 decode it, merge and compress it again, and errors add up.
"""

from __future__ import annotations

import ctypes
import importlib.abc
import importlib.util
import math
import struct
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .api import compress, decompress
from .bounds import finite_range, parse_bound
from .errors import CorruptStreamError, UnsupportedInputError
from .layout import MAX_DIMS

FILTER_ID = 0xEB00
FILTER_NAME = b"errbound error-bounded lossy compression (errbound.hdf5)"
LAYOUT_VERSION = 1
USER_WORDS = 8  # cd_values the user's filter() call sets; set_local appends the rest
MODES = ("abs", "rel", "pw_rel", "psnr")
_FLAG_REVERSE = 0x0100
_H5T_FLOAT = 1
_H5T_ORDER_BE = 1
_FILL_USER_DEFINED = 2  # H5D_FILL_VALUE_USER_DEFINED
_FILL_TIME_NEVER = 1  # H5D_FILL_TIME_NEVER

#: the last exception a filter callback turned into an HDF5 failure (for debugging; HDF5 only
#: says "filter returned failure")
last_error: BaseException | None = None


@dataclass(frozen=True)
class FilterParams:
    """The filter parameters of one dataset, decoded from its ``cd_values``."""

    codec: str
    mode: str
    value: float
    abs_bound: float  # 0.0: derived per chunk
    dtype: np.dtype | None = None
    chunks: tuple[int, ...] | None = None
    pad: float = 0.0  # what HDF5 fills the unwritten parts of a chunk with

    def describe(self) -> str:
        text = f"{self.mode}={self.value:g}"
        if self.abs_bound and self.mode != "abs":
            text += f" (abs {self.abs_bound:.6g})"
        return text


def _words(value: float) -> tuple[int, int]:
    return struct.unpack("<II", struct.pack("<d", value))


def _float(lo: int, hi: int) -> float:
    return struct.unpack("<d", struct.pack("<II", lo, hi))[0]


def filter(codec: str = "sz", *, abs=None, rel=None, pw_rel=None, psnr=None,  # noqa: A001, A002
           data: np.ndarray | None = None, abs_bound: float | None = None) -> dict:
    """``create_dataset`` keyword arguments that compress the dataset with errbound.

    Exactly one bound, as in :func:`errbound.compress`. With ``data`` (the whole dataset), a
    rel or psnr bound becomes one absolute bound from its finite range, so rel means the
    dataset's range exactly; without it each chunk derives its own (see the module docstring).
    ``abs_bound`` sets that absolute bound directly (what :mod:`errbound.h5tools` does).
    """
    from .codec import get_codec

    bound = parse_bound(abs=abs, rel=rel, pw_rel=pw_rel, psnr=psnr)
    get_codec(codec)  # UnknownCodecError names the registered ones
    name = codec.encode("ascii")
    if len(name) > 8:
        raise UnsupportedInputError(f"codec name {codec!r} is longer than the 8 bytes the filter stores")
    if abs_bound is None and data is not None and bound.mode in ("rel", "psnr"):
        value_range = finite_range(np.asarray(data))
        abs_bound = bound.value * value_range if bound.mode == "rel" else value_range * 10.0 ** (-bound.value / 20)
    if bound.mode == "abs":
        abs_bound = bound.value
    if abs_bound is not None and not (abs_bound >= 0 and math.isfinite(abs_bound)):
        raise UnsupportedInputError(f"abs_bound must be a finite number >= 0, got {abs_bound!r}")
    name = name.ljust(8, b"\0")
    words = (LAYOUT_VERSION, *struct.unpack("<II", name), MODES.index(bound.mode) + 1,
             *_words(bound.value), *_words(float(abs_bound or 0.0)))
    return {"compression": FILTER_ID, "compression_opts": words}


def parse_cd_values(values) -> FilterParams:
    """Decode a dataset's filter parameters; CorruptStreamError when they are not ours."""
    values = [int(v) for v in values]
    if len(values) < USER_WORDS or values[0] != LAYOUT_VERSION or not 1 <= values[3] <= len(MODES):
        raise CorruptStreamError(f"not errbound filter parameters (layout {values[:1]}, {len(values)} words)")
    codec = struct.pack("<II", values[1], values[2]).rstrip(b"\0").decode("ascii", "replace")
    params = dict(codec=codec, mode=MODES[values[3] - 1], value=_float(values[4], values[5]),
                  abs_bound=_float(values[6], values[7]))
    if len(values) > USER_WORDS:
        kind, rank = values[8], values[9]
        if kind & 0xFF not in (4, 8) or len(values) != USER_WORDS + 4 + rank:
            raise CorruptStreamError(f"errbound filter parameters are inconsistent: {values}")
        dtype = np.dtype(f"{'>' if kind & 256 else '<'}f{kind & 0xFF}")
        params.update(dtype=dtype, chunks=tuple(values[10:10 + rank]), pad=_float(*values[10 + rank:]))
    return FilterParams(**params)


# ---------------------------------------------------------------------------------------------
# the codec work, shared by the filter callback and errbound.h5tools' direct chunk writes

def _kernel_view(chunk: np.ndarray) -> np.ndarray:
    """Drop length-1 axes (predictors see real neighbours) and fold leading axes past 4-D."""
    shape = [n for n in chunk.shape if n > 1] or [chunk.size]
    while len(shape) > MAX_DIMS:
        shape[:2] = [shape[0] * shape[1]]
    return chunk.reshape(shape)


def chunk_abs_bound(chunk: np.ndarray, params: FilterParams) -> float:
    """The absolute bound this chunk is compressed with (abs, rel and psnr modes)."""
    if params.abs_bound > 0 or params.mode == "abs":
        return params.abs_bound or params.value
    data = chunk[chunk != chunk.dtype.type(params.pad)]  # padding is not data (NaN padding: finite_range skips it)
    value_range = finite_range(data)
    if params.mode == "rel":
        return params.value * value_range
    return value_range * 10.0 ** (-params.value / 20.0)


def encode_chunk(chunk: np.ndarray, params: FilterParams) -> bytes:
    """One full chunk (padded edge chunks included) as an errbound stream."""
    view = _kernel_view(np.ascontiguousarray(chunk))
    if params.mode == "pw_rel":
        return compress(view, params.codec, pw_rel=params.value)
    eb = chunk_abs_bound(chunk, params)
    if not (eb > 0 and math.isfinite(eb)):  # constant (or empty) data: nothing to trade, store it exactly
        return compress(view, "raw", abs=1.0)
    return compress(view, params.codec, abs=eb)


def decode_chunk(blob, dtype: np.dtype, count: int) -> np.ndarray:
    """Decode one chunk's stream and check that it is what the dataset expects."""
    values = decompress(blob)
    if values.dtype != dtype or values.size != count:
        raise CorruptStreamError(
            f"chunk decodes to {values.size} {values.dtype} values, the dataset expects {count} {dtype}")
    return np.ascontiguousarray(values).reshape(-1)


# ---------------------------------------------------------------------------------------------
# the ctypes side: HDF5's filter class and its three callbacks

_hid_t = ctypes.c_int64
_CAN_APPLY = ctypes.CFUNCTYPE(ctypes.c_int, _hid_t, _hid_t, _hid_t)
_SET_LOCAL = ctypes.CFUNCTYPE(ctypes.c_int, _hid_t, _hid_t, _hid_t)
_FILTER = ctypes.CFUNCTYPE(ctypes.c_size_t, ctypes.c_uint, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint),
                           ctypes.c_size_t, ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_void_p))


class _H5ZClass2(ctypes.Structure):
    _fields_ = [("version", ctypes.c_int), ("id", ctypes.c_int), ("encoder_present", ctypes.c_uint),
                ("decoder_present", ctypes.c_uint), ("name", ctypes.c_char_p), ("can_apply", _CAN_APPLY),
                ("set_local", _SET_LOCAL), ("filter", _FILTER)]


_lib = None
_class = None  # kept alive for the life of the process: HDF5 holds pointers into it
_lock = threading.Lock()


def _load_libhdf5():
    """h5py's own libhdf5 (the one already loaded in this process), with prototypes."""
    import h5py

    folder = Path(h5py.__file__).resolve().parent.parent / "h5py.libs"
    found = sorted(folder.glob("libhdf5-*.so*")) + sorted(folder.glob("libhdf5.*dylib"))
    if found:
        lib = ctypes.CDLL(str(found[0]))
    else:  # an h5py built against a system HDF5: its symbols are global in the process
        from h5py import defs
        lib = ctypes.CDLL(defs.__file__)
    size_p, uint_p, hsize_p = ctypes.POINTER(ctypes.c_size_t), ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint64)
    protos = {
        "H5allocate_memory": (ctypes.c_void_p, [ctypes.c_size_t, ctypes.c_bool]),
        "H5free_memory": (ctypes.c_int, [ctypes.c_void_p]),
        "H5Tget_class": (ctypes.c_int, [_hid_t]),
        "H5Tget_size": (ctypes.c_size_t, [_hid_t]),
        "H5Tget_order": (ctypes.c_int, [_hid_t]),
        "H5Tget_precision": (ctypes.c_size_t, [_hid_t]),
        "H5Pget_chunk": (ctypes.c_int, [_hid_t, ctypes.c_int, hsize_p]),
        "H5Pfill_value_defined": (ctypes.c_int, [_hid_t, ctypes.POINTER(ctypes.c_int)]),
        "H5Pget_fill_time": (ctypes.c_int, [_hid_t, ctypes.POINTER(ctypes.c_int)]),
        "H5Pget_fill_value": (ctypes.c_int, [_hid_t, _hid_t, ctypes.c_void_p]),
        "H5Pget_filter_by_id2": (ctypes.c_int, [_hid_t, ctypes.c_int, uint_p, size_p, uint_p, ctypes.c_size_t,
                                                ctypes.c_char_p, uint_p]),
        "H5Pmodify_filter": (ctypes.c_int, [_hid_t, ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, uint_p]),
    }
    for name, (restype, argtypes) in protos.items():
        func = getattr(lib, name)
        func.restype, func.argtypes = restype, argtypes
    return lib


def _value_type(type_id: int) -> int:
    """Parameter word 8 for an IEEE float32/float64 type, 0 for anything else."""
    size = _lib.H5Tget_size(type_id)
    if _lib.H5Tget_class(type_id) != _H5T_FLOAT or size not in (4, 8) or _lib.H5Tget_precision(type_id) != 8 * size:
        return 0
    return size | (256 if _lib.H5Tget_order(type_id) == _H5T_ORDER_BE else 0)


def _can_apply(dcpl: int, type_id: int, space: int) -> int:
    try:
        return 1 if _value_type(type_id) else -1  # -1, not 0: an optional filter would be dropped silently
    except BaseException as exc:  # noqa: BLE001 - nothing may unwind through HDF5's C frames
        _remember(exc)
        return -1


def _set_local(dcpl: int, type_id: int, space: int) -> int:
    try:
        kind = _value_type(type_id)
        rank = _lib.H5Pget_chunk(dcpl, 0, None)
        if not kind or not 1 <= rank <= 32:
            return -1
        chunks = (ctypes.c_uint64 * rank)()
        if _lib.H5Pget_chunk(dcpl, rank, chunks) < 0:
            return -1
        flags, count, values = ctypes.c_uint(), ctypes.c_size_t(64), (ctypes.c_uint * 64)()
        config = ctypes.c_uint()
        if _lib.H5Pget_filter_by_id2(dcpl, FILTER_ID, ctypes.byref(flags), ctypes.byref(count), values, 0, None,
                                     ctypes.byref(config)) < 0 or count.value < USER_WORDS:
            return -1
        words = list(values[:USER_WORDS]) + [kind, rank] + list(chunks) + list(_words(_padding_value(dcpl)))
        if any(w >= 1 << 32 for w in words):
            return -1
        array = (ctypes.c_uint * len(words))(*words)
        return 0 if _lib.H5Pmodify_filter(dcpl, FILTER_ID, flags.value, len(words), array) >= 0 else -1
    except BaseException as exc:  # noqa: BLE001
        _remember(exc)
        return -1


def _padding_value(dcpl: int) -> float:
    """What HDF5 puts in the parts of a chunk nobody wrote (measured: 0 unless a fill value is
    set and the fill time is not "never")."""
    import h5py

    defined, fill_time = ctypes.c_int(), ctypes.c_int()
    if _lib.H5Pfill_value_defined(dcpl, ctypes.byref(defined)) < 0 or _lib.H5Pget_fill_time(dcpl, ctypes.byref(fill_time)) < 0:
        raise RuntimeError("cannot read the dataset's fill value settings")
    if defined.value != _FILL_USER_DEFINED or fill_time.value == _FILL_TIME_NEVER:
        return 0.0
    value = ctypes.c_double()
    if _lib.H5Pget_fill_value(dcpl, h5py.h5t.NATIVE_DOUBLE.id, ctypes.byref(value)) < 0:
        raise RuntimeError("cannot read the dataset's fill value")
    return value.value


def _filter(flags: int, cd_nelmts: int, cd_values, nbytes: int, buf_size, buf) -> int:
    try:
        params = parse_cd_values(cd_values[:cd_nelmts])
        if params.dtype is None:
            raise CorruptStreamError("errbound filter parameters lack the chunk shape (set_local did not run)")
        count = math.prod(params.chunks)
        source = buf[0]
        if flags & _FLAG_REVERSE:
            raw = (ctypes.c_char * nbytes).from_address(source)
            result = decode_chunk(memoryview(raw).cast("B"), params.dtype, count)
            payload, size, address = result, result.nbytes, result.ctypes.data
        else:
            if nbytes != count * params.dtype.itemsize:
                raise UnsupportedInputError(f"chunk of {nbytes} bytes, expected {count * params.dtype.itemsize}")
            raw = (ctypes.c_char * nbytes).from_address(source)
            chunk = np.frombuffer(raw, params.dtype).reshape(params.chunks)
            payload = encode_chunk(chunk, params)
            size, address = len(payload), payload
        out = _lib.H5allocate_memory(size, False)
        if not out:
            return 0
        ctypes.memmove(out, address, size)  # before freeing the input, which `payload` may not outlive
        _lib.H5free_memory(source)
        buf[0] = out
        buf_size[0] = size
        return size
    except BaseException as exc:  # noqa: BLE001 - a failure, never a crash or wrong numbers
        _remember(exc)
        return 0


def _remember(exc: BaseException) -> None:
    global last_error
    last_error = exc


def register() -> bool:
    """Register the filter with h5py's HDF5 (idempotent). Returns True when it is available."""
    global _lib, _class
    import h5py

    with _lock:
        if _class is None:
            _lib = _load_libhdf5()
            _class = _H5ZClass2(1, FILTER_ID, 1, 1, FILTER_NAME, _CAN_APPLY(_can_apply),
                                _SET_LOCAL(_set_local), _FILTER(_filter))
        if not h5py.h5z.filter_avail(FILTER_ID):
            h5py.h5z.register_filter(ctypes.addressof(_class))
    return bool(h5py.h5z.filter_avail(FILTER_ID))


def is_registered() -> bool:
    """True when h5py is imported and the filter is registered in this process."""
    h5py = sys.modules.get("h5py")
    return bool(h5py is not None and _class is not None and h5py.h5z.filter_avail(FILTER_ID))


# ---------------------------------------------------------------------------------------------
# registration on import: now if h5py is loaded, else when it first is

class _AfterH5pyImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """One-shot import hook: lets h5py import normally, then registers the filter."""

    def find_spec(self, name, path, target=None):
        if name != "h5py":
            return None
        _remove_hook()
        spec = importlib.util.find_spec("h5py")
        if spec is None or spec.loader is None:
            return spec
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        module.__spec__.loader = module.__loader__ = self._loader
        self._loader.exec_module(module)
        _register_quietly()


_hook = _AfterH5pyImport()


def _remove_hook() -> None:
    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)


def _register_quietly() -> None:
    try:
        register()
    except Exception as exc:  # noqa: BLE001 - an odd h5py install must not break `import h5py`
        import warnings
        warnings.warn(f"errbound: could not register the HDF5 filter: {exc}", RuntimeWarning, stacklevel=2)


def install() -> None:
    """Register now if h5py is imported, else as soon as it is (what ``import errbound`` does)."""
    if "h5py" in sys.modules:
        _register_quietly()
    elif _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


install()
