"""How pipelined collectives cut a message into chunks, the same way on every rank.

A chunk is a range of whole rows (first-axis slices) of the message where the ranks agree
on the row size, so that it is compressed with its neighbours in every dimension. The chunk
size is a trade: each chunk costs a fixed ~0.2-0.3 ms (Python, a zstd frame, a probe), and a
pipeline idles for part of a chunk per hop while it fills. By default a block (what one
ring step moves, or the whole Bcast message) is cut into a few chunks of 256 KiB and up:
reductions, which encode and decode every chunk at every hop, into 4 of at most 4 MiB;
Bcast and Allgather, which forward chunks as they are, into 8 of at most 2 MiB. Measured on
the CCSM field, one core: 0.5 MiB chunks cost 25 % more encode time than 4 MiB ones, 1 MiB
ones 10 %. On the bed (64 MiB, 1 Gbit/s): 0.5 MiB chunks were the slowest for Allreduce
and Bcast; 4 ranks' Allreduce used 5 % less CPU with 4 MiB chunks than with 2 MiB; Bcast
was fastest with 1-2 MiB (docs/collectives.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_SEGMENT_BYTES = 256 << 10
REDUCTION = (4, 4 << 20)  # (chunks per block, largest chunk in bytes)
MOVEMENT = (8, 2 << 20)
# a pipeline needs a few chunks per block to overlap anything; below this many bytes per
# block the unpipelined algorithms (one message per step) are used
MIN_PIPELINE_CHUNKS = 2


@dataclass(frozen=True)
class Chunk:
    """Values [start, stop) of the flat message, seen as `shape` for compression."""

    start: int
    stop: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return self.stop - self.start

    def of(self, flat: np.ndarray) -> np.ndarray:
        return flat[self.start : self.stop]


def row_layout(shape: tuple[int, ...]) -> tuple[int, tuple[int, ...]]:
    """(values per row, the shape of one row) of a C-order block shape."""
    if len(shape) < 2:
        return 1, ()
    trailing = tuple(shape[1:])
    return int(math.prod(trailing)), trailing


def split(start: int, stop: int, row_size: int, trailing: tuple[int, ...], target: int) -> list[Chunk]:
    """[start, stop) cut into chunks of about `target` values, each whole rows of `row_size`
    values when the range is made of whole rows (else a flat range). At least one chunk."""
    count = stop - start
    if row_size <= 1 or count % row_size or start % row_size:
        row_size, trailing = 1, ()
    rows = count // row_size
    pieces = max(1, min(rows, round(count / max(target, 1))))
    cuts = [start + (rows * i // pieces) * row_size for i in range(pieces + 1)]
    return [
        Chunk(a, b, ((b - a) // row_size, *trailing) if trailing else (b - a,))
        for a, b in zip(cuts[:-1], cuts[1:], strict=True)
    ]


def target_values(segment_bytes: int, itemsize: int, block_values: int, rule: tuple[int, int] = MOVEMENT) -> int:
    """Values per chunk of a block of block_values: segment_bytes when set, else rule's number
    of chunks per block, each between MIN_SEGMENT_BYTES and rule's largest."""
    if segment_bytes:
        return max(1, segment_bytes // itemsize)
    per_block, largest = rule
    auto = min(max(block_values * itemsize // per_block, MIN_SEGMENT_BYTES), largest)
    return max(1, auto // itemsize)
