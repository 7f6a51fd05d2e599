"""Zigzag + bit shuffle + zero-block elimination of integer residuals (FZ-GPU's encoder).

Residuals are zigzagged to unsigned (0, -1, 1, -2 ... -> 0, 1, 2, 3 ...) and cut into blocks
of ``BLOCK`` values. Inside a block the values are transposed into bit planes: plane b holds
bit b of every value (``BLOCK`` bits = ``BLOCK/32`` words). A plane that is all zero is not
stored: each block keeps a bitmap of its non-zero planes (which is simply the OR of its
values), and the planes of all blocks are packed back to back. A prefix sum over the
bitmaps' popcounts gives every block's offset, so blocks encode and decode independently
(threads here, thread blocks on a GPU) and the result is the same for any thread count.

Nothing is truncated: a residual wider than the stream's code width goes to an exact
outlier list (index + value) and leaves a zero in its block.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

NAME = "bitshuffle"
VERSION = 1
BLOCK = 128                 # values per block
WORDS = BLOCK // 32         # 32-bit words per bit plane of one block


@numba.njit(cache=True, nogil=True, inline="always")
def _zigzag(v, bits):
    return (v << 1) ^ (v >> (bits - 1))


@numba.njit(cache=True, nogil=True, parallel=True)
def _block_masks(r, bits, allbits, limit, masks, wide):
    """masks[b] = OR of the zigzagged values in block b (values >= limit count as 0;
    limit 0 means no limit)."""
    n = r.shape[0]
    for b in prange(masks.shape[0]):
        acc = np.uint64(0)
        lo = b * BLOCK
        hi = min(n, lo + BLOCK)
        for i in range(lo, hi):
            u = np.uint64(_zigzag(r[i], bits)) & allbits
            if limit != 0 and u >= limit:
                wide[i] = True
            else:
                acc |= u
        masks[b] = acc


@numba.njit(cache=True, nogil=True, inline="always")
def _popcount(x):
    c = 0
    while x:
        x &= x - np.uint64(1)
        c += 1
    return c


@numba.njit(cache=True, nogil=True)
def _plane_offsets(masks):
    offsets = np.empty(masks.shape[0] + 1, np.int64)
    offsets[0] = 0
    for b in range(masks.shape[0]):
        offsets[b + 1] = offsets[b] + _popcount(masks[b]) * WORDS
    return offsets


BLOCKS_PER_TASK = 64        # blocks per parallel task: scratch is allocated per task, not per block
_GROUPS = BLOCK // 8         # groups of 8 values: one 8x8 bit transpose per group and byte


@numba.njit(cache=True, nogil=True, inline="always")
def _transpose8(x):
    """Transpose an 8x8 bit matrix held in a uint64 (byte k = row k): afterwards byte p,
    bit k holds what was bit p of byte k (Hacker's Delight, transpose8)."""
    t = (x ^ (x >> np.uint64(7))) & np.uint64(0x00AA00AA00AA00AA)
    x = x ^ t ^ (t << np.uint64(7))
    t = (x ^ (x >> np.uint64(14))) & np.uint64(0x0000CCCC0000CCCC)
    x = x ^ t ^ (t << np.uint64(14))
    t = (x ^ (x >> np.uint64(28))) & np.uint64(0x00000000F0F0F0F0)
    return x ^ t ^ (t << np.uint64(28))


@numba.njit(cache=True, nogil=True, parallel=True)
def _shuffle(r, bits, allbits, masks, offsets, wide, planes):
    n = r.shape[0]
    nblocks = masks.shape[0]
    nbytes = bits // 8
    out_bytes = planes.view(np.uint8)
    ntasks = (nblocks + BLOCKS_PER_TASK - 1) // BLOCKS_PER_TASK
    for task in prange(ntasks):
        vals = np.zeros(BLOCK, np.uint64)
        plane_bytes = np.zeros((bits, _GROUPS), np.uint8)
        for b in range(task * BLOCKS_PER_TASK, min(nblocks, (task + 1) * BLOCKS_PER_TASK)):
            m = masks[b]
            if m == 0:
                continue
            lo = b * BLOCK
            count = min(n, lo + BLOCK) - lo
            for i in range(count):
                if wide[lo + i]:
                    vals[i] = 0
                else:
                    vals[i] = np.uint64(_zigzag(r[lo + i], bits)) & allbits
            for i in range(count, BLOCK):
                vals[i] = 0
            for byte in range(nbytes):
                if (m >> np.uint64(8 * byte)) & np.uint64(0xFF) == 0:
                    continue
                sh = np.uint64(8 * byte)
                for g in range(_GROUPS):
                    x = np.uint64(0)
                    for k in range(8):
                        x |= ((vals[8 * g + k] >> sh) & np.uint64(0xFF)) << np.uint64(8 * k)
                    x = _transpose8(x)
                    for p in range(8):
                        plane_bytes[8 * byte + p, g] = np.uint8((x >> np.uint64(8 * p)) & np.uint64(0xFF))
            dst = offsets[b] * 4
            for plane in range(bits):
                if (m >> np.uint64(plane)) & np.uint64(1):
                    for g in range(_GROUPS):
                        out_bytes[dst + g] = plane_bytes[plane, g]
                    dst += _GROUPS


@numba.njit(cache=True, nogil=True, parallel=True)
def _unshuffle(masks, offsets, planes, bits, out):
    n = out.shape[0]
    nblocks = masks.shape[0]
    nbytes = bits // 8
    in_bytes = planes.view(np.uint8)
    ntasks = (nblocks + BLOCKS_PER_TASK - 1) // BLOCKS_PER_TASK
    for task in prange(ntasks):
        plane_bytes = np.zeros((bits, _GROUPS), np.uint8)
        vals = np.zeros(BLOCK, np.uint64)
        for b in range(task * BLOCKS_PER_TASK, min(nblocks, (task + 1) * BLOCKS_PER_TASK)):
            lo = b * BLOCK
            count = min(n, lo + BLOCK) - lo
            m = masks[b]
            if m == 0:
                for i in range(count):
                    out[lo + i] = 0
                continue
            src = offsets[b] * 4
            for plane in range(bits):
                if (m >> np.uint64(plane)) & np.uint64(1):
                    for g in range(_GROUPS):
                        plane_bytes[plane, g] = in_bytes[src + g]
                    src += _GROUPS
                else:
                    for g in range(_GROUPS):
                        plane_bytes[plane, g] = 0
            for i in range(BLOCK):
                vals[i] = 0
            for byte in range(nbytes):
                if (m >> np.uint64(8 * byte)) & np.uint64(0xFF) == 0:
                    continue
                sh = np.uint64(8 * byte)
                for g in range(_GROUPS):
                    x = np.uint64(0)
                    for p in range(8):
                        x |= np.uint64(plane_bytes[8 * byte + p, g]) << np.uint64(8 * p)
                    x = _transpose8(x)
                    for k in range(8):
                        vals[8 * g + k] |= ((x >> np.uint64(8 * k)) & np.uint64(0xFF)) << sh
            for i in range(count):
                u = vals[i]
                # un-zigzag: (u >> 1) ^ -(u & 1)
                out[lo + i] = (u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))


def shuffle(residuals: np.ndarray, width: int | None = None):
    """Encode a flat signed integer array. Returns (masks, planes, wide_idx, wide_values):
    per-block plane bitmaps (uint32 or uint64), packed planes (uint32 words), and the exact
    residuals too wide for `width` bits after zigzag."""
    r = np.ascontiguousarray(residuals).reshape(-1)
    bits = r.dtype.itemsize * 8
    width = bits if width is None else int(width)
    nblocks = (r.size + BLOCK - 1) // BLOCK
    masks = np.empty(nblocks, np.uint64)
    wide = np.zeros(r.size, np.bool_)
    allbits = np.uint64(2**bits - 1)
    limit = np.uint64(0 if width >= bits else 2**width)
    _block_masks(r, bits, allbits, limit, masks, wide)
    offsets = _plane_offsets(masks)
    planes = np.empty(offsets[-1], np.uint32)
    _shuffle(r, bits, allbits, masks, offsets, wide, planes)
    wide_idx = np.flatnonzero(wide)
    mask_dtype = np.uint32 if bits == 32 else np.uint64
    return masks.astype(mask_dtype), planes, wide_idx, r[wide_idx].copy()


def unshuffle(masks: np.ndarray, planes: np.ndarray, count: int, dtype) -> np.ndarray:
    """Inverse of shuffle (before re-inserting wide residuals). The caller has checked that
    planes holds exactly the words the masks promise (see ``planes_needed``)."""
    masks64 = np.ascontiguousarray(masks, np.uint64)
    offsets = _plane_offsets(masks64)
    out = np.empty(count, dtype)
    _unshuffle(masks64, offsets, np.ascontiguousarray(planes, np.uint32), np.dtype(dtype).itemsize * 8, out)
    return out


def planes_needed(masks: np.ndarray) -> int:
    return int(_plane_offsets(np.ascontiguousarray(masks, np.uint64))[-1])
