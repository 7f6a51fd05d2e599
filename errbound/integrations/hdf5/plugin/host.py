"""What the plugin (``python_bridge.c``, for ``h5errbound.c``) calls, one function per filter callback.

The C side holds the GIL while it calls these, copies what they return into memory from the
calling HDF5 library's allocator, and turns a ``str`` result into an HDF5 failure with that
message: nothing here may raise into C, nothing may keep HDF5's buffers (it gets copies).
"""

from __future__ import annotations

from ..chunks import run_filter
from ..h5lib import HDF5Library
from ..inprocess import record_error

#: the HDF5 libraries that called, by file ("" for HDF5 linked into the program)
_libraries: dict[str, HDF5Library] = {}


def _message(exc: BaseException) -> str:
    record_error(exc)
    return f"{type(exc).__name__}: {exc}"


def _library(path: str) -> HDF5Library:
    if path not in _libraries:
        _libraries[path] = HDF5Library(path or None)
    return _libraries[path]


def filter(flags: int, cd_values: bytes, data: bytes):  # noqa: A001 - the callback's name in HDF5
    """Decode or encode one chunk; the stream or the values (a buffer), or the error message."""
    try:
        return run_filter(flags, memoryview(cd_values).cast("I").tolist(), data)
    except BaseException as exc:  # noqa: BLE001 - reported to HDF5 as a failure, never raised into C
        return _message(exc)


def can_apply(library: str, dcpl: int, type_id: int, space: int) -> int | str:
    try:
        if _library(library).can_apply(dcpl, type_id, space) == 1:
            return 1
        return "errbound's filter compresses IEEE float32/float64 datasets only"
    except BaseException as exc:  # noqa: BLE001
        return _message(exc)


def set_local(library: str, dcpl: int, type_id: int, space: int) -> int | str:
    try:
        return _library(library).set_local(dcpl, type_id, space)
    except BaseException as exc:  # noqa: BLE001
        return _message(exc)
