"""The MPI misuse matrix: each way of calling a collective wrongly on some ranks must raise on
every rank within seconds (or behave as plain MPI does), never hang.

Usage: mpiexec -n N python misuse.py

Each scenario runs on every rank of a communicator that compresses (adapt=False, so the
compressed paths run on one machine; with the default settings a job on one node is plain
MPI, mpi4py's own methods, and behaves as plain MPI does); every rank records the
exception it saw (class, message) and how long the call took. Between scenarios a plain
Barrier on COMM_WORLD keeps them apart, and a correct compressed Allreduce checks that the
communicator still works. Rank 0 prints one JSON object: scenario -> list of
[class, message, seconds] per rank, plus "still works" -> list of booleans.

The failure inside one rank's compressed work is real: that rank lowers its address-space
limit (RLIMIT_AS) just above what it uses, so the arrays the collective allocates do not fit
and numpy raises MemoryError there, as it would on a node out of memory.
"""

from __future__ import annotations

import json
import resource
import time

import numpy as np
from mpi4py import MPI

from mpi_collectives import CompressedComm

WORLD = MPI.COMM_WORLD
RANK, SIZE = WORLD.Get_rank(), WORLD.Get_size()
MIN_BYTES = 64 * 1024
LARGE = 40_000  # float64: 320 KB, compressed
SMALL = 1_000  # float64: 8 KB, plain MPI


def outcome(call) -> list:
    start = time.perf_counter()
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test reports what was raised
        return [type(exc).__name__, str(exc), time.perf_counter() - start]
    return ["no exception", "", time.perf_counter() - start]


def read_only(n: int) -> np.ndarray:
    a = np.zeros(n)
    a.flags.writeable = False
    return a


def strided(n: int) -> np.ndarray:
    return np.zeros(2 * n)[::2]


def data(n: int) -> np.ndarray:
    return np.sin(np.linspace(0, 30, n)) + RANK


def vm_size() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmSize")


def out_of_memory(comm: CompressedComm) -> None:
    """The last rank runs out of memory inside a compressed Allreduce of 8 Mi float64 cut into
    one chunk per rank (so that its code arrays take more than the 8 MiB left; MPI itself
    needs a few MiB to carry on)."""
    x = data(8 << 20)
    out = np.empty_like(x)
    if RANK != SIZE - 1:
        comm.Allreduce(x, out, MPI.SUM)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (8 << 20), hard))
    try:
        comm.Allreduce(x, out, MPI.SUM)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def out_of_memory_decoding(comm: CompressedComm) -> None:
    """The last rank runs out of memory while it decodes a compressed Bcast of 8 Mi float64
    (one chunk: the decoder's work arrays take more than the 8 MiB left)."""
    buf = data(8 << 20) if RANK == 0 else np.zeros(8 << 20)
    if RANK != SIZE - 1:
        comm.Bcast(buf, root=0)
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm_size() + (8 << 20), hard))
    try:
        comm.Bcast(buf, root=0)
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def still_works(comm: CompressedComm) -> bool:
    """A blocking and a nonblocking Allreduce, one compressed and one plain, give the sum."""
    ok = True
    for n in (LARGE, SMALL):
        x = np.full(n, 1.0 + RANK)
        out, nb_out = np.empty_like(x), np.empty_like(x)
        comm.Allreduce(x, out, MPI.SUM)
        comm.Iallreduce(x, nb_out, MPI.SUM).Wait()
        ok &= bool(np.allclose(out, SIZE * (SIZE + 1) / 2, atol=1e-3) and np.array_equal(out, nb_out))
    return ok


def refused(n: int) -> object:
    """A receive buffer that mpi4py refuses: read-only bytes on the last rank."""
    return bytes(8 * n) if RANK == SIZE - 1 else np.empty(n)


def numpy_root(comm: CompressedComm, n: int) -> None:
    """A valid call: the root as a numpy integer on the last rank, a Python int elsewhere
    (mpi4py takes both); every rank must get the root's data (within the bound)."""
    root = np.int64(0) if RANK == SIZE - 1 else 0
    buf = data(n) if RANK == 0 else np.empty(n)
    comm.Bcast(buf, root=root)
    expected = np.sin(np.linspace(0, 30, n))
    if np.abs(buf - expected).max() > 1e-3:
        raise AssertionError(f"Bcast with a numpy root: error {np.abs(buf - expected).max()}")
    out = np.empty(n)
    comm.Reduce(data(n), out, MPI.SUM, root=root)
    if RANK == 0 and np.abs(out - (SIZE * expected + SIZE * (SIZE - 1) / 2)).max() > 1e-3:
        raise AssertionError("Reduce with a numpy root: result beyond the bound")


def mixed_forms(comm: CompressedComm, n: int) -> None:
    """A valid call: the last rank describes its messages in mpi4py's [buffer, (count,
    displ), datatype] form, the others pass arrays; the sum must be within the bound."""
    x, out = data(n), np.empty(n)
    if RANK == SIZE - 1:
        comm.Allreduce([x, (n, 0), MPI.DOUBLE], [out, (n, 0), MPI.DOUBLE], MPI.SUM)
    else:
        comm.Allreduce(x, out, MPI.SUM)
    expected = SIZE * np.sin(np.linspace(0, 30, n)) + SIZE * (SIZE - 1) / 2
    if np.abs(out - expected).max() > 1e-3:
        raise AssertionError(f"Allreduce with mixed message forms: error {np.abs(out - expected).max()}")


def aliased(comm: CompressedComm, n: int) -> None:
    """The last rank passes one array as send and receive buffer (MPI refuses that)."""
    x = data(n)
    comm.Allreduce(x, x if RANK == SIZE - 1 else np.empty(n), MPI.SUM)


def then_allreduce(comm: CompressedComm, straddle) -> None:
    """``straddle()``, whose plain ranks return at once, then a valid compressed Allreduce with
    no barrier between: the root that returned started the Allreduce's agreement while the
    others were still in the straddled call's, and the two were matched (every rank raised
    on one of them, then the others waited forever). The Allreduce must work on every rank;
    the scenario reports what the straddled call raised."""
    try:
        straddle()
    finally:
        comm.Allreduce(data(LARGE), np.empty(LARGE), MPI.SUM)


def then_small_bcasts(comm: CompressedComm, straddle) -> None:
    """``straddle()``, then five small (plain) Bcasts: the root's small messages leave at once,
    so it is five calls on before the others look where it was (with four calls of history
    kept, its record of the straddled call was gone and they waited for it forever)."""
    try:
        straddle()
    finally:
        for _ in range(5):
            comm.Bcast(data(SMALL) if RANK == 0 else np.empty(SMALL), root=0)


def main() -> None:
    comm = CompressedComm(WORLD, abs=1e-3, min_bytes=MIN_BYTES, adapt=False)
    # the default settings on one node: mpi4py's own methods (plain MPI from the first call)
    one_node = CompressedComm(WORLD, abs=1e-3)
    assert not one_node.compressing
    unpipelined = CompressedComm(
        WORLD, abs=1e-3, segment_bytes=1 << 40, algorithm="ring", bcast_algorithm="chain", adapt=False
    )
    last = RANK == SIZE - 1
    scenarios = {
        "Allreduce sizes straddle min_bytes": lambda: comm.Allreduce(
            data(LARGE if RANK == 0 else SMALL), np.empty(LARGE if RANK == 0 else SMALL), MPI.SUM
        ),
        "Allreduce sizes straddle min_bytes (rank 0 small)": lambda: comm.Allreduce(
            data(SMALL if RANK == 0 else LARGE), np.empty(SMALL if RANK == 0 else LARGE), MPI.SUM
        ),
        "Bcast sizes straddle min_bytes (root large)": lambda: comm.Bcast(
            data(LARGE) if RANK == 0 else np.empty(SMALL), root=0
        ),
        "Bcast sizes straddle min_bytes (root small)": lambda: comm.Bcast(
            data(SMALL) if RANK == 0 else np.empty(LARGE), root=0
        ),
        "Allreduce read-only receive buffer on one rank": lambda: comm.Allreduce(
            data(LARGE), read_only(LARGE) if last else np.empty(LARGE), MPI.SUM
        ),
        "Allreduce non-contiguous receive buffer on one rank": lambda: comm.Allreduce(
            data(LARGE), strided(LARGE) if last else np.empty(LARGE), MPI.SUM
        ),
        "Bcast read-only buffer on one receiver": lambda: comm.Bcast(
            data(LARGE) if RANK == 0 else read_only(LARGE) if last else np.empty(LARGE), root=0
        ),
        "Allgather non-contiguous receive buffer on one rank": lambda: comm.Allgather(
            data(LARGE), strided(LARGE * SIZE) if last else np.empty(LARGE * SIZE)
        ),
        "Reduce read-only receive buffer at the root": lambda: comm.Reduce(
            data(LARGE), read_only(LARGE) if RANK == 0 else None, MPI.SUM, root=0
        ),
        "Allreduce read-only receive buffer, small message": lambda: comm.Allreduce(
            data(SMALL), read_only(SMALL) if last else np.empty(SMALL), MPI.SUM
        ),
        "Allreduce bytes receive buffer on one rank": lambda: comm.Allreduce(data(LARGE), refused(LARGE), MPI.SUM),
        "Allreduce bytes receive buffer on one rank, small message": lambda: comm.Allreduce(
            data(SMALL), refused(SMALL), MPI.SUM
        ),
        "Iallreduce sizes straddle min_bytes": lambda: comm.Iallreduce(
            data(LARGE if RANK == 0 else SMALL), np.empty(LARGE if RANK == 0 else SMALL), MPI.SUM
        ).Wait(),
        "Iallreduce sizes straddle min_bytes (rank 0 small)": lambda: comm.Iallreduce(
            data(SMALL if RANK == 0 else LARGE), np.empty(SMALL if RANK == 0 else LARGE), MPI.SUM
        ).Wait(),
        "Ibcast sizes straddle min_bytes (root large)": lambda: comm.Ibcast(
            data(LARGE) if RANK == 0 else np.empty(SMALL), root=0
        ).Wait(),
        "Ibcast sizes straddle min_bytes (root small)": lambda: comm.Ibcast(
            data(SMALL) if RANK == 0 else np.empty(LARGE), root=0
        ).Wait(),
        "Bcast sizes straddle min_bytes, then Allreduce at once (root small)": lambda: then_allreduce(
            comm, lambda: comm.Bcast(data(SMALL) if RANK == 0 else np.empty(LARGE), root=0)
        ),
        "Ibcast sizes straddle min_bytes, then Iallreduce at once (root small)": lambda: then_allreduce(
            comm, lambda: comm.Ibcast(data(SMALL) if RANK == 0 else np.empty(LARGE), root=0).Wait()
        ),
        "Bcast sizes straddle min_bytes, then small Bcasts (root small)": lambda: then_small_bcasts(
            comm, lambda: comm.Bcast(data(SMALL) if RANK == 0 else np.empty(LARGE), root=0)
        ),
        "Allreduce sizes straddle min_bytes, and a read-only receive buffer on the last rank": lambda: comm.Allreduce(
            data(LARGE if RANK == 0 else SMALL),
            (np.empty(LARGE) if RANK == 0 else read_only(SMALL) if last else np.empty(SMALL)),
            MPI.SUM,
        ),
        "Iallreduce read-only receive buffer on one rank": lambda: comm.Iallreduce(
            data(LARGE), read_only(LARGE) if last else np.empty(LARGE), MPI.SUM
        ).Wait(),
        "Iallreduce bytes receive buffer on one rank, small message": lambda: comm.Iallreduce(
            data(SMALL), refused(SMALL), MPI.SUM
        ).Wait(),
        "one node: Allreduce read-only receive buffer on one rank": lambda: one_node.Allreduce(
            data(SMALL), read_only(SMALL) if last else np.empty(SMALL), MPI.SUM
        ),
        "one node: Allreduce bytes receive buffer on one rank": lambda: one_node.Allreduce(
            data(SMALL), refused(SMALL), op=MPI.SUM
        ),
        "one node: Reduce read-only receive buffer at the root (others may return)": lambda: one_node.Reduce(
            data(SMALL), read_only(SMALL) if RANK == 0 else None, MPI.SUM, root=0
        ),
        "one node: Bcast bytes buffer on one receiver (root may return)": lambda: one_node.Bcast(
            data(SMALL) if RANK == 0 else refused(SMALL), root=0
        ),
        "one node: Allgather non-contiguous receive buffer on one rank": lambda: one_node.Allgather(
            data(SMALL), strided(SMALL * SIZE) if last else np.empty(SMALL * SIZE)
        ),
        "Bcast and Reduce with a numpy integer root on one rank (valid)": lambda: numpy_root(comm, LARGE),
        "Bcast and Reduce with a numpy integer root on one rank, small message (valid)": lambda: numpy_root(
            comm, SMALL
        ),
        "Allreduce with the (count, displ) form on one rank (valid)": lambda: mixed_forms(comm, LARGE),
        "Allreduce int64 values on one rank, float64 on the others (not compressible)": lambda: comm.Allreduce(
            np.arange(LARGE) if last else data(LARGE), np.empty(LARGE, np.int64 if last else np.float64), MPI.SUM
        ),
        "Bcast into int64 on one receiver (not compressible)": lambda: comm.Bcast(
            data(LARGE) if RANK == 0 else np.empty(LARGE, np.int64 if last else np.float64), root=0
        ),
        "Allreduce aliased send and receive buffers on one rank": lambda: aliased(comm, LARGE),
        "Allreduce aliased send and receive buffers on one rank, small message": lambda: aliased(comm, SMALL),
        "one node: Allreduce aliased send and receive buffers on one rank": lambda: aliased(one_node, SMALL),
        "Bcast root out of range on one rank": lambda: comm.Bcast(data(LARGE), root=SIZE if last else 0),
        "Ibcast root out of range on one rank": lambda: comm.Ibcast(data(LARGE), root=SIZE if last else 0).Wait(),
        "Bcast root out of range on one rank, small message (others may return)": lambda: comm.Bcast(
            data(SMALL), root=-1 if last else 0
        ),
        "Bcast root out of range on every rank but 0, small message (others may return)": lambda: comm.Bcast(
            data(SMALL), root=SIZE if RANK else 0
        ),
        "Bcast root out of range on every rank": lambda: comm.Bcast(data(LARGE), root=-1),
        "Reduce root out of range on one rank, small message (others may return)": lambda: comm.Reduce(
            data(SMALL), np.empty(SMALL), MPI.SUM, root=SIZE if last else 0
        ),
        "Gather root that is not an integer on one rank": lambda: comm.Gather(
            data(LARGE), np.empty(LARGE * SIZE) if RANK == 0 else None, root="0" if last else 0
        ),
        "MemoryError inside one rank's compressed Allreduce": lambda: out_of_memory(unpipelined),
        "MemoryError while one rank decodes a compressed Bcast": lambda: out_of_memory_decoding(unpipelined),
    }
    results, works = {}, {}
    for name, call in scenarios.items():
        WORLD.Barrier()
        results[name] = outcome(call)
        WORLD.Barrier()
        works[name] = still_works(comm) and still_works(one_node)
    everyone = WORLD.gather((results, works))
    if RANK == 0:
        report = {name: [r[0][name] for r in everyone] for name in scenarios}
        report["still works"] = {name: all(r[1][name] for r in everyone) for name in scenarios}
        print(json.dumps(report))


if __name__ == "__main__":
    main()
