"""Huffman coding in parts (block type 3, see :mod:`.huffman`): runs of symbols sized as
blocks of their own from their counts, without building a code (an entropy stage decides
on the sizes which runs get a table each), and coded from the same counts.

A run's size needs its symbols' counts sorted (for the code lengths) and the gaps between
the symbols it uses (the table's varints); its code, built from the same order, is the one
:func:`~.huffman.encode` builds, so a run codes byte for byte as ``encode`` of its symbols.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import varint
from .huffman import (
    IN_PARTS,
    MAX_CODE_LENGTH,
    MAX_PARTS,
    coded_block,
    histogram,
    length_counts,
    lengths_in_order,
    one_symbol_block,
)

__all__ = ["SizedRun", "size_runs", "one_table", "encode_run", "encode_runs"]


@dataclass
class SizedRun:
    """A run of symbols to code with its own table: where it starts and how long it is, the
    symbols it uses (ascending) and their counts, and its block's exact size."""

    start: int
    length: int
    used: np.ndarray
    counts: np.ndarray
    size: int
    order: np.ndarray | None = None  # the used symbols' indices by ascending count (ties by symbol)
    per_length: list[int] | None = None  # how many codes of each length: the code, with ``order``


def size_runs(symbols: np.ndarray, alphabet_size: int, runs) -> list[SizedRun]:
    """Each run (consecutive lengths adding up to ``symbols.size``) sized as a block of its
    own, from its counts (no code is built: the sizes need only the sorted counts)."""
    a = np.asarray(symbols)
    sized, start = [], 0
    for length in runs:
        counts, lo = histogram(a[start : start + length], alphabet_size)
        used = np.flatnonzero(counts)
        sized.append(_sized_run(start, int(length), used + lo, counts[used]))
        start += length
    if start != a.size:
        raise ValueError(f"runs add up to {start}, not to the {a.size} symbols")
    return sized


def one_table(runs: list[SizedRun]) -> SizedRun:
    """The runs together as one run (one table), sized from their counts."""
    present = [r for r in runs if r.used.size]
    lo = min((int(r.used[0]) for r in present), default=0)
    dense = np.zeros(max((int(r.used[-1]) for r in present), default=-1) + 1 - lo, np.int64)
    for r in present:
        dense[r.used - lo] += r.counts
    used = np.flatnonzero(dense)
    return _sized_run(runs[0].start, sum(r.length for r in runs), used + lo, dense[used])


def encode_run(symbols: np.ndarray, run: SizedRun) -> bytes:
    """The run's symbols of ``symbols`` as one block of type 0-2 (the bytes of
    :func:`encode`), from the counts it was sized with."""
    part = np.ascontiguousarray(np.asarray(symbols)[run.start : run.start + run.length])
    if run.used.size <= 1:
        return one_symbol_block(run.length, int(run.used[0]) if run.used.size else None)
    lo = int(run.used[0])
    counts = np.zeros(int(run.used[-1]) - lo + 1, np.int64)
    counts[run.used - lo] = run.counts
    lens = lengths_in_order(run.used[run.order] - lo, run.per_length, counts.size)
    return coded_block(part, lo, lens, counts, False)


def encode_runs(symbols: np.ndarray, runs: list[SizedRun]) -> list[bytes]:
    """The runs (2..MAX_PARTS, from :func:`size_runs`), each with its own table, as block
    type 3 (a stage that writes it is version 2), in pieces: one per run, the first with
    the block's head. Joined, they are the block that :func:`decode` reads; apart, a
    lossless stage can code each on its own."""
    if not 2 <= len(runs) <= MAX_PARTS:
        raise ValueError(f"2..{MAX_PARTS} runs, got {len(runs)}")
    head = bytes([IN_PARTS]) + varint.encode(sum(r.length for r in runs)) + varint.encode(len(runs))
    pieces = []
    for run in runs:
        block = encode_run(symbols, run)
        pieces.append(head + varint.encode(len(block)) + block)
        head = b""
    return pieces


def _sized_run(start: int, length: int, used: np.ndarray, counts: np.ndarray) -> SizedRun:
    if used.size <= 1:
        size = len(one_symbol_block(length, int(used[0]) if used.size else None))
        return SizedRun(start, length, used, counts, size)
    # the table's varints, (gap << 5) | (length - 1) with length - 1 < 32: their sizes
    # follow from the gaps between used symbols alone
    gaps = np.empty(used.size, np.int64)
    gaps[0] = used[0]
    np.subtract(used[1:], used[:-1], out=gaps[1:])
    gaps[1:] -= 1
    table = used.size + sum(int(np.count_nonzero(gaps >= 1 << k)) for k in (2, 9, 16))
    # Stable sort: ties keep symbol order, so the code never depends on the platform
    order = np.argsort(counts, kind="stable")
    ascending = counts[order]
    per_length = length_counts(ascending, MAX_CODE_LENGTH)
    lens = np.repeat(np.arange(len(per_length), dtype=np.int64), per_length)[: used.size]
    nbits = int(np.dot(ascending[::-1].astype(np.int64), lens))
    size = (
        1
        + len(varint.encode(length))
        + len(varint.encode(used.size))
        + table
        + len(varint.encode(nbits))
        + (nbits + 7) // 8
    )
    return SizedRun(start, length, used, counts, size, order, per_length)
