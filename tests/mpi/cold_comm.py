"""How many kernels each rank compiles while a CompressedComm is made on a cold machine.

Usage: NUMBA_CACHE_DIR=<empty folder> mpiexec -n N python cold_comm.py

Lists numba's compile events for the kernels of errbound and mpi_collectives (numba's own
helpers recompile in every process that compiles anything). Rank 0 prints one JSON list:
per rank, the kernel signatures it compiled.
"""

from __future__ import annotations

import json

from mpi4py import MPI
from numba.core import event

WORLD = MPI.COMM_WORLD


def ours(recorder) -> list[str]:
    compiled = []
    for _, e in recorder.buffer:
        function = e.data["dispatcher"].py_func
        if e.is_start and function.__module__.startswith(("errbound", "mpi_collectives")):
            compiled.append(f"{function.__module__}.{function.__qualname__}{e.data['args']}")
    return compiled


def main() -> None:
    WORLD.Barrier()
    with event.install_recorder("numba:compile") as recorder:
        from mpi_collectives import CompressedComm

        comm = CompressedComm(WORLD, rel=1e-3, adapt=False)  # compresses on one node too
    counts = WORLD.gather(ours(recorder))
    comm.Free()
    if WORLD.Get_rank() == 0:
        print(json.dumps(counts))


if __name__ == "__main__":
    main()
