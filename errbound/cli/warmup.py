"""``errbound warmup``: compile the kernels into the cache ahead of time."""

from __future__ import annotations

import argparse
import time

from ..codec import codec_names
from ..compile_helper import usable_cores
from ..compiling import cache_location
from ..integrations.progress import Progress
from ..precompile import DTYPES, NDIMS, cases, warmup
from .common import names_arg, positive_int


def add_parser(sub) -> None:
    lossy = [c for c in codec_names() if c != "raw"]
    p = sub.add_parser(
        "warmup",
        help="compile the kernels ahead of time (job scripts, container builds, CI)",
        description="Compile errbound's kernels into the numba cache now, so that later processes load them "
        "instead of compiling on their first call. Run it once per machine (or container image, or user on a "
        "read-only install) before the jobs that use errbound.",
    )
    p.add_argument(
        "--codec", type=names_arg(lossy), metavar="LIST", default=None, help=f"codecs (default all: {','.join(lossy)})"
    )
    p.add_argument(
        "--dtype",
        type=names_arg(list(DTYPES)),
        metavar="LIST",
        default=list(DTYPES),
        help="float32, float64 or both (default both)",
    )
    p.add_argument(
        "--ndim",
        type=names_arg([str(n) for n in NDIMS]),
        metavar="LIST",
        default=[str(n) for n in NDIMS],
        help="numbers of dimensions (default 1,2,3,4)",
    )
    p.add_argument(
        "--jobs",
        type=positive_int,
        default=None,
        metavar="N",
        help=f"processes compiling at once (default: the usable cores, at most {MAX_JOBS}); each kernel "
        "still compiles once",
    )
    p.set_defaults(run=cmd_warmup)


MAX_JOBS = 8  # each process holds numba and LLVM (~250 MB while compiling)


def default_jobs() -> int:
    return max(1, min(usable_cores(), MAX_JOBS))


def cmd_warmup(args: argparse.Namespace) -> int:
    ndims = [int(n) for n in args.ndim]
    todo = cases(args.codec, args.dtype, ndims)
    jobs = default_jobs() if args.jobs is None else args.jobs
    jobs = min(jobs, len(todo))
    print(
        f"compiling {len(todo)} codec/dtype/dimension cases (kernel cache: {cache_location()})"
        + (f" ({jobs} processes)" if jobs > 1 else "")
    )
    t0 = time.perf_counter()
    with Progress(len(todo), "warmup", force=None) as bar:
        done = warmup(
            args.codec,
            args.dtype,
            ndims,
            on_case=lambda c: bar.update(1, note=f"{c.codec} {c.dtype} {c.ndim}-D {c.seconds:.1f} s"),
            jobs=jobs,
        )
    slowest = max(done, key=lambda c: c.seconds)
    print(
        f"done in {time.perf_counter() - t0:.1f} s (slowest: {slowest.codec} {slowest.dtype} {slowest.ndim}-D, "
        f"{slowest.seconds:.1f} s); later processes load these kernels from the cache"
    )
    return 0
