"""Run an unmodified mpi4py program with ``MPI.COMM_WORLD`` replaced by a CompressedComm.

    mpiexec -n 4 python -m mpi_collectives --rel 1e-3 app.py ARGS...

The program sees a CompressedComm wherever it reads ``MPI.COMM_WORLD`` (``from mpi4py
import MPI`` or ``from mpi4py.MPI import COMM_WORLD``, both after the replacement).
As with ``python -m mpi4py``, an uncaught exception on any rank prints its traceback and
aborts the whole job instead of leaving the other ranks waiting.

Mistakes in the command itself (a bad option or value, a program that does not exist,
settings the ranks disagree on) are reported once, by rank 0, as one line, and every rank
exits with status 2; ``--help`` prints once and exits 0.
"""

from __future__ import annotations

import argparse
import math
import os
import runpy
import sys
import time
import traceback

from mpi4py import MPI

from .comm import DEFAULT_MIN_BYTES, CompressedComm
from .errors import CollectiveError
from .settings import ALGORITHMS, BCAST_ALGORITHMS, KEYWORDS

PROG = "python -m mpi_collectives"
USAGE_ERROR = 2


class _Stop(Exception):
    """Leave main() with this exit status (the message, if any, is already printed)."""

    def __init__(self, status: int):
        super().__init__(status)
        self.status = status


class _Parser(argparse.ArgumentParser):
    """argparse, but every rank parses and only rank 0 speaks."""

    def __init__(self, rank: int, **kwargs):
        super().__init__(**kwargs)
        self.rank = rank

    def _print_message(self, message: str, file=None) -> None:
        if self.rank == 0 and message:
            super()._print_message(message, file)

    def exit(self, status: int = 0, message: str | None = None):
        if message:
            self._print_message(message, sys.stderr)
        raise _Stop(status)

    def error(self, message: str):
        self.exit(USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _bound(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"the bound must be a positive finite number, got {text}")
    return value


def _bytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of bytes") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def parse_args(argv: list[str], rank: int = 0) -> argparse.Namespace:
    parser = _Parser(
        rank,
        prog=PROG,
        description="Run an mpi4py program with compressed, error-bounded collectives on COMM_WORLD.",
    )
    bound = parser.add_mutually_exclusive_group(required=True)
    bound.add_argument("--abs", type=_bound, help="absolute error bound on every collective's result")
    bound.add_argument("--rel", type=_bound, help="error bound relative to the global value range")
    parser.add_argument("--codec", default="fz", help="errbound codec for Bcast/Gather/... blocks (default fz)")
    parser.add_argument(
        "--min-bytes",
        type=_bytes,
        default=DEFAULT_MIN_BYTES,
        help=f"compress messages of at least this many bytes (default {DEFAULT_MIN_BYTES})",
    )
    parser.add_argument("--consistent", action="store_true", help="Bcast roots keep what the receivers get")
    parser.add_argument(
        "--algorithm",
        choices=ALGORITHMS,
        default="auto",
        help="Allreduce/Reduce algorithm between nodes (default auto: the cost model's choice)",
    )
    parser.add_argument(
        "--segment-bytes",
        type=_bytes,
        default=0,
        help="chunk size of the pipelined algorithms (default 0: theirs); changes speed, never results",
    )
    parser.add_argument("--bcast-algorithm", choices=BCAST_ALGORITHMS, default="auto", help="Bcast tree (default auto)")
    parser.add_argument(
        "--no-adapt",
        dest="adapt",
        action="store_false",
        help="always compress, on one node too (default: the path the cost model and measured times say is faster; "
        "plain MPI where all ranks share one node)",
    )
    parser.add_argument("--stats", action="store_true", help="print each rank's compressed traffic at exit")
    parser.add_argument("program", help="the Python script to run")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments")
    return parser.parse_args(argv)


def _say(rank: int, message: str) -> None:
    if rank == 0:
        print(f"{PROG}: error: {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv, rank)
    except _Stop as stop:
        return stop.status
    # the program must exist on every rank; say which ranks lack it
    readable = os.path.isfile(args.program) and os.access(args.program, os.R_OK)
    missing = [r for r, ok in enumerate(world.allgather(readable)) if not ok]
    if missing:
        where = "" if len(missing) == world.Get_size() else f" on rank(s) {missing}"
        _say(rank, f"cannot open the program {args.program!r}{where}: no such readable file")
        return USAGE_ERROR
    try:
        comm = CompressedComm(world, **{name: getattr(args, name) for name in KEYWORDS})
    except CollectiveError as exc:  # raised alike on every rank
        _say(rank, str(exc))
        return USAGE_ERROR
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
        time.sleep(0.3)  # let mpiexec forward the traceback: it stops forwarding once a rank aborts
        world.Abort(1)
    if args.stats:
        print(f"[mpi_collectives rank {world.Get_rank()}] {comm.stats.as_dict()}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
