"""What a CompressedComm finds out about the nodes, and what it does with that, under mpiexec.

Usage: [MPIR_CVAR_NUM_CLIQUES=K] mpiexec -n N python layouts.py

MPICH's clique emulation puts rank i on emulated node i mod K (shared memory inside a node,
the network between nodes). Rank 0 prints one JSON object:

* ``nodes``: the node index every rank found for every rank (must be rank mod K);
* ``default``: with the default settings, whether the communicator compresses at all, and per
  collective whether its first call took a compressed path and gave plain MPI's bytes
  (one node: plain MPI from the first call, bit for bit);
* ``forced``: with compression forced (adapt=False), per collective the compressed bytes
  each rank sent to ranks of its own node (none where nodes hold several ranks) and to other
  nodes.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
from mpi4py import MPI

from mpi_collectives import CompressedComm

WORLD = MPI.COMM_WORLD
RANK, SIZE = WORLD.Get_rank(), WORLD.Get_size()
COUNT = 1 << 17  # float64: 1 MiB, above the default min_bytes


def digest(a) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).view(np.uint8)).hexdigest()


def field(n: int, salt: int = 0) -> np.ndarray:
    return np.sin(np.linspace(0, 40, n) + 0.3 * (RANK + salt)) * 10 + RANK


def calls(comm, after=lambda name: None):
    """Each collective once (after(name) after each); returns {name: the result this rank holds}."""
    x = field(COUNT)
    blocks = np.stack([field(COUNT // SIZE, b) for b in range(SIZE)])
    results = {}
    out = np.empty_like(x)
    comm.Allreduce(x, out, MPI.SUM)
    results["Allreduce"] = out
    after("Allreduce")
    out = np.zeros_like(x)
    comm.Reduce(x, out, MPI.MAX, root=SIZE - 1)
    results["Reduce"] = out
    after("Reduce")
    out = np.empty(COUNT // SIZE)
    comm.Reduce_scatter_block(blocks, out, MPI.SUM)
    results["Reduce_scatter_block"] = out
    after("Reduce_scatter_block")
    buf = x.copy() if RANK == 0 else np.zeros_like(x)
    comm.Bcast(buf, root=0)
    results["Bcast"] = buf
    after("Bcast")
    out = np.empty((SIZE, COUNT))
    comm.Allgather(x, out)
    results["Allgather"] = out
    after("Allgather")
    out = np.zeros((SIZE, COUNT)) if RANK == 0 else None
    comm.Gather(x, out, root=0)
    results["Gather"] = out if out is not None else np.zeros(0)
    after("Gather")
    source = np.stack([field(COUNT, b) for b in range(SIZE)]) if RANK == SIZE - 1 else None
    out = np.empty(COUNT)
    comm.Scatter(source, out, root=SIZE - 1)
    results["Scatter"] = out
    after("Scatter")
    out = np.empty((SIZE, COUNT))
    comm.Alltoall(np.stack([field(COUNT, b) for b in range(SIZE)]), out)
    results["Alltoall"] = out
    after("Alltoall")
    return results


def main() -> None:
    report = {}
    comm = CompressedComm(WORLD, rel=1e-3)
    report["nodes"] = WORLD.allgather(list(comm.nodes.node_of))
    report["describe"] = repr(comm)
    plain = calls(WORLD)
    before = comm.stats.calls
    first = calls(comm)
    same = {name: digest(first[name]) == digest(plain[name]) for name in first}
    report["default"] = {
        "compressing": WORLD.allgather(comm.compressing),
        "compressed calls": WORLD.allgather(comm.stats.calls - before),
        "same bytes as plain MPI": WORLD.allgather(same),
    }
    forced = CompressedComm(WORLD, rel=1e-3, adapt=False)
    traffic, last = {}, [0, 0, 0]

    def note(name: str) -> None:
        now = [forced.stats.in_node, forced.stats.sent, forced.stats.calls]
        traffic[name] = [a - b for a, b in zip(now, last, strict=True)]
        last[:] = now

    calls(forced, note)
    report["forced"] = WORLD.allgather(traffic)
    if RANK == 0:
        print(json.dumps(report))


if __name__ == "__main__":
    main()
