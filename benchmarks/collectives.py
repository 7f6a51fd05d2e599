#!/usr/bin/env python3
"""Plain MPI collectives against CompressedComm, on the same real data, in the same run.

One command per layout prints its table (as root, on the rate-limited netbed):

    cd ../shared/tools/netbed && ./up.sh 1gbit 0 4
    export NETBED_VENV=/path/to/venv PYTHONPATH=/path/to/errbound
    B=/path/to/errbound/benchmarks/collectives.py
    NETBED_NODES=2 ./run.sh 4 $B --noise      # 2 nodes x 2 ranks (MPICH's clique emulation)
    ./run.sh 4 $B --noise                     # 4 nodes x 1 rank
    ./run.sh 2 $B                             # 2 nodes x 1 rank
    ./down.sh

and without the bed, on one node (every collective's first call and its median, default
settings, against plain MPI's first call on a fresh communicator):

    mpiexec -n 2 python benchmarks/collectives.py --first-call
    mpiexec -n 4 python benchmarks/collectives.py --first-call

and with no MPI job at all, the cost model's extrapolation to clusters from this machine's
one-core speeds: ``python benchmarks/collectives.py --predict``.

Per operation (``--ops``: Allreduce SUM, Bcast, Allgather, Reduce_scatter_block SUM, Reduce
SUM, Gather, Scatter, Alltoall) and message size (``--sizes`` in MiB) the table shows the
median time of plain ``comm.Op`` and of ``CompressedComm.Op`` (each rep: Barrier, then the
op; a rep's time is the slowest rank's; they alternate rep by rep, taking turns to go
first, so that load from elsewhere and the link's state hit both alike); ``cpu ms``, the CPU
time of CompressedComm's busiest rank during the call (its compute plus MPI's polling); the
speed-up; ``zip``, how many timed reps took the compressed path (by default the cost model
and measured times choose; ``--no-adapt`` forces it); with ``--noise``, ``a/a``: plain MPI
on the communicator against plain MPI on a duplicate of it, in the same interleaving (the
bed's noise: a row is slower than plain MPI beyond the noise only where its speed-up is
below the spread of a/a over the table); and, from one more call forced onto the compressed
path: the compression ratio (float bytes the same messages would have taken / bytes sent,
all ranks), max |result - exact| / bound over all ranks (exact = the float64 sum or the
sender's values; <= 1 by contract) and whether the ranks that must agree hold the same
bytes ('-' where one rank holds the result). On the bed, the cost model's predictions
(mpi_collectives.costmodel, calibrated on one core at the start) close each row. The size
is the vector every op moves: the Allreduce/Reduce/Bcast buffer, the Allgather and Gather
result, the Scatter root's buffer, the Reduce_scatter_block input, each rank's Alltoall
buffer; the blocks of the last five are size / ranks.

Payloads (``--payload``; every rank builds every rank's data itself, so the exact answer
needs no communication):

* ``fields``: real fields from ../shared/data (``--fields``, default the CCSM monthly surface
  temperature, 100 x 64 x 128); rank r holds field r mod k, rolled along its first axis so
  that it starts at its own slab (rank r of N: month 100 r / N), tiled along that axis to the
  message size. Tile i is flipped by the bits of i and scaled by 1 + 0.003 i: exact copies
  would let zstd find the repeats (measured: 1027x instead of 9.8x on the CAM wind), while
  flipped and scaled tiles compress like the single field (9.5x vs 9.8x);
* ``heat``: the state of examples/heat_mpi.py: each rank's heating field (its own moving
  sources, one time step per tile) for the reductions and Allgather, the root's ambient
  temperature for Bcast.

Messages are whole planes (or rows) of the payload's shape, so a size may be a little under
its nominal value; the ``MiB`` column shows the real one.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
from pathlib import Path

import numpy as np
from collectives_cases import DEFAULT_DATA, DEFAULT_FIELDS, OPS, Case, Payloads, first_calls, time_series
from collectives_model import calibrate, cluster_table, link_rate, predict, quiet_wait
from mpi4py import MPI

from mpi_collectives import CompressedComm

LARGE_MIB = 128  # rows this large run at most 3 reps: a 256 MiB plain Allreduce takes seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default=None, help="message sizes in MiB, comma separated")
    ap.add_argument("--ops", default=None, help=f"subset of {','.join(OPS)}")
    ap.add_argument("--payload", default="fields", choices=["fields", "heat"])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder of the shared fields")
    ap.add_argument(
        "--fields",
        default=DEFAULT_FIELDS,
        help="float32 fields (file name prefixes, comma separated); rank r takes field r mod k",
    )
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--rel", type=float, default=None, help="relative bound (default 1e-3 unless --abs)")
    ap.add_argument("--abs", type=float, default=None, help="absolute bound")
    ap.add_argument("--codec", default="fz")
    ap.add_argument("--min-bytes", type=int, default=None, help="CompressedComm min_bytes (default: its own)")
    ap.add_argument("--algorithm", default="auto", help="CompressedComm algorithm")
    ap.add_argument("--segment-bytes", type=int, default=None, help="CompressedComm segment_bytes")
    ap.add_argument("--bcast-algorithm", default="auto", help="CompressedComm bcast_algorithm")
    ap.add_argument(
        "--no-adapt",
        dest="adapt",
        action="store_false",
        help="always take the compressed path (default: adapt=True, the faster of the two)",
    )
    ap.add_argument("--root", type=int, default=0, help="root of the rooted collectives")
    ap.add_argument("--reps", type=int, default=5, help=f"timed reps per row (at most 3 from {LARGE_MIB} MiB)")
    ap.add_argument("--reps-small", type=int, default=15, help="timed reps for rows up to 4 MiB (noisier)")
    ap.add_argument("--warmup", type=int, default=4, help="untimed reps before the timed ones")
    ap.add_argument("--noise", action="store_true", help="also time plain MPI on a duplicate (the a/a column)")
    ap.add_argument(
        "--first-call",
        action="store_true",
        help="time every collective's first call and median on fresh communicators (default settings)",
    )
    ap.add_argument("--predict", action="store_true", help="print the cost model's extrapolation to clusters")
    ap.add_argument("--json", type=Path, default=None, help="write the rows and the run's settings here")
    ap.add_argument("--csv", type=Path, default=None, help="write the rows here")
    ap.add_argument(
        "--no-model",
        dest="model",
        action="store_false",
        help="skip the cost model's predictions (calibration takes ~2 s)",
    )
    args = ap.parse_args(argv)
    if args.rel is None and args.abs is None:
        args.rel = 1e-3
    default_sizes = "1,4,16,64" if args.first_call else "0.25,0.5,1,2,4,8,16,32,64"
    args.sizes = [float(s) for s in (args.sizes or default_sizes).split(",") if s.strip()]
    args.ops = [o.strip() for o in (args.ops or ",".join(OPS)).split(",") if o.strip()]
    unknown = set(args.ops) - set(OPS)
    if unknown:
        ap.error(f"unknown ops {sorted(unknown)}")
    return args


def comm_settings(args: argparse.Namespace) -> dict:
    settings = {
        "rel": args.rel,
        "abs": args.abs,
        "codec": args.codec,
        "algorithm": args.algorithm,
        "bcast_algorithm": args.bcast_algorithm,
        "adapt": args.adapt,
    }
    if args.min_bytes is not None:
        settings["min_bytes"] = args.min_bytes
    if args.segment_bytes is not None:
        settings["segment_bytes"] = args.segment_bytes
    return settings


HEADER = (
    f"{'op':<22s}{'MiB':>8s}{'mpi ms':>9s}{'ours ms':>9s}{'cpu ms':>8s}{'speedup':>8s}"
    f"{'ratio':>7s}{'err/bnd':>8s}{'same':>5s}{'zip':>7s}{'a/a':>6s}{'model mpi/ours':>16s}"
)


def format_row(row: dict) -> str:
    same = {True: "yes", False: "NO", None: "-"}[row["identical"]]
    noise = f"{row['a_a']:>6.2f}" if "a_a" in row else f"{'':>6s}"
    return (
        f"{row['op']:<22s}{row['mib']:>8.3g}{row['mpi_ms']:>9.1f}{row['ours_ms']:>9.1f}"
        f"{row['ours_cpu_ms']:>8.1f}{row['speedup']:>8.2f}{row['ratio']:>7.2f}{row['err_over_bound']:>8.4f}"
        f"{same:>5s}{row['compressed_reps']:>4d}/{row['reps']:<2d}{noise}"
        + (f"{row['model_mpi_ms']:>8.1f}/{row['model_ours_ms']:<7.1f}" if "model_ours_ms" in row else "")
    )


def layout_of(world: MPI.Intracomm, settings: dict) -> tuple[int, int, str]:
    probe = CompressedComm(world, **settings)
    nodes, per_node, text = probe.nodes.nodes, probe.nodes.ranks_per_node, probe.nodes.describe()
    probe.Free()
    return nodes, per_node, text


def table(args: argparse.Namespace, world: MPI.Intracomm, payloads: Payloads, settings: dict) -> list[dict]:
    rank, n = world.Get_rank(), world.Get_size()
    load_start = os.getloadavg()
    rate = link_rate()
    nodes, per_node, described = layout_of(world, settings)
    speeds = calibrate(payloads, n, settings) if args.model and rate and rank == 0 else None
    quiet_wait(world)  # the others must not spin in MPI while rank 0 times one core
    speeds = world.bcast(speeds)  # rank 0's, so every rank prints the same model
    if rank == 0:
        bound = f"abs={args.abs:g}" if args.abs is not None else f"rel={args.rel:g}"
        print(
            f"# {described}; link {os.environ.get('NETBED_RATE', 'unshaped (no netbed)')}, payload {args.payload} "
            f"{args.dtype}, {bound}, codec {args.codec}, adapt {args.adapt}, load average {load_start[0]:.2f}",
            flush=True,
        )
        if speeds is not None:
            print(
                "# one core, MB/s of floats: " + ", ".join(f"{k} {v / 1e6:.0f}" for k, v in speeds.items()), flush=True
            )
        print(HEADER, flush=True)
    rows = []
    for mib in args.sizes:
        reps = min(args.reps, 3) if mib >= LARGE_MIB else args.reps_small if mib <= 4 else args.reps
        for op in args.ops:
            case = Case(op, int(mib * 2**20), world, payloads, settings, args.root)
            series = time_series(case, reps, args.warmup, args.noise)
            err, identical, ratio = case.check()
            mpi_ms, ours_ms = 1e3 * statistics.median(series["plain"]), 1e3 * statistics.median(series["ours"])
            row = {
                "op": op,
                "ranks": n,
                "nodes": nodes,
                "per_node": per_node,
                "mib": case.nbytes / 2**20,
                "bytes": case.nbytes,
                "mpi_ms": mpi_ms,
                "ours_ms": ours_ms,
                "ours_cpu_ms": 1e3 * statistics.median(series["cpu"]),
                "speedup": mpi_ms / ours_ms,
                "ratio": ratio,
                "err_over_bound": err,
                "identical": identical,
                "reps": reps,
                "compressed_reps": series["compressed"],
                "mpi_times": series["plain"],
                "ours_times": series["ours"],
                "load": os.getloadavg()[0],
            }
            if args.noise:
                row["again_times"] = series["again"]
                row["a_a"] = mpi_ms / (1e3 * statistics.median(series["again"]))
            if speeds is not None:
                model_plain, model_ours = predict(
                    op, case.nbytes, nodes, per_node, ratio, speeds, rate, args.segment_bytes or 0
                )
                row.update(model_mpi_ms=1e3 * model_plain, model_ours_ms=1e3 * model_ours)
            rows.append(row)
            case.free()
            del case
            if rank == 0:
                print(format_row(row), flush=True)
    load_end = os.getloadavg()
    if rank == 0:
        spread = [r["a_a"] for r in rows if "a_a" in r]
        if spread:
            print(f"# noise: plain MPI against itself (a/a) {min(spread):.2f}-{max(spread):.2f}", flush=True)
        print(f"# load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end", flush=True)
    return rows


def first_call_table(args: argparse.Namespace, world: MPI.Intracomm, payloads: Payloads, settings: dict) -> list:
    rank = world.Get_rank()
    load = os.getloadavg()[0]
    # MPI's first use of every connection is paid before anything is timed
    world.Barrier()
    world.allreduce(0.0)
    world.Allreduce(MPI.IN_PLACE, np.zeros(1 << 18), MPI.SUM)
    _, _, described = layout_of(world, settings)
    if rank == 0:
        print(f"# {described}; default settings ({settings}); load average {load:.2f}", flush=True)
        print(
            f"{'op':<22s}{'MiB':>6s}{'mpi 1st ms':>11s}{'ours 1st ms':>12s}{'1st ratio':>10s}"
            f"{'mpi med ms':>11s}{'ours med ms':>12s}{'med ratio':>10s}{'zip':>5s}",
            flush=True,
        )
    rows = []
    for mib in args.sizes:
        for op in args.ops:
            row = first_calls(op, int(mib * 2**20), world, payloads, settings, args.reps)
            rows.append(row)
            if rank == 0:
                print(
                    f"{op:<22s}{row['bytes'] / 2**20:>6.3g}{1e3 * row['plain_first']:>11.2f}"
                    f"{1e3 * row['ours_first']:>12.2f}{row['ours_first'] / row['plain_first']:>10.2f}"
                    f"{1e3 * row['plain_median']:>11.2f}{1e3 * row['ours_median']:>12.2f}"
                    f"{row['ours_median'] / row['plain_median']:>10.2f}{row['compressed_calls']:>5d}",
                    flush=True,
                )
    if rank == 0:
        worst = max(max(r["ours_first"] / r["plain_first"], r["ours_median"] / r["plain_median"]) for r in rows)
        print(f"# worst ours/plain: {worst:.2f}; load average {os.getloadavg()[0]:.2f} at the end", flush=True)
    return rows


def prediction_table(args: argparse.Namespace, payloads: Payloads, settings: dict) -> None:
    """The cost model at cluster scale from this machine's one-core speeds."""
    speeds = calibrate(payloads, 64, settings)
    ratios = {"reduce": 6.6, "move": 9.6}  # measured on the bed, rel 1e-3, the CCSM field
    nbytes = 64 << 20
    print("# one core, MB/s of floats: " + ", ".join(f"{k} {v / 1e6:.0f}" for k, v in speeds.items()))
    print(f"# 64 MiB per rank, ratios {ratios}, a core per rank, node memory 100 GB/s, 2 us per message")
    print(
        "| link | nodes | ranks/node | Allreduce plain ms | ours ms | speed-up | Bcast plain ms | ours ms | speed-up |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for row in cluster_table(speeds, ratios, nbytes, 100e9, 2e-6):
        (ap, ao), (bp, bo) = row["allreduce"], row["bcast"]
        print(
            f"| {row['gbit']} Gbit/s | {row['nodes']} | {row['per_node']} | {1e3 * ap:.0f} | {1e3 * ao:.0f} | "
            f"{ap / ao:.2f}x | {1e3 * bp:.0f} | {1e3 * bo:.0f} | {bp / bo:.2f}x |"
        )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    world = MPI.COMM_WORLD
    rank, n = world.Get_rank(), world.Get_size()
    payloads = Payloads(args.payload, args.data, args.fields.split(","), n, np.dtype(args.dtype))
    settings = comm_settings(args)
    if args.predict:
        if rank == 0:
            prediction_table(args, payloads, settings)
        return
    if args.first_call:
        rows = first_call_table(args, world, payloads, {k: v for k, v in settings.items() if k in ("rel", "abs")})
    else:
        rows = table(args, world, payloads, settings)
    if rank == 0:
        meta = {
            "ranks": n,
            "rate": os.environ.get("NETBED_RATE"),
            "nodes": os.environ.get("NETBED_NODES"),
            "payload": args.payload,
            "dtype": args.dtype,
            "settings": settings,
            "mode": "first-call" if args.first_call else "table",
        }
        if args.json:
            args.json.write_text(json.dumps({"run": meta, "rows": rows}, indent=1, default=float))
        if args.csv and rows:
            with args.csv.open("w", newline="") as f:
                fields = [k for k in rows[0] if not k.endswith("_times")]
                writer = csv.DictWriter(f, fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)


if __name__ == "__main__":
    main()
