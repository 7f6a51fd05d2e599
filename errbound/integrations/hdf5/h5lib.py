"""The few HDF5 C functions the filter's callbacks need, through ctypes, for any libhdf5.

A process may hold several HDF5 libraries at once (h5py's and netCDF4's wheels each bundle
one), and the identifiers a callback receives (dataset creation property list, datatype) are
only valid in the library that made the call. :class:`HDF5Library` wraps one of them: the
in-process registration wraps h5py's, the plugin the one that loaded it. ``set_local`` lives
here, once, so that both routes write the same parameters and so the same files.
"""

from __future__ import annotations

import ctypes
import os

from .chunks import FILTER_ID, USER_WORDS, float_words

_H5T_FLOAT = 1
_H5T_ORDER_BE = 1
_FILL_USER_DEFINED = 2  # H5D_FILL_VALUE_USER_DEFINED
_FILL_TIME_NEVER = 1  # H5D_FILL_TIME_NEVER
MAX_RANK = 32  # H5S_MAX_RANK

hid_t = ctypes.c_int64  # HDF5 >= 1.10
_size_p, _uint_p, _hsize_p = (
    ctypes.POINTER(ctypes.c_size_t),
    ctypes.POINTER(ctypes.c_uint),
    ctypes.POINTER(ctypes.c_uint64),
)
_PROTOTYPES = {
    "H5open": (ctypes.c_int, []),
    "H5get_libversion": (ctypes.c_int, [_uint_p, _uint_p, _uint_p]),
    "H5allocate_memory": (ctypes.c_void_p, [ctypes.c_size_t, ctypes.c_bool]),
    "H5free_memory": (ctypes.c_int, [ctypes.c_void_p]),
    "H5Tget_class": (ctypes.c_int, [hid_t]),
    "H5Tget_size": (ctypes.c_size_t, [hid_t]),
    "H5Tget_order": (ctypes.c_int, [hid_t]),
    "H5Tget_precision": (ctypes.c_size_t, [hid_t]),
    "H5Pget_chunk": (ctypes.c_int, [hid_t, ctypes.c_int, _hsize_p]),
    "H5Pfill_value_defined": (ctypes.c_int, [hid_t, ctypes.POINTER(ctypes.c_int)]),
    "H5Pget_fill_time": (ctypes.c_int, [hid_t, ctypes.POINTER(ctypes.c_int)]),
    "H5Pget_fill_value": (ctypes.c_int, [hid_t, hid_t, ctypes.c_void_p]),
    "H5Pget_filter_by_id2": (
        ctypes.c_int,
        [hid_t, ctypes.c_int, _uint_p, _size_p, _uint_p, ctypes.c_size_t, ctypes.c_char_p, _uint_p],
    ),
    "H5Pmodify_filter": (ctypes.c_int, [hid_t, ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, _uint_p]),
}


class HDF5Library:
    """One loaded libhdf5 (>= 1.10), by path; ``None`` for the process's global symbols (an
    HDF5 linked into the program itself)."""

    def __init__(self, path: str | None):
        self.path = path
        mode = os.RTLD_NOW | os.RTLD_LOCAL | getattr(os, "RTLD_NOLOAD", 0) if path else ctypes.DEFAULT_MODE
        try:  # the copy already in the process, never a second one
            self.lib = ctypes.CDLL(path, mode=mode)
        except OSError:
            self.lib = ctypes.CDLL(None)
        for name, (restype, argtypes) in _PROTOTYPES.items():
            func = getattr(self.lib, name)  # AttributeError: not an HDF5 library
            func.restype, func.argtypes = restype, argtypes
        self.lib.H5open()
        major, minor, release = ctypes.c_uint(), ctypes.c_uint(), ctypes.c_uint()
        self.lib.H5get_libversion(major, minor, release)
        self.version = (major.value, minor.value, release.value)
        if self.version < (1, 10, 0):
            raise RuntimeError(f"HDF5 {'.'.join(map(str, self.version))} is too old for errbound's filter (>= 1.10)")
        self.native_double = hid_t.in_dll(self.lib, "H5T_NATIVE_DOUBLE_g").value

    def __getattr__(self, name: str):
        return getattr(self.lib, name)

    def value_type(self, type_id: int) -> int:
        """Parameter word 8 for an IEEE float32/float64 type, 0 for anything else."""
        lib = self.lib
        size = lib.H5Tget_size(type_id)
        if lib.H5Tget_class(type_id) != _H5T_FLOAT or size not in (4, 8) or lib.H5Tget_precision(type_id) != 8 * size:
            return 0
        return size | (256 if lib.H5Tget_order(type_id) == _H5T_ORDER_BE else 0)

    def can_apply(self, dcpl: int, type_id: int, space: int) -> int:
        return 1 if self.value_type(type_id) else -1  # -1, not 0: an optional filter would be dropped silently

    def set_local(self, dcpl: int, type_id: int, space: int) -> int:
        """Append value type, chunk rank and sizes and the padding value to the user's 8 words."""
        lib = self.lib
        kind = self.value_type(type_id)
        rank = lib.H5Pget_chunk(dcpl, 0, None)
        if not kind or not 1 <= rank <= MAX_RANK:
            return -1
        chunks = (ctypes.c_uint64 * rank)()
        if lib.H5Pget_chunk(dcpl, rank, chunks) < 0:
            return -1
        flags, count, values = ctypes.c_uint(), ctypes.c_size_t(64), (ctypes.c_uint * 64)()
        config = ctypes.c_uint()
        found = lib.H5Pget_filter_by_id2(dcpl, FILTER_ID, flags, count, values, 0, None, config)
        if found < 0 or count.value < USER_WORDS:
            return -1
        words = list(values[:USER_WORDS]) + [kind, rank] + list(chunks) + list(float_words(self.padding_value(dcpl)))
        if any(w >= 1 << 32 for w in words):
            return -1
        array = (ctypes.c_uint * len(words))(*words)
        return 0 if lib.H5Pmodify_filter(dcpl, FILTER_ID, flags.value, len(words), array) >= 0 else -1

    def padding_value(self, dcpl: int) -> float:
        """What HDF5 puts in the parts of a chunk nobody wrote (measured: 0 unless a fill value is
        set and the fill time is not "never")."""
        defined, fill_time = ctypes.c_int(), ctypes.c_int()
        if self.lib.H5Pfill_value_defined(dcpl, defined) < 0 or self.lib.H5Pget_fill_time(dcpl, fill_time) < 0:
            raise RuntimeError("cannot read the dataset's fill value settings")
        if defined.value != _FILL_USER_DEFINED or fill_time.value == _FILL_TIME_NEVER:
            return 0.0
        value = ctypes.c_double()
        if self.lib.H5Pget_fill_value(dcpl, self.native_double, ctypes.byref(value)) < 0:
            raise RuntimeError("cannot read the dataset's fill value")
        return value.value
