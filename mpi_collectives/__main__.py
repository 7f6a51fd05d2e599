"""Run an unmodified mpi4py program with ``MPI.COMM_WORLD`` replaced by a CompressedComm.

    mpiexec -n 4 python -m mpi_collectives --rel 1e-3 app.py ARGS...

The program sees a CompressedComm wherever it reads ``MPI.COMM_WORLD`` (``from mpi4py
import MPI`` or ``from mpi4py.MPI import COMM_WORLD``, both after the replacement).
As with ``python -m mpi4py``, an uncaught exception on any rank prints its traceback and
aborts the whole job instead of leaving the other ranks waiting.
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import traceback

from mpi4py import MPI

from .comm import DEFAULT_MIN_BYTES, CompressedComm


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m mpi_collectives",
        description="Run an mpi4py program with compressed, error-bounded collectives on COMM_WORLD.",
    )
    bound = parser.add_mutually_exclusive_group(required=True)
    bound.add_argument("--abs", type=float, help="absolute error bound on every collective's result")
    bound.add_argument("--rel", type=float, help="error bound relative to the global value range")
    parser.add_argument("--codec", default="fz", help="errbound codec for Bcast/Gather/... blocks (default fz)")
    parser.add_argument(
        "--min-bytes",
        type=int,
        default=DEFAULT_MIN_BYTES,
        help=f"compress messages of at least this many bytes (default {DEFAULT_MIN_BYTES})",
    )
    parser.add_argument("--consistent", action="store_true", help="Bcast roots keep what the receivers get")
    parser.add_argument(
        "--no-adapt",
        dest="adapt",
        action="store_false",
        help="always compress (default: time compressed against plain MPI per collective and size and keep the faster)",
    )
    parser.add_argument("--stats", action="store_true", help="print each rank's compressed traffic at exit")
    parser.add_argument("program", help="the Python script to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    world = MPI.COMM_WORLD
    comm = CompressedComm(
        world,
        abs=args.abs,
        rel=args.rel,
        codec=args.codec,
        min_bytes=args.min_bytes,
        consistent=args.consistent,
        adapt=args.adapt,
    )
    MPI.COMM_WORLD = comm
    sys.argv = [args.program, *args.args]
    sys.path[0] = os.path.dirname(os.path.abspath(args.program))  # as `python app.py` would
    try:
        runpy.run_path(args.program, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            raise
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        world.Abort(1)
    if args.stats:
        print(f"[mpi_collectives rank {world.Get_rank()}] {comm.stats.as_dict()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
