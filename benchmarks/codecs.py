#!/usr/bin/env python3
"""errbound's codecs beside SZ3, ZFP and SPERR on every shared test field, in one run.

    python benchmarks/codecs.py                       # rel 1e-2,1e-3,1e-4, all fields, 1 thread
    python benchmarks/codecs.py --rel 1e-3 --json out.json
    python benchmarks/codecs.py --codecs sz --peers sz3 --data DIR --threads 2

For each field (``NAME_AxBxC.f32|f64`` in ../shared/data beside the repository, or ``--data``)
and each bound, every candidate gets the same absolute bound ``rel * (max - min)``; the table
shows ratio, PSNR, max error / bound, violations and compress/decompress MB/s (1e6 bytes of
uncompressed data per second, median of ``--repeat`` runs). Then one summary line per codec:
geometric-mean ratio over all (field, bound) cases, geometric mean and minimum of the ratio
relative to SZ3, and mean MB/s on the 3-D fields with the speed relative to SZ3 in the same run.

Measures and peer settings are those of ../shared/tools/peers (see errbound/measure.py).
Threads: everything runs on one thread; ``--threads N`` raises numba's count only (the peers
stay single-threaded), for measuring our multi-core speed.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from pathlib import Path

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
# the same list as errbound.cli.measure.THREAD_VARS, repeated: importing errbound loads numpy, whose
# OpenBLAS reads them once, before this script could set them
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLOSC_NTHREADS",
    "VECLIB_MAXIMUM_THREADS",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help=f"folder of fields (default {DEFAULT_DATA})")
    ap.add_argument("--rel", default="1e-2,1e-3,1e-4", help="relative bounds, comma separated")
    ap.add_argument("--codecs", default=None, help="our codecs, comma separated (default: every lossy one)")
    ap.add_argument(
        "--peers",
        default="sz3,zfp,sperr,sperr-wasm",
        help="peers among sz3,zfp,sperr,sperr-wasm (skipped when not installed), or 'none'",
    )
    ap.add_argument("--fields", default=None, help="only fields whose file name contains one of these (comma list)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per case; the median is reported")
    ap.add_argument("--min-time", type=float, default=0.05, help="a timed run loops until it lasts this long")
    ap.add_argument("--threads", type=int, default=1, help="NUMBA_NUM_THREADS for our codecs (default 1)")
    ap.add_argument("--json", type=Path, default=None, help="save every row and the run's settings here")
    args = ap.parse_args(argv)
    try:
        args.rel = [float(x) for x in args.rel.split(",")]
    except ValueError:
        ap.error(f"--rel: not a list of numbers: {args.rel!r}")
    if args.threads < 1 or args.repeat < 1:
        ap.error("--threads and --repeat must be >= 1")
    return args


def _names(text: str | None) -> list[str] | None:
    if text is None:
        return None
    return [] if text.strip().lower() in ("", "none") else [n.strip() for n in text.split(",") if n.strip()]


def summarize(rows: list[dict], ndims: dict[str, int], ref: str = "sz3") -> list[str]:
    """Summary lines: ratios over every case, relative to ``ref``, and speed on the 3-D fields."""
    from errbound.cli.measure import geomean

    ok = [r for r in rows if not r.get("error")]
    by_case = {(r["field"], r["eb"], r["codec"]): r for r in ok}
    labels = list(dict.fromkeys(r["codec"] for r in rows))
    head = (
        f"{'codec':14s} {'cases':>5s} {'viol':>5s} {'gm ratio':>9s} {'gm vs ' + ref:>10s} "
        f"{'min vs ' + ref:>10s}  {'(case)':34s} {'3D comp':>8s} {'3D dec':>8s} {'comp/' + ref:>9s} "
        f"{'dec/' + ref:>8s}"
    )
    lines = [head, "-" * len(head)]
    for label in labels:
        mine = [r for r in ok if r["codec"] == label]
        rel = [
            (r["ratio"] / by_case[(r["field"], r["eb"], ref)]["ratio"], r)
            for r in mine
            if (r["field"], r["eb"], ref) in by_case
        ]
        worst = min(rel, key=lambda t: t[0]) if rel else None
        case = f"{worst[1]['field'][:26]} {worst[1]['eb']:.0e}" if worst else "-"
        cube = [r for r in mine if ndims.get(r["field"]) == 3]
        paired = [(r, by_case[(r["field"], r["eb"], ref)]) for r in cube if (r["field"], r["eb"], ref) in by_case]

        def mean(values: list[float]) -> float:
            return sum(values) / len(values) if values else math.nan

        comp, dec = mean([r["comp_MBps"] for r in cube]), mean([r["decomp_MBps"] for r in cube])
        comp_rel = (
            mean([a["comp_MBps"] for a, _ in paired]) / mean([b["comp_MBps"] for _, b in paired])
            if paired
            else math.nan
        )
        dec_rel = (
            mean([a["decomp_MBps"] for a, _ in paired]) / mean([b["decomp_MBps"] for _, b in paired])
            if paired
            else math.nan
        )
        lines.append(
            f"{label:14s} {len(mine):5d} {sum(r['viol'] for r in mine):5d} {geomean([r['ratio'] for r in mine]):9.3f} "
            f"{geomean([t[0] for t in rel]):10.3f} {worst[0] if worst else math.nan:10.3f}  {case:34s} "
            f"{comp:8.1f} {dec:8.1f} {comp_rel:9.2f} {dec_rel:8.2f}"
        )
    lines.append(
        f"# gm = geometric mean over (field, bound) cases; 'vs {ref}' = ratio / {ref}'s ratio on the same "
        f"case; 3D comp/dec = mean MB/s on the 3-D fields; comp/{ref}, dec/{ref} = that mean / {ref}'s "
        "mean on the same cases"
    )
    return lines


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # numba and OpenMP read their thread counts once, when they load: pin them before errbound loads numba
    os.environ.update({name: "1" for name in _THREAD_VARS})
    os.environ["NUMBA_NUM_THREADS"] = str(args.threads)

    import numpy as np

    from errbound.bounds import finite_range
    from errbound.cli import measure
    from errbound.cli.common import CLIError, load_array
    from errbound.integrations.progress import Progress

    if not args.data.is_dir():
        print(f"# no data folder {args.data}: nothing to measure (pass --data DIR)")
        return 0
    files = sorted(p for p in args.data.iterdir() if p.suffix in (".f32", ".f64"))
    if args.fields:
        files = [p for p in files if any(s in p.name for s in args.fields.split(","))]
    cands = measure.candidates(_names(args.codecs), _names(args.peers))
    load0 = os.getloadavg()
    print(
        f"# errbound codecs benchmark: {len(files)} fields in {args.data}; rel bounds {args.rel}; "
        f"repeat {args.repeat} (median, each run >= {args.min_time:g} s)"
    )
    print(
        f"# threads: numba {args.threads}, everything else 1 (SZ3 openmp=False); {platform.machine()} "
        f"{os.cpu_count()} cpus, python {platform.python_version()}, numpy {np.__version__}; "
        f"load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
    )
    print("# " + ", ".join(f"{label} {v or '?'}" for label, v in measure.versions(cands).items()))
    rows, skipped, ndims = [], {}, {}
    with Progress(len(files) * len(cands) * len(args.rel), "codecs") as bar:
        for path in files:
            try:
                data = np.ascontiguousarray(load_array(path))
            except (CLIError, OSError, ValueError) as exc:
                print(f"\n## {path.name}: skipped ({exc})")
                bar.update(len(cands) * len(args.rel))
                continue
            name = path.name.rsplit(".", 1)[0]
            ndims[name] = data.ndim
            field_rows, field_skipped = measure.run_cases(
                cands, data, args.rel, "rel", args.repeat, args.min_time, field=name, bar=bar
            )
            rows += field_rows
            skipped.update({f"{name}/{k}": v for k, v in field_skipped.items()})
            print(f"\n## {name}: {data.dtype} {data.shape}, range {finite_range(data):.6g}")
            print(measure.format_table(field_rows))
            for label, why in field_skipped.items():
                print(f"#   {label}: not run: {why}")
            sys.stdout.flush()
    load1 = os.getloadavg()
    print(
        f"\n# summary (load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}; "
        f"wall-clock MB/s are only trustworthy well below {os.cpu_count()})"
    )
    print("\n".join(summarize(rows, ndims)))
    for row in rows:
        if row.get("error"):
            print(f"# ERROR {row['field']} {row['codec']} {row['eb']:g}: {row['error']}")
    if args.json:
        meta = {
            "data": str(args.data),
            "rel": args.rel,
            "repeat": args.repeat,
            "min_time": args.min_time,
            "threads": args.threads,
            "load_avg_start": load0,
            "load_avg_end": load1,
            "versions": measure.versions(cands),
            "skipped": skipped,
            "ndims": ndims,
            "python": platform.python_version(),
            "numpy": np.__version__,
        }
        args.json.write_text(json.dumps(measure.jsonable({"meta": meta, "rows": rows}), indent=1, default=str))
        print(f"# json: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
