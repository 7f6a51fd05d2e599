"""The errbound filter registered in this process through h5py's own HDF5 (ctypes; no C build).

``register()`` builds HDF5's ``H5Z_class2_t`` for the filter with ctypes callbacks and hands
it to ``h5py.h5z.register_filter``. ``import errbound`` arranges for this to happen when h5py
is first imported (``errbound._hooks``), so h5py users need nothing else. Programs with their
own HDF5 (h5dump, netCDF-C, a second HDF5 in the same process) use the plugin instead.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from pathlib import Path

import numpy as np

from .chunks import FILTER_ID, FILTER_NAME, USER_WORDS, float_words, run_filter

_H5T_FLOAT = 1
_H5T_ORDER_BE = 1
_FILL_USER_DEFINED = 2  # H5D_FILL_VALUE_USER_DEFINED
_FILL_TIME_NEVER = 1  # H5D_FILL_TIME_NEVER

#: the last exception a filter callback turned into an HDF5 failure (for debugging; HDF5 only
#: says "filter returned failure")
last_error: BaseException | None = None


_hid_t = ctypes.c_int64
_CAN_APPLY = ctypes.CFUNCTYPE(ctypes.c_int, _hid_t, _hid_t, _hid_t)
_SET_LOCAL = ctypes.CFUNCTYPE(ctypes.c_int, _hid_t, _hid_t, _hid_t)
_FILTER = ctypes.CFUNCTYPE(
    ctypes.c_size_t,
    ctypes.c_uint,
    ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_uint),
    ctypes.c_size_t,
    ctypes.POINTER(ctypes.c_size_t),
    ctypes.POINTER(ctypes.c_void_p),
)


class _H5ZClass2(ctypes.Structure):
    _fields_ = [
        ("version", ctypes.c_int),
        ("id", ctypes.c_int),
        ("encoder_present", ctypes.c_uint),
        ("decoder_present", ctypes.c_uint),
        ("name", ctypes.c_char_p),
        ("can_apply", _CAN_APPLY),
        ("set_local", _SET_LOCAL),
        ("filter", _FILTER),
    ]


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
    size_p, uint_p, hsize_p = (
        ctypes.POINTER(ctypes.c_size_t),
        ctypes.POINTER(ctypes.c_uint),
        ctypes.POINTER(ctypes.c_uint64),
    )
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
        "H5Pget_filter_by_id2": (
            ctypes.c_int,
            [_hid_t, ctypes.c_int, uint_p, size_p, uint_p, ctypes.c_size_t, ctypes.c_char_p, uint_p],
        ),
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
        if (
            _lib.H5Pget_filter_by_id2(
                dcpl, FILTER_ID, ctypes.byref(flags), ctypes.byref(count), values, 0, None, ctypes.byref(config)
            )
            < 0
            or count.value < USER_WORDS
        ):
            return -1
        words = list(values[:USER_WORDS]) + [kind, rank] + list(chunks) + list(float_words(_padding_value(dcpl)))
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
    if (
        _lib.H5Pfill_value_defined(dcpl, ctypes.byref(defined)) < 0
        or _lib.H5Pget_fill_time(dcpl, ctypes.byref(fill_time)) < 0
    ):
        raise RuntimeError("cannot read the dataset's fill value settings")
    if defined.value != _FILL_USER_DEFINED or fill_time.value == _FILL_TIME_NEVER:
        return 0.0
    value = ctypes.c_double()
    if _lib.H5Pget_fill_value(dcpl, h5py.h5t.NATIVE_DOUBLE.id, ctypes.byref(value)) < 0:
        raise RuntimeError("cannot read the dataset's fill value")
    return value.value


def _filter(flags: int, cd_nelmts: int, cd_values, nbytes: int, buf_size, buf) -> int:
    try:
        source = buf[0]
        raw = memoryview((ctypes.c_char * nbytes).from_address(source)).cast("B")
        payload = run_filter(flags, cd_values[:cd_nelmts], raw)
        if isinstance(payload, np.ndarray):
            size, address = payload.nbytes, payload.ctypes.data
        else:
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
            _class = _H5ZClass2(
                1, FILTER_ID, 1, 1, FILTER_NAME, _CAN_APPLY(_can_apply), _SET_LOCAL(_set_local), _FILTER(_filter)
            )
        if not h5py.h5z.filter_avail(FILTER_ID):
            h5py.h5z.register_filter(ctypes.addressof(_class))
    return bool(h5py.h5z.filter_avail(FILTER_ID))


def is_registered() -> bool:
    """True when h5py is imported and the filter is registered in this process."""
    h5py = sys.modules.get("h5py")
    return bool(h5py is not None and _class is not None and h5py.h5z.filter_avail(FILTER_ID))
