"""An ordinary mpi4py program, unaware of mpi_collectives (for the drop-in runner test).

Usage: mpiexec -n N python -m mpi_collectives --rel R plain_app.py LABEL
Rank 0 prints one JSON line: the type of MPI.COMM_WORLD, sys.argv, and max |sum - exact|.
With LABEL "fail", the last rank raises instead: the runner must abort the whole job.
"""

import json
import sys

import numpy as np
from mpi4py import MPI
from mpi4py.MPI import COMM_WORLD

comm = MPI.COMM_WORLD
rank, size = comm.Get_rank(), comm.Get_size()
if sys.argv[1:2] == ["fail"] and rank == size - 1:
    raise RuntimeError("deliberate failure on the last rank")
x = np.sin(np.linspace(0, 20, 100_000)) * (rank + 1)
total = np.empty_like(x)
comm.Allreduce(x, total, op=MPI.SUM)
exact = np.sin(np.linspace(0, 20, 100_000)) * (size * (size + 1) / 2)
err = comm.allreduce(float(np.max(np.abs(total - exact))), op=MPI.MAX)
value_range = comm.allreduce(float(x.max()), op=MPI.MAX) - comm.allreduce(float(x.min()), op=MPI.MIN)
if rank == 0:
    print(
        json.dumps(
            {
                "type": type(comm).__name__,
                "same_object": comm is COMM_WORLD,
                "argv": sys.argv,
                "err": err,
                "range": value_range,
                "name": __name__,
            }
        )
    )
