"""Which mpi4py buffer specifications can take a compressed path, as flat numpy views.

mpi4py accepts a buffer, ``[buf, datatype]``, ``[buf, count, datatype]``,
``[buf, (count, displ), datatype]`` and ``[buf, count, displ, datatype]``. All of them
(and ``[buf, count]``, ``[buf, (count, displ)]``), with a contiguous host buffer and the
datatype ``MPI.FLOAT`` or ``MPI.DOUBLE`` (stated or inferred from the buffer's format), are
compressed; :func:`parse` returns None for everything else and the caller hands the
untouched arguments to plain MPI, publishing the message's :func:`signature` so that a
compressing rank meeting it can complete its call (then every rank raises). A float
buffer that cannot be used as it is (a read-only receive buffer, non-contiguous memory)
is described all the same, with its ``problem``: that rank takes the path every other rank
takes and makes the collective fail on all of them, instead of leaving them waiting.
"""

from __future__ import annotations

import operator
import sys
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

_NATIVE = "<" if sys.byteorder == "little" else ">"
_MAX_DIMS = 4  # errbound's codecs take arrays of up to 4 dimensions
_FORMATS = {"f": np.dtype(np.float32), "d": np.dtype(np.float64)}


READ_ONLY, NOT_CONTIGUOUS, ALIASED = 1, 2, 5  # as mpi_collectives.guard numbers buffer problems


@dataclass
class Buffer:
    """A message as MPI sees it: `blocks` blocks of `count` values, one flat view."""

    flat: np.ndarray  # 1-D native float32/float64 view of blocks * count values (a copy if problem)
    count: int  # values per block
    blocks: int
    block_shape: tuple[int, ...]  # a C-order shape of one block, for better compression
    problem: int = 0  # READ_ONLY or NOT_CONTIGUOUS: this buffer cannot be used as it is

    def block(self, i: int) -> np.ndarray:
        return self.flat[i * self.count : (i + 1) * self.count]

    @property
    def block_bytes(self) -> int:
        return self.count * self.flat.dtype.itemsize


def root_index(root, size: int) -> int | None:
    """``root`` as the int mpi4py reads it (any integer: a numpy integer on one rank and a
    Python int on another name the same root), or None where it is no rank of ``size``."""
    try:
        index = operator.index(root)
    except TypeError:
        return None
    return index if 0 <= index < size else None


def is_in_place(msg) -> bool:
    """mpi4py's rule: None or MPI.IN_PLACE."""
    return msg is None or msg is MPI.IN_PLACE


def _datatype_dtype(datatype) -> np.dtype | None:
    if datatype == MPI.FLOAT:
        return _FORMATS["f"]
    if datatype == MPI.DOUBLE:
        return _FORMATS["d"]
    return None


def _integer(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _count_displ(value) -> tuple[int, int] | None:
    """(count, displacement) of a ``count`` or ``(count, displ)`` item of a message."""
    if _integer(value):
        return int(value), 0
    if isinstance(value, tuple) and len(value) == 2 and all(_integer(v) for v in value):
        return int(value[0]), int(value[1])
    return None


def _split(msg):
    """(buffer, count or None, datatype or None, displacement in values), or None for forms
    that are passed through. mpi4py's ``(count, displ)`` form is read as it reads it (the
    message starts ``displ`` values in): another rank may pass the same message plainly."""
    if isinstance(msg, (list, tuple)):
        if len(msg) == 2:
            buf, second = msg
            if isinstance(second, MPI.Datatype):
                return buf, None, second, 0
            found = _count_displ(second)
            return None if found is None else (buf, found[0], None, found[1])
        if len(msg) == 3:
            buf, count, datatype = msg
            found = _count_displ(count)
            if found is not None and isinstance(datatype, MPI.Datatype):
                return buf, found[0], datatype, found[1]
        if len(msg) == 4:
            buf, count, displ, datatype = msg
            if _integer(count) and _integer(displ) and isinstance(datatype, MPI.Datatype):
                return buf, int(count), datatype, int(displ)
        return None
    return msg, None, None, 0


def _raw_view(buf, writable: bool):
    """(1-D view of the buffer in memory order, dtype from its format or None, shape in C
    order, problem): a non-contiguous buffer comes back as a flat copy, with its problem."""
    if isinstance(buf, np.ndarray):
        dtype = buf.dtype if buf.dtype in _FORMATS.values() and buf.dtype.byteorder in ("=", _NATIVE) else None
        if not (buf.flags.c_contiguous or buf.flags.f_contiguous):
            return np.ravel(buf), dtype, buf.shape, NOT_CONTIGUOUS
        shape = buf.shape if buf.flags.c_contiguous else buf.shape[::-1]
        problem = READ_ONLY if writable and not buf.flags.writeable else 0
        return buf.reshape(-1, order="A"), dtype, shape, problem
    try:
        view = memoryview(buf)
    except TypeError:
        return None  # device arrays (DLPack, CUDA array interface) and other objects
    fmt = view.format.lstrip("@=" + _NATIVE)
    try:
        array = np.asarray(view)
    except (TypeError, ValueError):
        return None
    problem = 0 if view.c_contiguous else NOT_CONTIGUOUS
    if not problem and writable and view.readonly:
        problem = READ_ONLY
    return np.ravel(array), _FORMATS.get(fmt), tuple(view.shape or ()), problem


def signature(msg, blocks: int = 1) -> tuple[int, int] | None:
    """(values per block, bytes per value) of a message as MPI sees it, for one that
    :func:`parse` does not take (other datatypes): a rank that passes it runs plain MPI, and
    a compressing rank that meets it there completes that call with a scratch message of this
    signature (then every rank raises). None where it cannot be told."""
    parts = _split(msg)
    if parts is None or parts[0] is None:
        return None
    buf, count, datatype, displ = parts
    try:
        view = memoryview(buf)
    except TypeError:
        return None
    itemsize = datatype.Get_size() if datatype is not None else view.itemsize
    if itemsize <= 0:
        return None
    if count is None:
        values = view.nbytes // itemsize - displ
        if values < 0 or values % blocks:
            return None
        count = values // blocks
    return (count, itemsize) if count >= 0 else None


def parse(msg, *, blocks: int = 1, writable: bool = False) -> Buffer | None:
    """The message `msg` as `blocks` blocks of float32/float64 values, or None (not compressible)."""
    parts = _split(msg)
    if parts is None:
        return None
    buf, count, datatype, displ = parts
    if buf is None:
        return None
    raw = _raw_view(buf, writable)
    if raw is None:
        return None
    flat, inferred, shape, problem = raw
    dtype = inferred if datatype is None else _datatype_dtype(datatype)
    if dtype is None:
        return None
    nbytes = flat.nbytes
    if flat.dtype != dtype:
        # an explicit datatype reinterprets the bytes, exactly as MPI does
        if nbytes % dtype.itemsize:
            return None
        flat = flat.view(np.uint8).view(dtype)
        shape = (flat.size,)
    if displ:
        if not 0 <= displ <= flat.size:
            return None  # mpi4py's own error on the plain path
        flat, shape = flat[displ:], (flat.size - displ,)
    available = flat.size
    if count is None:
        if available % blocks:
            return None  # mpi4py raises its own error for this on the plain path
        count = available // blocks
    elif count < 0 or count * blocks > available:
        return None
    used = count * blocks
    if used == available and blocks == 1:
        block_shape = tuple(shape) if int(np.prod(shape, dtype=np.int64)) == count else (count,)
    elif used == available and len(shape) > 1 and shape[0] == blocks:
        block_shape = tuple(shape[1:])
    else:
        block_shape = (count,)
    if len(block_shape) > _MAX_DIMS:  # fold the slowest axes together
        block_shape = (int(np.prod(block_shape[:-3])), *block_shape[-3:])
    return Buffer(flat[:used], count, blocks, block_shape or (count,), problem)
