"""A cost model of plain and compressed collectives (docs/collectives.md derives it and checks
it against the netbed).

A layout is K nodes of L ranks (N = K L); each node has one link to the others, ``link``
bytes/s each way, shared by its ranks, and its ranks move data among themselves through
shared memory (``memory`` bytes/s per rank). The compressor and decompressor run at
``encode`` and ``decode`` bytes of floats per second on one core (for reductions: quantize
+ encode and decode + write; for data movement the fz block codec), ``quantize`` alone
where the two-level reductions quantize before they encode; ``cores`` per rank (below 1
where ranks outnumber cores, as on the netbed: 2 cores for 4 ranks); ``ratio`` is float
bytes per compressed byte; ``chunk`` the pipeline's chunk size; ``latency`` per message
between nodes.

* Plain MPI: bandwidth-optimal between nodes (each node's link carries what the node must
  send: 2(K-1)/K M for an Allreduce of M bytes, M for a Bcast, ...), plus the copies inside
  the node. With one rank per node, MPICH's own algorithms below 8 ranks (:func:`plain`).
* Compressed: the slowest of compute per rank and bytes on a node's link, plus the time to
  fill the pipeline, plus the stages inside the node that do not overlap with it.

A pipelined compressed collective takes the longest of its stages, compute per rank and
bytes on the busiest link, plus the time to fill the pipeline: per ring step the shorter
stage of one chunk (the longer one overlaps), per Bcast hop one chunk's wire time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

OPS = ("allreduce", "reduce", "reduce_scatter_block", "bcast", "allgather", "gather", "scatter", "alltoall")
REDUCTIONS = ("allreduce", "reduce", "reduce_scatter_block")


@dataclass(frozen=True)
class Machine:
    """What the model needs to know about the hardware and the data."""

    link: float  # bytes/s per node (one rank per node: per rank) and direction
    encode: float  # bytes of floats/s, one core
    decode: float  # bytes of floats/s, one core
    ratio: float  # float bytes / compressed bytes on the wire
    cores: float = 1.0  # cores per rank (0.5 for 4 ranks on 2 cores)
    chunk: float = 1 << 20  # bytes of floats per pipeline chunk
    latency: float = 0.0  # seconds per message between nodes
    memory: float = 4e9  # bytes/s one rank moves to another of its node (shared memory)
    quantize: float = 0.0  # bytes/s of quantizing alone (0: as fast as encode)


def plain(op: str, nbytes: float, n: int, link: float) -> float:
    """Seconds for plain MPI's usual algorithms with one rank per node: Bcast a binomial tree
    (MPICH below 8 ranks), the others bandwidth-optimal (ring or reduce-scatter + allgather)."""
    if op == "bcast":
        return math.ceil(math.log2(n)) * nbytes / link if n > 1 else 0.0
    share = (n - 1) / n * nbytes / link
    return 2 * share if op == "allreduce" else share


def plain_layout(op: str, nbytes: float, nodes: int, per_node: int, m: Machine) -> float:
    """Seconds for plain MPI on K nodes of L ranks, bandwidth-optimal between nodes (what a
    node-aware MPI achieves at best), with the copies inside the node. nbytes as for the
    compressed path: the vector each rank ends with (Alltoall: each rank's whole buffer)."""
    k, ell = nodes, per_node
    part = (k - 1) / k
    # passes over the node's share of the message through memory, per rank: a reduce-scatter
    # receives and adds (2), an allgather or a broadcast receives (1)
    inside = (ell - 1) / ell * nbytes / m.memory if ell > 1 else 0.0
    if op == "allreduce":
        wire = 2 * part * nbytes
        inside *= 3
    elif op in ("reduce", "reduce_scatter_block"):
        wire = part * nbytes
        inside *= 2
    elif op in ("allgather", "gather", "scatter"):
        wire = part * nbytes
    elif op == "bcast":
        wire = nbytes if k <= 2 else min(math.ceil(math.log2(k)), 2 * part) * nbytes
    elif op == "alltoall":
        wire = ell * part * nbytes
    else:
        raise ValueError(f"unknown op {op!r}")
    return wire / m.link + inside + (2 * math.log2(max(k, 2)) * m.latency)


def _cpu(work: list[float], m: Machine) -> float:
    """Seconds of compute, with `work` core-seconds per rank: spread over each rank's cores, and
    where ranks share cores no faster than the pool allows."""
    n = len(work)
    if m.cores >= 1:
        return max(work) / m.cores
    return max(max(work), sum(work) / (n * m.cores))


def compressed(op: str, nbytes: float, n: int, m: Machine, tree: str = "chain") -> float:
    """Seconds for CompressedComm's pipelined algorithms with one rank per node (ring
    reductions and Allgather, a chain or binary-tree Bcast). A ring's chunk is at most a
    block (M/N): with many ranks there is no pipeline within a step, and the stages of a step
    add up instead of overlapping."""
    part = (n - 1) / n
    wire_rate = m.link * m.ratio
    chunk = min(m.chunk, nbytes / n) if op != "bcast" else min(m.chunk, nbytes)
    if op in ("allreduce", "reduce"):
        work = [nbytes / m.encode + (2 if op == "allreduce" else 1) * part * nbytes / m.decode] * n
        wire, hops = (2 if op == "allreduce" else 1) * part * nbytes / wire_rate, 2 * (n - 1)
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
    elif op in ("gather", "scatter"):  # the root codes or decodes every other block
        work = [part * nbytes / (m.decode if op == "gather" else m.encode)] + [nbytes / n / m.encode] * (n - 1)
        wire, hops = part * nbytes / wire_rate, 1
    elif op == "alltoall":
        work = [part * nbytes / m.encode + part * nbytes / m.decode] * n
        wire, hops = part * nbytes / wire_rate, 1
    else:
        raise ValueError(f"unknown op {op!r}")
    cpu = _cpu(work, m)
    share = max(m.cores, 1.0) if m.cores >= 1 else m.cores
    compute_chunk = (chunk / m.encode + chunk / m.decode) / share
    wire_chunk = chunk / wire_rate
    if op == "bcast":  # forwarded before it is decoded: a hop costs the chunk's wire time
        fill = hops * (wire_chunk + m.latency) + compute_chunk
    elif op in ("gather", "scatter", "alltoall"):
        fill = m.latency + min(compute_chunk, wire_chunk)
    else:  # a ring step overlaps all but the shorter stage of one chunk
        fill = hops * (min(compute_chunk, wire_chunk) + m.latency)
    return max(cpu, wire) + fill


def _log_steps(op: str, name: str, share: float, nodes: int, per_node: int, m: Machine) -> float:
    """Seconds for an unpipelined algorithm on codes of `share` bytes of floats per rank among
    `nodes` peers, each node's link shared by `per_node` such exchanges."""
    steps = math.ceil(math.log2(nodes))
    rate = m.link * m.ratio / per_node  # each rank's slice of its node's link
    share_cores = min(m.cores, 1.0)

    def step(size: float) -> float:
        return (size / m.encode + size / m.decode) / share_cores + size / rate + m.latency

    if name == "doubling":
        return steps * step(share)
    if name == "tree":
        return (2 if op == "allreduce" else 1) * steps * step(share)
    if name == "halving":
        total, size = 0.0, share
        for _ in range(steps):
            size /= 2
            total += step(size)
        if op == "allreduce":  # pieces forwarded as encoded, decoded once each
            total += (nodes - 1) / nodes * share / rate + steps * m.latency
            total += (nodes - 1) / nodes * share / m.decode / share_cores
        return total
    raise ValueError(f"unknown algorithm {name!r}")


def reduction_algorithm(op: str, nbytes: float, nodes: int, per_node: int, m: Machine) -> tuple[str, float]:
    """(the fastest algorithm between nodes for a reduction whose share per rank is `nbytes`,
    its seconds): the pipelined ring, recursive doubling or halving/doubling (K a power of
    two, Allreduce), or a binomial tree."""
    ring_machine = replace(m, link=m.link / per_node)  # a node's link carries every share's ring
    options = {"ring": compressed(op, nbytes, nodes, ring_machine)}
    if nodes > 1:
        options["tree"] = _log_steps(op, "tree", nbytes, nodes, per_node, m)
        if nodes & (nodes - 1) == 0:
            options["halving"] = _log_steps(op, "halving", nbytes, nodes, per_node, m)
            if op == "allreduce":
                options["doubling"] = _log_steps(op, "doubling", nbytes, nodes, per_node, m)
    name = min(options, key=options.get)
    return name, options[name]


def compressed_layout(op: str, nbytes: float, nodes: int, per_node: int, m: Machine) -> float:
    """Seconds for CompressedComm on K nodes of L ranks (the two-level algorithms; with L = 1
    the one-level ones). nbytes as in plain_layout."""
    k, ell = nodes, per_node
    if ell == 1:
        if op in ("allreduce", "reduce"):
            return reduction_algorithm(op, nbytes, k, 1, m)[1]
        return compressed(op, nbytes, k, m, bcast_tree(k, max(1, round(nbytes / m.chunk))))
    share = nbytes / ell
    copy = (ell - 1) / ell * nbytes / m.memory  # one pass over the node's other shares, per rank
    cores = min(m.cores, 1.0)
    quantize = m.quantize or m.encode
    if op in REDUCTIONS:
        # quantize all (reads the floats, writes the codes: no faster than memory allows),
        # then receive and add the other ranks' codes of this rank's share
        before = max(nbytes / quantize / cores, 2 * nbytes / m.memory) + 2 * copy / cores
        cross_op = "reduce_scatter_block" if op == "reduce_scatter_block" else op
        between = reduction_algorithm(cross_op, share, k, ell, m)[1] if k > 1 else share / m.decode / cores
        after = copy / cores if op == "allreduce" else copy / ell / cores
        return before + between + after
    part = (k - 1) / k
    wire_rate = m.link * m.ratio
    if op == "bcast":
        work = share / min(m.encode, m.decode)
        wire = nbytes / wire_rate
        fill = (k - 1) * (min(m.chunk, share) / wire_rate / ell + m.latency)
        return max(work / cores, wire) + fill + copy / cores  # every rank receives the other shares
    if op == "allgather":
        work = nbytes / (k * ell) / m.encode + part * share / m.decode
        wire = part * nbytes / wire_rate
        return max(work / cores, wire) + copy / cores + (k - 1) * m.latency
    if op in ("gather", "scatter"):
        work = part * nbytes / (m.decode if op == "gather" else m.encode)
        return max(work / cores, part * nbytes / wire_rate) + copy / ell / cores + m.latency
    if op == "alltoall":
        work = part * nbytes * (1 / m.encode + 1 / m.decode)
        return max(work / cores, ell * part * nbytes / wire_rate) + copy / cores + m.latency
    raise ValueError(f"unknown op {op!r}")


def bcast_tree(n: int, chunks: int) -> str:
    """The pipelined Bcast tree that fills faster: a chain needs about C + N - 2 chunk times,
    a binary tree 2C + 2 log2 N (each of its links carries every chunk twice)."""
    return "chain" if chunks + n - 2 <= 2 * chunks + 2 * math.log2(max(n, 1)) else "binary"
