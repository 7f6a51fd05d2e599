"""Run mpi4py's own collective tests with their communicators replaced by CompressedComm.

Usage: mpiexec -n N python mpi4py_suite.py TESTDIR [--abs X] [MODULE ...]

TESTDIR is the ``test/`` folder of mpi4py's source distribution (downloaded at test time,
never copied into this repository). The test classes read ``MPI.COMM_WORLD`` and
``MPI.COMM_SELF`` when their module is imported, so both are replaced before the import.
``min_bytes=0`` sends every float32/float64 message of theirs down a compressed path.
Their float data are small integers and they compare them exactly; a reduction grid finer
than 1 has the step 1/M (M an integer), so those integers are grid points and come back exact.
Rank 0 prints one JSON line with the counts.
"""

from __future__ import annotations

import argparse
import json
import sys
import unittest

from mpi4py import MPI

from mpi_collectives import CompressedComm


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("testdir")
    parser.add_argument("modules", nargs="*", default=["test_cco_buf", "test_cco_nb_buf"])
    parser.add_argument("--abs", type=float, default=1e-3)
    args = parser.parse_args()
    sys.path.insert(0, args.testdir)

    world = CompressedComm(MPI.COMM_WORLD, abs=args.abs, min_bytes=0, adapt=False)
    self_comm = CompressedComm(MPI.COMM_SELF, abs=args.abs, min_bytes=0, adapt=False)
    MPI.COMM_WORLD, MPI.COMM_SELF = world, self_comm

    # like mpi4py's own runner, test host arrays only: its GPU backends (numba.cuda, cupy)
    # need a CUDA driver, and errbound imports numba, so the runner's trick of hiding numba
    # cannot be used here
    import arrayimpl

    arrayimpl.ArrayBackends[:] = [b for b in arrayimpl.ArrayBackends if b.backend not in ("numba", "cupy")]
    backends = [b.backend for b in arrayimpl.ArrayBackends]

    suite = unittest.TestSuite()
    loader = unittest.TestLoader()
    for name in args.modules:
        suite.addTests(loader.loadTestsFromName(name))
    result = unittest.TextTestRunner(stream=sys.stderr, verbosity=1).run(suite)
    summary = {
        "rank": world.Get_rank(),
        "run": result.testsRun,
        "failures": len(result.failures),
        "errors": len(result.errors),
        "skipped": len(result.skipped),
        "problems": [str(t) for t, _ in result.failures + result.errors],
        "backends": backends,
        "compressed_calls": world.stats.calls,
        "sent_bytes": world.stats.sent,
    }
    everyone = world.gather(summary)
    if world.Get_rank() == 0:
        print(json.dumps(everyone))
    return 0 if result.wasSuccessful() else 1


if __name__ == "__main__":
    sys.exit(main())
