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

from .chunks import FILTER_ID, FILTER_NAME, run_filter
from .h5lib import HDF5Library, hid_t

#: the last exception a filter callback turned into an HDF5 failure (for debugging; HDF5 only
#: says "filter returned failure")
last_error: BaseException | None = None


# A read-only memoryview of HDF5's buffer without a copy. `(c_char * n).from_address` made a
# new ctypes array type for every distinct chunk size: 8 us a chunk, a tenth of reading a
# 16 KiB chunk.
_memory_view = ctypes.pythonapi.PyMemoryView_FromMemory
_memory_view.restype = ctypes.py_object
_memory_view.argtypes = (ctypes.c_void_p, ctypes.c_ssize_t, ctypes.c_int)
_PYBUF_READ = 0x100

_CAN_APPLY = ctypes.CFUNCTYPE(ctypes.c_int, hid_t, hid_t, hid_t)
_SET_LOCAL = ctypes.CFUNCTYPE(ctypes.c_int, hid_t, hid_t, hid_t)
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


def _load_libhdf5() -> HDF5Library:
    """h5py's own libhdf5 (the one already loaded in this process)."""
    import h5py

    folder = Path(h5py.__file__).resolve().parent.parent / "h5py.libs"
    found = sorted(folder.glob("libhdf5-*.so*")) + sorted(folder.glob("libhdf5.*dylib"))
    if found:
        return HDF5Library(str(found[0]))
    from h5py import defs  # an h5py built against a system HDF5: its symbols come with h5py's modules

    return HDF5Library(defs.__file__)


def _can_apply(dcpl: int, type_id: int, space: int) -> int:
    try:
        return _lib.can_apply(dcpl, type_id, space)
    except BaseException as exc:  # noqa: BLE001 - nothing may unwind through HDF5's C frames
        record_error(exc)
        return -1


def _set_local(dcpl: int, type_id: int, space: int) -> int:
    try:
        return _lib.set_local(dcpl, type_id, space)
    except BaseException as exc:  # noqa: BLE001
        record_error(exc)
        return -1


def _filter(flags: int, cd_nelmts: int, cd_values, nbytes: int, buf_size, buf) -> int:
    try:
        source = buf[0]
        raw = _memory_view(source, nbytes, _PYBUF_READ)
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
        record_error(exc)
        return 0


def record_error(exc: BaseException) -> None:
    """Keep the exception a filter callback (this route's or the plugin's) turned into a failure."""
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
