"""Bad input must raise the same clear exception on every rank, never hang.

Usage: mpiexec -n N python bad_input.py

Each case runs on every rank and records the exception class and message each rank saw;
afterwards one compressed Allreduce checks that the communicator still works. Rank 0
prints one JSON object: case -> list of [class name, message] per rank.
"""

from __future__ import annotations

import json

import numpy as np
from mpi4py import MPI

from mpi_collectives import CompressedComm

WORLD = MPI.COMM_WORLD
RANK, SIZE = WORLD.Get_rank(), WORLD.Get_size()
N = 20_000  # float64: above min_bytes=64 KiB on every rank


def outcome(call) -> list[str]:
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test reports what was raised
        return [type(exc).__name__, str(exc)]
    return ["no exception", ""]


def still_works(comm: CompressedComm) -> bool:
    x = np.full(N, 1.0 + RANK)
    out = np.empty_like(x)
    comm.Allreduce(x, out, MPI.SUM)
    return bool(np.allclose(out, SIZE * (SIZE + 1) / 2, atol=1e-3))


def main() -> None:
    results: dict[str, list[str]] = {}
    results["settings differ"] = outcome(lambda: CompressedComm(WORLD, abs=1e-3 if RANK == 0 else 2e-3))
    results["invalid settings on one rank"] = outcome(
        lambda: CompressedComm(WORLD, rel=-1.0 if RANK == SIZE - 1 else 1e-3)
    )
    results["both abs and rel"] = outcome(lambda: CompressedComm(WORLD, abs=1e-3, rel=1e-3))
    results["unknown codec"] = outcome(lambda: CompressedComm(WORLD, abs=1e-3, codec="nope"))

    comm = CompressedComm(WORLD, abs=1e-3, min_bytes=64 * 1024, adapt=False)  # N float64 take the compressed paths
    x = np.linspace(0, 1, N) + RANK
    out = np.empty_like(x)
    results["bitwise op on float data"] = outcome(lambda: comm.Allreduce(x, out, MPI.BAND))
    results["ops differ"] = outcome(lambda: comm.Allreduce(x, out, MPI.SUM if RANK == 0 else MPI.MAX))
    longer = np.linspace(0, 1, N + 1000 * (RANK == 0))
    results["Allreduce sizes differ"] = outcome(lambda: comm.Allreduce(longer, np.empty_like(longer), MPI.SUM))
    results["Reduce roots differ"] = outcome(lambda: comm.Reduce(x, out, MPI.SUM, root=0 if RANK == 0 else 1))
    results["Bcast sizes differ"] = outcome(lambda: comm.Bcast(longer.copy(), root=0))
    results["Allgather sizes differ"] = outcome(lambda: comm.Allgather(longer, np.empty((SIZE, longer.size))))
    results["Iallreduce sizes differ"] = outcome(lambda: comm.Iallreduce(longer, np.empty_like(longer), MPI.SUM).Wait())
    results["communicator still works"] = ["ok" if still_works(comm) else "broken", ""]

    everyone = WORLD.gather(results)
    if RANK == 0:
        print(json.dumps({case: [r[case] for r in everyone] for case in results}))


if __name__ == "__main__":
    main()
