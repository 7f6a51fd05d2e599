"""A simple cost model of plain and compressed collectives (docs/collectives.md derives it).

Parameters: link bandwidth ``link`` (bytes/s each way per rank), message size ``nbytes``
(the float vector every rank ends up with; Reduce_scatter_block's input), ranks ``n``,
compression ratio ``ratio``, per-core throughputs (bytes of floats per second) of the
compressor ``encode`` and the decompressor ``decode`` (for reductions: quantize + encode
and decode + write), the cores a rank can use (``cores``: below 1 where ranks share cores,
as on the netbed: 2 cores for 4 ranks) and the chunk size of the pipeline.

A pipelined compressed collective takes the longest of its stages, compute per rank and
bytes on the busiest link, plus the time to fill the pipeline: per ring step the shorter
stage of one chunk (the longer one overlaps), per Bcast hop one chunk's wire time; plain
MPI is bandwidth-bound. Latency (a few microseconds per message) is left out:
it matters below ~100 KiB, where ``min_bytes`` keeps messages on plain MPI anyway, and for
hundreds of ranks, where ``latency`` adds a term per hop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Machine:
    """What the model needs to know about the hardware and the data."""

    link: float  # bytes/s per rank and direction
    encode: float  # bytes of floats/s, one core
    decode: float  # bytes of floats/s, one core
    ratio: float  # float bytes / compressed bytes on the wire
    cores: float = 1.0  # cores per rank (0.5 for 4 ranks on 2 cores)
    chunk: float = 1 << 20  # bytes of floats per pipeline chunk
    latency: float = 0.0  # seconds per message (the bed has ~10 us; it is left out there)


def plain(op: str, nbytes: float, n: int, link: float) -> float:
    """Seconds for plain MPI's usual algorithms: Bcast binomial tree (MPICH below 8 ranks),
    the others bandwidth-optimal (ring or reduce-scatter + allgather)."""
    if op == "bcast":
        return math.ceil(math.log2(n)) * nbytes / link
    share = (n - 1) / n * nbytes / link
    return 2 * share if op == "allreduce" else share


def compressed(op: str, nbytes: float, n: int, m: Machine, tree: str = "chain") -> float:
    """Seconds for CompressedComm's pipelined algorithms (ring reductions and Allgather, a
    chain or binary-tree Bcast). Compute is counted in core-seconds per rank and spread over
    m.cores; where ranks share cores (m.cores < 1) the busiest rank also competes with the
    others. A ring's chunk is at most a block (M/N): with many ranks there is no pipeline
    within a step, and the stages of a step add up instead of overlapping."""
    part = (n - 1) / n
    wire_rate = m.link * m.ratio
    chunk = min(m.chunk, nbytes / n) if op != "bcast" else min(m.chunk, nbytes)
    if op == "allreduce":
        work = [nbytes / m.encode + 2 * part * nbytes / m.decode] * n
        wire, hops = 2 * part * nbytes / wire_rate, 2 * (n - 1)
    elif op == "reduce_scatter_block":  # N-1 blocks out, N-1 in; a rank's own block is never sent
        work = [part * nbytes / m.encode + part * nbytes / m.decode] * n
        wire, hops = part * nbytes / wire_rate, n - 1
    elif op == "allgather":
        work = [nbytes / n / m.encode + part * nbytes / m.decode] * n
        wire, hops = part * nbytes / wire_rate, n - 1
    elif op == "bcast":
        work = [nbytes / m.encode] + [nbytes / m.decode] * (n - 1)
        fanout = 1 if tree == "chain" else 2
        wire = fanout * nbytes / wire_rate
        hops = n - 1 if tree == "chain" else fanout * math.floor(math.log2(n))
    else:
        raise ValueError(f"unknown op {op!r}")
    if m.cores >= 1:
        cpu = max(work) / m.cores
    else:  # n ranks on n * cores cores: no faster than one core each, nor than the pool allows
        cpu = max(max(work), sum(work) / (n * m.cores))
    share = max(m.cores, 1.0) if m.cores >= 1 else m.cores
    compute_chunk = (chunk / m.encode + chunk / m.decode) / share
    wire_chunk = chunk / wire_rate
    if op == "bcast":  # forwarded before it is decoded: a hop costs the chunk's wire time
        fill = hops * (wire_chunk + m.latency) + compute_chunk
    else:  # a ring step overlaps all but the shorter stage of one chunk
        fill = hops * (min(compute_chunk, wire_chunk) + m.latency)
    return max(cpu, wire) + fill


def bcast_tree(n: int, chunks: int) -> str:
    """The pipelined Bcast tree that fills faster: a chain needs about C + N - 2 chunk times,
    a binary tree 2C + 2 log2 N (each of its links carries every chunk twice)."""
    return "chain" if chunks + n - 2 <= 2 * chunks + 2 * math.log2(n) else "binary"
