"""Thread-local scratch arrays for the temporaries of a codec call.

A fresh multi-megabyte numpy array costs page faults on first touch and an munmap when it
is freed: measured ~0.4 ms per MB on the fz pipeline, as much as its kernels spend on the
data. Temporaries that never leave a call (integer codes on their way to the bit shuffle,
residuals, bit planes, per-point flags) are taken from here instead and reused by the next
call on the same thread. Nothing handed back to a caller may live here.
"""

from __future__ import annotations

import threading

import numpy as np

# buffers above this size are not kept between calls (a one-off huge array should not pin
# its memory for the life of the process)
KEEP_LIMIT = 1 << 30
_local = threading.local()


def scratch(slot: str, count: int, dtype) -> np.ndarray:
    """An uninitialized 1-D array of `count` elements, valid until the next request for the
    same slot on this thread. Distinct slots never overlap."""
    dtype = np.dtype(dtype)
    nbytes = int(count) * dtype.itemsize
    buffers = _local.__dict__.setdefault("buffers", {})
    buf = buffers.get(slot)
    if buf is None or buf.nbytes < nbytes:
        # grow with headroom so slowly growing messages do not reallocate every call
        buf = np.empty(max(nbytes + nbytes // 8, 4096), np.uint8)
        if buf.nbytes <= KEEP_LIMIT:
            buffers[slot] = buf
        else:
            buffers.pop(slot, None)
    return buf[:nbytes].view(dtype)


def release() -> None:
    """Free this thread's scratch buffers."""
    _local.__dict__.pop("buffers", None)
