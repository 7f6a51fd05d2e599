"""The cost model's side of benchmarks/collectives.py: one core's speeds measured on the
payload, the prediction printed beside every measured row, and the extrapolation to clusters.

The model itself is mpi_collectives.costmodel (docs/collectives.md derives it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import numpy as np
from collectives_cases import Payloads, value_range
from mpi4py import MPI

from mpi_collectives import costmodel

TCP_SHARE = 0.956  # TCP payload share of a 1514-byte frame: what the bed's shaped link delivers


def quiet_wait(comm: MPI.Intracomm) -> None:
    """A barrier that sleeps between polls: MPICH busy-polls in a blocking call, and with
    4 ranks on 2 cores three spinning ranks halved the one-core speeds rank 0 calibrated."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.002)


def calibrate(payloads: Payloads, nranks: int, settings: dict) -> dict[str, float]:
    """One core's throughput (bytes of floats per second, best of 3) of the compute each path
    does per byte, on 16 MiB of rank 0's data cut into 1 MiB chunks as the pipelines cut it:
    reductions (quantize alone; quantize and predict + encode; decode, half added and half
    restored and written, as a SUM's ring does), data movement (the fz block codec), and a
    copy of the floats (what a rank moves through shared memory costs at least that)."""
    import numba

    from mpi_collectives.movement import blockcodec
    from mpi_collectives.reduction import codes
    from mpi_collectives.reduction.grid import reduction_grid
    from mpi_collectives.settings import SUM
    from mpi_collectives.transport import chunks

    x = payloads.reduction(0, (16 << 20) // payloads.dtype.itemsize)
    flat = x.reshape(-1)
    bound = settings["abs"] if settings.get("abs") is not None else settings["rel"] * value_range([x])
    grid = reduction_grid(SUM, nranks, bound, float(np.max(np.abs(flat))), flat.dtype)
    row, trailing = chunks.row_layout(x.shape)
    parts = chunks.split(0, flat.size, row, trailing, (1 << 20) // flat.dtype.itemsize)
    out = np.empty_like(flat)

    def best(work: Callable[[], object], nbytes: int = flat.nbytes) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return nbytes / min(times)

    def residuals(p):
        return codes.quantize_residuals(p.of(flat), grid, p.shape, np.empty(p.size, grid.int_dtype))

    def decode_both(p, blob, acc):
        """A SUM's decodes, half of them each way: added on a reduce-scatter hop, and restored
        and written at the end."""
        codes.decode_add(blob, acc)
        codes.write(p.of(out), codes.decode(blob, p.size, grid.int_dtype), grid, None, residuals_of=p.shape)

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        red = [codes.encode(residuals(p), p.shape, predict=False) for p in parts]
        accs = [np.zeros(p.size, grid.int_dtype) for p in parts]
        mov = [blockcodec.encode(p.of(flat), p.shape, bound, "fz") for p in parts]
        target = np.empty(flat.size, grid.int_dtype)
        return {
            "quantize": best(lambda: [residuals(p) for p in parts]),
            "reduce_encode": best(lambda: [codes.encode(residuals(p), p.shape, predict=False) for p in parts]),
            "reduce_decode": best(
                lambda: [decode_both(p, b, a) for p, b, a in zip(parts, red, accs, strict=True)], 2 * flat.nbytes
            ),
            "move_encode": best(lambda: [blockcodec.encode(p.of(flat), p.shape, bound, "fz") for p in parts]),
            "move_decode": best(lambda: [blockcodec.decode(b, p.of(out)) for p, b in zip(parts, mov, strict=True)]),
            "copy": best(lambda: np.copyto(target.view(flat.dtype)[: flat.size], flat)),
        }
    finally:
        numba.set_num_threads(threads)


def link_rate() -> float | None:
    """NETBED_RATE ('1gbit', '2500mbit') in bits per second, None off the bed."""
    text = os.environ.get("NETBED_RATE", "").strip().lower()
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    for unit, scale in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return None


def machine(op: str, ratio: float, speeds: dict[str, float], link: float, cores: float, chunk: float, **extra):
    kind = "reduce" if op in costmodel.REDUCTIONS else "move"
    return costmodel.Machine(
        link=link,
        encode=speeds[f"{kind}_encode"],
        decode=speeds[f"{kind}_decode"],
        ratio=ratio,
        cores=cores,
        chunk=chunk,
        quantize=speeds.get("quantize", 0.0),
        memory=speeds.get("copy", 4e9),
        **extra,
    )


def predict(
    op: str,
    nbytes: int,
    nodes: int,
    per_node: int,
    ratio: float,
    speeds: dict[str, float],
    link_bits: float,
    segment: int,
) -> tuple[float, float]:
    """(plain, compressed) seconds for this machine: the link at 95.6 % of its rate, the cores
    of this host shared by all ranks. Plain MPI with one rank per node: MPICH's algorithms
    below 8 ranks (costmodel.plain); on nodes of several ranks: bandwidth-optimal between
    nodes (costmodel.plain_layout)."""
    from mpi_collectives.transport import chunks

    n = nodes * per_node
    cores = min(1.0, len(os.sched_getaffinity(0)) / n)
    link = TCP_SHARE * link_bits / 8
    block = nbytes if op == "bcast" else nbytes // n
    rule = chunks.REDUCTION if op in costmodel.REDUCTIONS else chunks.MOVEMENT
    chunk = chunks.target_values(segment, 4, max(block // 4, 1), rule) * 4  # the rule the collectives use
    m = machine(op, ratio, speeds, link, cores, chunk)
    if per_node == 1 and op in ("allreduce", "bcast", "allgather", "reduce_scatter_block"):
        plain = costmodel.plain(op, nbytes, nodes, link)
    else:
        plain = costmodel.plain_layout(op, nbytes, nodes, per_node, m)
    return plain, costmodel.compressed_layout(op, nbytes, nodes, per_node, m)


def cluster_table(speeds: dict[str, float], ratios: dict[str, float], nbytes: int, memory: float, latency: float):
    """Rows of the extrapolation to clusters: nodes x ranks per node x link, a core per rank,
    the node's memory bandwidth shared by its ranks; plain MPI bandwidth-optimal."""
    rows = []
    for gbit in (10, 25, 100, 200):
        for nodes in (8, 64, 512):
            for per_node in (16, 128):
                row = {"gbit": gbit, "nodes": nodes, "per_node": per_node}
                for op in ("allreduce", "bcast"):
                    m = machine(
                        op,
                        ratios["reduce" if op == "allreduce" else "move"],
                        {**speeds, "copy": min(speeds["copy"], memory / per_node)},
                        gbit * 1e9 / 8,
                        1.0,
                        min(4 << 20, nbytes / per_node),
                        latency=latency,
                    )
                    plain = costmodel.plain_layout(op, nbytes, nodes, per_node, m)
                    ours = costmodel.compressed_layout(op, nbytes, nodes, per_node, m)
                    row[op] = (plain, ours)
                rows.append(row)
    return rows
