"""The one-sided window never shows a half-written record.

Usage: mpiexec -n 2 python window_records.py [SECONDS]

Rank 1 publishes call records as fast as it can, each field a function of the call number;
rank 0 reads rank 1's records over and over meanwhile and checks every record it is given
against its call number. Rank 0 prints one JSON object: records read, records that did not
match their number (must be 0), and flag words that arrived torn (must be 0).
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np
from mpi4py import MPI

from mpi_collectives.transport.channel import Window

WORLD = MPI.COMM_WORLD


def fields(seq: int) -> tuple[int, ...]:
    return (seq, 1 + seq % 2, 1 + seq % 8, 3 * seq, 4 + 4 * (seq % 2), seq % 5, seq % 3)


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    comm = MPI.Intracomm(WORLD.Dup())
    window = Window(comm)
    stop = np.zeros(1, np.int64)
    read = bad = 0
    rank = comm.Get_rank()
    if rank == 1:
        request = comm.Irecv(stop, 0, 5)
        seq = 0
        while not request.Test():
            seq += 1
            window.publish(*fields(seq))
    else:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            for record in window.read(1):
                read += 1
                bad += record != fields(record[0])
        comm.Send(stop, 1, 5)
    totals = comm.reduce(np.array([read, bad]), MPI.SUM, 0)
    window.free()
    comm.Free()
    if rank == 0:
        print(json.dumps({"read": int(totals[0]), "torn records": int(totals[1])}))


if __name__ == "__main__":
    main()
