"""``errbound bench``: our codecs beside the peers on one array, in one run."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

from ..bounds import finite_range
from ..integrations.progress import Progress
from . import measure
from .common import (
    CLIError,
    add_input_format,
    atomic_write,
    bound_list,
    check_not_input,
    load_array,
    mb,
    names_arg,
    positive_int,
    seconds_arg,
)


def add_parser(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure our codecs beside SZ3, ZFP and SPERR",
        description="Ratio, PSNR, max error / bound, violations and single-thread speed of "
        "errbound's codecs beside the peers, on the same absolute bounds.",
    )
    p.add_argument("input", metavar="IN", help=".npy, or raw little-endian C-order .f32/.f64")
    add_input_format(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--rel", type=bound_list, metavar="LIST", help="relative bounds (default 1e-2,1e-3,1e-4)")
    group.add_argument("--abs", type=bound_list, metavar="LIST", help="absolute bounds")
    lossy = measure.lossy_codecs()
    p.add_argument(
        "--codecs",
        type=names_arg(lossy, allow_none=True),
        metavar="LIST",
        default=None,
        help=f"our codecs (default: every lossy one: {','.join(lossy)})",
    )
    p.add_argument(
        "--peers",
        type=names_arg(list(measure.PEER_NAMES), allow_none=True),
        metavar="LIST",
        default=list(measure.PEER_NAMES),
        help=f"peers among {','.join(measure.PEER_NAMES)}, or none (default all; those not installed are listed as NOT RUN)",
    )
    p.add_argument(
        "--repeat", type=positive_int, default=3, metavar="N", help="timed runs; the median is shown (default 3)"
    )
    p.add_argument(
        "--min-time", type=seconds_arg, default=0.05, metavar="S", help="each timed run loops until this many seconds"
    )
    p.add_argument("--threads", type=positive_int, default=1, metavar="N", help="numba/OpenMP threads (default 1)")
    p.add_argument("--json", metavar="FILE", help="also save every row as JSON")
    p.add_argument(
        "--plot",
        metavar="PNG",
        help="also draw rate-distortion curves (bits/value against PSNR and max error / range), peers beside ours",
    )
    p.set_defaults(run=cmd_bench)


def cmd_bench(args: argparse.Namespace) -> int:
    threads = measure.pin_threads(args.threads)
    inp = Path(args.input)
    for out in (args.json, args.plot):
        if out:
            check_not_input(inp, Path(out))
    data = np.ascontiguousarray(load_array(inp, args.shape, args.dtype))
    if data.dtype.kind != "f" or data.dtype.itemsize not in (4, 8):
        raise CLIError(f"{inp}: holds {data.dtype} values; errbound compresses float32/float64 arrays")
    mode, bounds = ("abs", args.abs) if args.abs is not None else ("rel", args.rel or [1e-2, 1e-3, 1e-4])
    cands = measure.candidates(args.codecs, args.peers)
    load0 = os.getloadavg()
    print(
        f"# {inp.name}: {data.dtype} {data.shape}, {mb(data.nbytes)}, range {finite_range(data):.6g}; "
        f"{mode} bounds {', '.join(f'{b:g}' for b in bounds)}; repeat {args.repeat}, median; "
        f"{threads} thread(s); load average {load0[0]:.2f}"
    )
    with Progress(len(cands) * len(bounds), "bench") as bar:
        rows, skipped = measure.run_cases(
            cands, data, bounds, mode, args.repeat, args.min_time, field=inp.name, bar=bar
        )
    print(measure.format_table(rows))
    print(
        f"# MB/s = 1e6 bytes of uncompressed data per second (wall; cpuMB/s from CPU time); "
        f"viol = values with |x-x'| > eb_abs; load average at end {os.getloadavg()[0]:.2f}"
    )
    for label, version in measure.versions(cands).items():
        note = f"NOT RUN: {skipped[label]}" if label in skipped else ""
        print(f"#   {label:16s} {version or '-':10s} {note}".rstrip())
    if args.json:
        doc = measure.jsonable(
            {
                "file": str(inp),
                "shape": list(data.shape),
                "dtype": str(data.dtype),
                "mode": mode,
                "bounds": bounds,
                "threads": threads,
                "skipped": skipped,
                "rows": rows,
            }
        )
        atomic_write(Path(args.json), lambda f: f.write(json.dumps(doc, indent=1, default=str).encode()))
    if args.plot:
        from . import plots

        title = f"{inp.name}: {data.dtype} {'x'.join(map(str, data.shape))}, {mode} bounds"
        print(f"# rate-distortion curves: {plots.rate_distortion(rows, finite_range(data), Path(args.plot), title)}")
    failed = sorted({r["codec"] for r in rows if r.get("error") and r["kind"] == "ours"})
    if failed:
        print(f"errbound: error: {', '.join(failed)} failed on {inp} (see the table)", file=sys.stderr)
    return 1 if failed else 0
