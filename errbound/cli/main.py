"""The ``errbound`` command: compress, decompress, inspect, benchmark and tune from the shell.

    errbound compress field_100x500x500.f32 -o field.eb --rel 1e-3
    errbound decompress field.eb -o field.npy
    errbound info field.eb
    errbound bench field_100x500x500.f32 --rel 1e-2,1e-3 --peers sz3,zfp,sperr

Exit status: 0 on success, 2 for bad arguments (argparse's message), 1 for everything else
(missing files, damaged streams, bounds errbound rejects), reported as ``errbound: error: ...``.
Each subcommand lives in a module of its own; ``common`` holds what they share.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from .. import __version__
from ..codec import codec_names
from ..errors import ErrboundError
from . import arrays, bench, h5, tune, warmup
from .common import CLIError


def _terminated(signum, frame):
    raise SystemExit(128 + signum)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``errbound`` command."""
    codecs = codec_names()
    parser = argparse.ArgumentParser(prog="errbound", description="Error-bounded lossy compression of float arrays.")
    parser.add_argument("--version", action="version", version=f"errbound {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    arrays.add_parsers(sub, codecs)
    bench.add_parser(sub)
    h5.add_parser(sub, codecs)
    tune.add_parser(sub)
    warmup.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``errbound`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    # SIGTERM (a job scheduler's kill, timeout) unwinds like Ctrl-C, so that temporary outputs
    # are removed; SIGKILL cannot be caught: the next write beside the output cleans up
    signal.signal(signal.SIGTERM, _terminated)
    try:
        return args.run(args)
    except (CLIError, ErrboundError) as exc:
        msg = str(exc)
    except BrokenPipeError:
        # the reader of stdout stopped (`errbound info x.eb | head`): quiet, as other tools are;
        # stdout is pointed at /dev/null so that Python's flush at exit does not fail again
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by the closed pipe
    except FileNotFoundError as exc:
        msg = f"{exc.filename}: no such file or directory"
    except OSError as exc:
        msg = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    except MemoryError:
        msg = "not enough memory for this input"
    except KeyboardInterrupt:
        return 130
    print(f"errbound: error: {msg}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
