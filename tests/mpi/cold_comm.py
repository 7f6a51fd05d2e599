"""How many kernels each rank compiles while a CompressedComm is made on a cold machine.

Usage: NUMBA_CACHE_DIR=<empty folder> mpiexec -n N python cold_comm.py [fail-on RANK]

``fail-on RANK``: that rank's warm-up raises (fault injection); every rank prints instead
what construction raised on it.

Lists numba's compile events for the kernels of errbound and mpi_collectives (numba's own
helpers recompile in every process that compiles anything). Rank 0 prints one JSON list:
per rank, the kernel signatures it compiled during construction, and those it compiled in
the compressed calls that follow (none: construction warmed every kernel up). The calls: every compressed collective, on
1-D, long-row 2-D and 3-D messages of both float types.
"""

from __future__ import annotations

import json
import sys

import numpy as np
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


def failing(rank: int) -> None:
    """Construction with the warm-up of ``rank`` failing: what each rank raised."""
    from mpi_collectives import CompressedComm, probe

    if WORLD.Get_rank() == rank:

        def broken(codec):
            def fail():
                raise OSError(28, "No space left on device")

            return [fail]

        probe._warm_up_tasks = broken
    try:
        CompressedComm(WORLD, rel=1e-3, adapt=False)
        got = None
    except Exception as exc:  # noqa: BLE001 - reported
        got = [type(exc).__name__, str(exc)]
    every = WORLD.gather(got)
    if WORLD.Get_rank() == 0:
        print(json.dumps(every))


def main() -> None:
    if sys.argv[1:2] == ["fail-on"]:
        failing(int(sys.argv[2]))
        return
    WORLD.Barrier()
    with event.install_recorder("numba:compile") as recorder:
        from mpi_collectives import CompressedComm

        comm = CompressedComm(WORLD, rel=1e-3, adapt=False)  # compresses on one node too
    with event.install_recorder("numba:compile") as later:
        for dtype in (np.float32, np.float64):  # compressed calls: above min_bytes
            for shape in ((1 << 18,), (2, 1 << 17), (64, 64, 64)):  # short rows, long rows
                x = np.sin(np.linspace(0, 40, 1 << 18) + WORLD.Get_rank()).astype(dtype).reshape(shape)
                size = WORLD.Get_size()
                comm.Allreduce(x, np.empty_like(x))
                comm.Iallreduce(x, np.empty_like(x)).Wait()
                comm.Reduce(x, np.empty_like(x), root=0)
                comm.Reduce_scatter_block(np.concatenate([x] * size), np.empty_like(x))
                comm.Bcast(x, root=0)
                comm.Ibcast(x, root=0).Wait()
                comm.Allgather(x, np.empty((size, *shape), dtype))
                comm.Gather(x, np.empty((size, *shape), dtype), root=0)
                comm.Scatter(np.concatenate([x] * size), np.empty_like(x), root=0)
                comm.Alltoall(np.concatenate([x] * size), np.empty((size * x.shape[0], *shape[1:]), dtype))
    counts = WORLD.gather({"construction": ours(recorder), "calls": ours(later)})
    comm.Free()
    if WORLD.Get_rank() == 0:
        print(json.dumps(counts))


if __name__ == "__main__":
    main()
