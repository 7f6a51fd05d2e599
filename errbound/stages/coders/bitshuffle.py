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

import functools
from dataclasses import dataclass

import numpy as np

from ...jit import kernel, run_tasks
from ...scratch import scratch
from ...stage import Stage

BLOCK = 128  # values per block
WORDS = BLOCK // 32  # 32-bit words per bit plane of one block


@dataclass
class BitShuffle(Stage):
    """Stage: zigzag + bit shuffle in blocks of ``block`` values (only BLOCK is written)."""

    name = "bitshuffle"

    block: int = BLOCK

    def __post_init__(self):
        if self.block != BLOCK or isinstance(self.block, bool):
            raise ValueError(f"unsupported bit-shuffle block size {self.block!r}")


@kernel(inline="always")
def _zigzag(v, bits):
    return (v << 1) ^ (v >> (bits - 1))


@kernel
def _block_masks(first, stop, r, bits, allbits, limit, masks, wide):
    """masks[b] = OR of the zigzagged values in block b (values >= limit count as 0 and are
    flagged in `wide`; limit 0 means no limit, the common case, kept branch-free)."""
    n = r.shape[0]
    for b in range(first, stop):
        acc = np.uint64(0)
        lo = b * BLOCK
        hi = min(n, lo + BLOCK)
        block = r[lo:hi]
        if limit == 0:
            for i in range(hi - lo):
                acc |= np.uint64(_zigzag(block[i], bits)) & allbits
        else:
            for i in range(hi - lo):
                u = np.uint64(_zigzag(block[i], bits)) & allbits
                if u >= limit:
                    wide[lo + i] = True
                else:
                    acc |= u
        masks[b] = acc


@kernel
def _plane_densities(r, bits, allbits, blocks):
    """Share of ones per bit plane over the given blocks, counted only in blocks where the
    plane is present (where it would be stored)."""
    ones = np.zeros(64, np.int64)
    present = np.zeros(64, np.int64)
    n = r.shape[0]
    vals = np.zeros(BLOCK, np.uint64)
    for b in blocks:
        lo = b * BLOCK
        hi = min(n, lo + BLOCK)
        acc = np.uint64(0)
        for i in range(hi - lo):
            u = np.uint64(_zigzag(r[lo + i], bits)) & allbits
            vals[i] = u
            acc |= u
        # only up to the block's highest plane: residuals are small, so this skips most of
        # the 32 (64) planes (the per-value loop over all of them cost as much as the shuffle)
        width = 0
        while width < bits and (acc >> np.uint64(width)) != 0:
            width += 1
        for p in range(width):
            count = 0
            for i in range(hi - lo):
                count += (vals[i] >> np.uint64(p)) & np.uint64(1)
            ones[p] += count
            if (acc >> np.uint64(p)) & np.uint64(1):
                present[p] += hi - lo
    return ones, present


@kernel(inline="always")
def _popcount(x):
    c = 0
    while x:
        x &= x - np.uint64(1)
        c += 1
    return c


@kernel
def plane_offsets(masks, dense):
    """Word offsets of every block in the dense stream (planes below `dense`) and in the
    sparse stream (the others): prefix sums of the masks' popcounts."""
    low = (np.uint64(1) << np.uint64(dense)) - np.uint64(1) if dense < 64 else ~np.uint64(0)
    dense_off = np.empty(masks.shape[0] + 1, np.int64)
    sparse_off = np.empty(masks.shape[0] + 1, np.int64)
    dense_off[0] = 0
    sparse_off[0] = 0
    for b in range(masks.shape[0]):
        dense_off[b + 1] = dense_off[b] + _popcount(masks[b] & low) * WORDS
        sparse_off[b + 1] = sparse_off[b] + _popcount(masks[b] & ~low) * WORDS
    return dense_off, sparse_off


BLOCKS_PER_TASK = 64  # blocks per parallel task: scratch is allocated per task, not per block
_GROUPS = BLOCK // 8  # groups of 8 values: one 8x8 bit transpose per group and byte


@kernel(inline="always")
def _transpose8(x):
    """Transpose an 8x8 bit matrix held in a uint64 (byte k = row k): afterwards byte p,
    bit k holds what was bit p of byte k (Hacker's Delight, transpose8)."""
    t = (x ^ (x >> np.uint64(7))) & np.uint64(0x00AA00AA00AA00AA)
    x = x ^ t ^ (t << np.uint64(7))
    t = (x ^ (x >> np.uint64(14))) & np.uint64(0x0000CCCC0000CCCC)
    x = x ^ t ^ (t << np.uint64(14))
    t = (x ^ (x >> np.uint64(28))) & np.uint64(0x00000000F0F0F0F0)
    return x ^ t ^ (t << np.uint64(28))


@kernel
def _shuffle(first, stop, r, bits, lane, limit, masks, dense, dense_off, sparse_off, wide, dense_planes, sparse_planes):
    """`lane` (an empty uint32 or uint64 array) sets the type the values are handled in: as
    wide as the codes and no wider (uint32 lanes for int32 codes: 1.25x faster)."""
    n = r.shape[0]
    nblocks = masks.shape[0]
    nbytes = bits // 8
    dense_bytes = dense_planes.view(np.uint8)
    sparse_bytes = sparse_planes.view(np.uint8)
    vals = np.zeros(BLOCK, lane.dtype)
    plane_bytes = np.zeros((bits, _GROUPS), np.uint8)
    for task in range(first, stop):
        for b in range(task * BLOCKS_PER_TASK, min(nblocks, (task + 1) * BLOCKS_PER_TASK)):
            m = masks[b]
            if m == 0:
                continue
            lo = b * BLOCK
            count = min(n, lo + BLOCK) - lo
            block = r[lo : lo + count]
            for i in range(count):
                vals[i] = _zigzag(block[i], bits)  # stored modulo the lane width
            if limit != 0:
                for i in range(count):
                    if wide[lo + i]:
                        vals[i] = 0
            for i in range(count, BLOCK):
                vals[i] = 0
            for byte in range(nbytes):
                if (m >> np.uint64(8 * byte)) & np.uint64(0xFF) == 0:
                    continue
                sh = np.uint64(8 * byte)
                for g in range(_GROUPS):
                    x = np.uint64(0)
                    for k in range(8):
                        x |= ((np.uint64(vals[8 * g + k]) >> sh) & np.uint64(0xFF)) << np.uint64(8 * k)
                    x = _transpose8(x)
                    for p in range(8):
                        plane_bytes[8 * byte + p, g] = np.uint8((x >> np.uint64(8 * p)) & np.uint64(0xFF))
            dst = dense_off[b] * 4
            for plane in range(dense):
                if (m >> np.uint64(plane)) & np.uint64(1):
                    for g in range(_GROUPS):
                        dense_bytes[dst + g] = plane_bytes[plane, g]
                    dst += _GROUPS
            dst = sparse_off[b] * 4
            for plane in range(dense, bits):
                if (m >> np.uint64(plane)) & np.uint64(1):
                    for g in range(_GROUPS):
                        sparse_bytes[dst + g] = plane_bytes[plane, g]
                    dst += _GROUPS


@kernel
def _unshuffle(first, stop, masks, dense, dense_off, sparse_off, dense_planes, sparse_planes, bits, lane, out, add):
    """out = the decoded values, or out += them (wrapping) when `add`; `lane` as in _shuffle
    (uint32 lanes for int32 codes: 1.8x faster)."""
    n = out.shape[0]
    nblocks = masks.shape[0]
    nbytes = bits // 8
    dense_bytes = dense_planes.view(np.uint8)
    sparse_bytes = sparse_planes.view(np.uint8)
    vals = np.zeros(BLOCK, lane.dtype)
    xs = np.zeros(_GROUPS, np.uint64)  # 8 planes' bytes of one group of 8 values each
    for task in range(first, stop):
        for b in range(task * BLOCKS_PER_TASK, min(nblocks, (task + 1) * BLOCKS_PER_TASK)):
            lo = b * BLOCK
            count = min(n, lo + BLOCK) - lo
            m = masks[b]
            dst = out[lo : lo + count]
            if m == 0:
                if not add:
                    for i in range(count):
                        dst[i] = 0
                continue
            src_dense = dense_off[b] * 4
            src_sparse = sparse_off[b] * 4
            for i in range(BLOCK):
                vals[i] = 0
            for byte in range(nbytes):
                group_mask = (m >> np.uint64(8 * byte)) & np.uint64(0xFF)
                if group_mask == 0:
                    continue
                for g in range(_GROUPS):
                    xs[g] = 0
                # gather straight from the two streams (absent planes add nothing): 1.3x
                # faster than first copying every plane, zeros included, into a block buffer;
                # indexed, not sliced: a slice per plane made the serial kernel 1.75x slower
                for p in range(8):
                    plane = 8 * byte + p
                    if (group_mask >> np.uint64(p)) & np.uint64(1):
                        sh = np.uint64(8 * p)
                        if plane < dense:
                            for g in range(_GROUPS):
                                xs[g] |= np.uint64(dense_bytes[src_dense + g]) << sh
                            src_dense += _GROUPS
                        else:
                            for g in range(_GROUPS):
                                xs[g] |= np.uint64(sparse_bytes[src_sparse + g]) << sh
                            src_sparse += _GROUPS
                sh = np.uint64(8 * byte)
                for g in range(_GROUPS):
                    x = _transpose8(xs[g])
                    for k in range(8):
                        vals[8 * g + k] |= ((x >> np.uint64(8 * k)) & np.uint64(0xFF)) << sh
            one = lane.dtype.type(1)
            if add:
                for i in range(count):
                    u = vals[i]
                    dst[i] += (u >> one) ^ (lane.dtype.type(0) - (u & one))
            else:
                for i in range(count):
                    u = vals[i]
                    dst[i] = (u >> one) ^ (lane.dtype.type(0) - (u & one))


# A plane whose bits are ones this often or more is close to random: zstd cannot shrink it
# by much (measured: 0.9-1.0 of its size), so it is kept out of zstd's way. 0.35-0.4 gave the
# best geometric-mean ratio over the shared fields (0.3: -1.2 %, no split: -0.7 %).
DENSE_SHARE = 0.38
DENSITY_SAMPLE_BLOCKS = 64
_GOLDEN = 0.6180339887498949


@functools.lru_cache(maxsize=64)
def density_sample(nblocks: int) -> np.ndarray:
    """The blocks whose planes decide the dense/sparse split: one per stratum of
    nblocks / DENSITY_SAMPLE_BLOCKS, at a golden-ratio offset inside it. An even stride
    aliases with the data: every 128th block of a field with 64 x 128 planes is the same
    row of every other plane (its first, where Lorenzo has no neighbours above), and that
    row's statistics sent every plane to zstd, which then spent 30 % longer for a 1 % larger
    output (measured on the CCSM fields)."""
    if nblocks <= DENSITY_SAMPLE_BLOCKS:
        blocks = np.arange(nblocks, dtype=np.int64)
    else:
        strata = np.arange(DENSITY_SAMPLE_BLOCKS, dtype=np.float64)
        offsets = np.modf((strata + 1.0) * _GOLDEN)[0]
        blocks = np.floor((strata + offsets) * (nblocks / DENSITY_SAMPLE_BLOCKS)).astype(np.int64)
    blocks.flags.writeable = False  # cached: every message of a size shares it
    return blocks


def dense_plane_count(r: np.ndarray, blocks: np.ndarray | None = None) -> int:
    """How many low bit planes to store without zstd: the run of planes from plane 0 up whose
    share of ones (on the sampled `blocks`, by default density_sample's) reaches DENSE_SHARE."""
    bits = r.dtype.itemsize * 8
    nblocks = (r.size + BLOCK - 1) // BLOCK
    blocks = density_sample(nblocks) if blocks is None else np.asarray(blocks, np.int64)
    ones, present = _plane_densities(r, bits, np.uint64(2**bits - 1), blocks)
    count = 0
    while count < bits and present[count] and ones[count] >= DENSE_SHARE * present[count]:
        count += 1
    return count


def _lane(bits: int) -> np.ndarray:
    return np.empty(0, np.uint32 if bits == 32 else np.uint64)


def shuffle(residuals: np.ndarray, width: int | None = None, dense: int | None = None):
    """Encode a flat signed integer array. Returns (masks, dense planes, sparse planes,
    wide_idx, wide_values, dense): per-block plane bitmaps (uint32 or uint64), the packed
    planes below `dense` and from `dense` up (uint32 words, block by block), and the exact
    residuals too wide for `width` bits after zigzag. The two plane arrays are thread-local
    scratch, valid until the next call on this thread."""
    r = np.ascontiguousarray(residuals).reshape(-1)
    bits = r.dtype.itemsize * 8
    width = bits if width is None else int(width)
    dense = dense_plane_count(r) if dense is None else int(dense)
    nblocks = (r.size + BLOCK - 1) // BLOCK
    masks = np.empty(nblocks, np.uint64)
    wide = np.zeros(r.size if width < bits else 1, np.bool_)
    allbits = np.uint64(2**bits - 1)
    limit = np.uint64(0 if width >= bits else 2**width)
    run_tasks(_block_masks, nblocks, r, bits, allbits, limit, masks, wide, task_size=BLOCK)
    dense_off, sparse_off = plane_offsets(masks, dense)
    # the planes only travel to the stream writer, which copies them: scratch, not fresh pages
    dense_planes = scratch("shuffle-dense", dense_off[-1], np.uint32)
    sparse_planes = scratch("shuffle-sparse", sparse_off[-1], np.uint32)
    ntasks = -(-nblocks // BLOCKS_PER_TASK)
    lane = _lane(bits)
    args = (r, bits, lane, limit, masks, dense, dense_off, sparse_off, wide, dense_planes, sparse_planes)
    run_tasks(_shuffle, ntasks, *args, task_size=BLOCKS_PER_TASK * BLOCK)
    wide_idx = np.flatnonzero(wide) if width < bits else np.zeros(0, np.int64)
    mask_dtype = np.uint32 if bits == 32 else np.uint64
    return masks.astype(mask_dtype), dense_planes, sparse_planes, wide_idx, r[wide_idx].copy(), dense


def planes_needed(masks: np.ndarray, dense: int) -> tuple[int, int]:
    dense_off, sparse_off = plane_offsets(np.ascontiguousarray(masks, np.uint64), int(dense))
    return int(dense_off[-1]), int(sparse_off[-1])


def unshuffle(
    masks: np.ndarray,
    dense_planes: np.ndarray,
    sparse_planes: np.ndarray,
    dense: int,
    count: int,
    dtype,
    out: np.ndarray | None = None,
    add: bool = False,
) -> np.ndarray:
    """Inverse of shuffle (before re-inserting wide residuals), into ``out`` (flat, `count`
    elements of `dtype`) when given; ``add`` adds the values to out's (wrapping) instead,
    which saves a pass where the caller would add them anyway. The caller has checked that
    the plane streams hold exactly the words the masks promise (see ``planes_needed``)."""
    masks64 = np.ascontiguousarray(masks, np.uint64)
    dense_off, sparse_off = plane_offsets(masks64, int(dense))
    bits = np.dtype(dtype).itemsize * 8
    if add and out is None:
        raise ValueError("add=True needs out=")
    out = np.empty(count, dtype) if out is None else out
    run_tasks(
        _unshuffle,
        -(-masks64.size // BLOCKS_PER_TASK),
        masks64,
        int(dense),
        dense_off,
        sparse_off,
        np.ascontiguousarray(dense_planes, np.uint32),
        np.ascontiguousarray(sparse_planes, np.uint32),
        bits,
        _lane(bits),
        out,
        bool(add),
        task_size=BLOCKS_PER_TASK * BLOCK,
    )
    return out
