"""Every rank makes the same path decisions, even where the ranks' own measurements differ.

Usage: MPIR_CVAR_NUM_CLIQUES=2 mpiexec -n 4 python decisions.py

Rank 0 restricts itself to one core before the communicator is made (where the machine has
more than one), so its own cores-per-rank measurement differs from the other ranks'. Then
every rank asks the cost model and the adaptive policy for the path of each collective over
a sweep of message sizes, with the link set to 1 Gbit/s so that the sweep crosses from
plain to compressed. Rank 0 prints one JSON object: each rank's own cores measurement, the
agreed measurements and the choices, per rank.
"""

from __future__ import annotations

import json
import os

from mpi4py import MPI

from mpi_collectives import CompressedComm, probe

WORLD = MPI.COMM_WORLD
COLLECTIVES = ("Allreduce", "Reduce", "Bcast", "Allgather", "Alltoall", "Gather", "Scatter", "Reduce_scatter_block")


def main() -> None:
    if WORLD.Get_rank() == 0 and len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    comm = CompressedComm(WORLD, rel=1e-3)
    own_cores = probe.cores_per_rank(WORLD)
    comm._machine["link"]["link"] = 1.25e8  # 1 Gbit/s: the sweep crosses the decision
    choices = []
    for what in COLLECTIVES:
        for k in range(12, 29):
            for itemsize in (4, 8):
                nbytes = 1 << k
                choice = comm._adaptive.choose(what, nbytes, nbytes, itemsize)
                estimate = comm._estimate(what, nbytes, itemsize)
                algorithm = comm._choose_algorithm("allreduce", comm.nodes.nodes, nbytes)
                choices.append([what, nbytes, itemsize, bool(choice.compressed), estimate, algorithm])
    everyone = WORLD.gather({"own_cores": own_cores, "machine": comm._machine, "choices": choices})
    if WORLD.Get_rank() == 0:
        print(json.dumps(everyone))
    comm.Free()


if __name__ == "__main__":
    main()
