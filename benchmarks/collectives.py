#!/usr/bin/env python3
"""Plain MPI collectives against CompressedComm, on the same real data, in the same run.

    cd ../shared/tools/netbed && ./up.sh 1gbit 0 4          # the rate-limited bed (root)
    NETBED_VENV=/path/to/venv PYTHONPATH=/path/to/errbound \\
        ./run.sh 4 /path/to/errbound/benchmarks/collectives.py --rel 1e-3 --json out.json
    ./down.sh

Per operation (Allreduce SUM, Bcast, Allgather, Reduce_scatter_block SUM) and message size
(``--sizes`` in MiB, default 256 KiB .. 256 MiB) the table shows the median time of plain
``comm.Op`` and of ``CompressedComm.Op`` (each rep: Barrier, then the op; a rep's time is
the slowest rank's; the two alternate rep by rep, taking turns to go first, so that load
from elsewhere and the link's state hit both alike); ``cpu ms``, the CPU time of
CompressedComm's busiest rank during the call (its compute plus MPI's polling); the
speed-up; ``zip``, how many timed reps took the compressed path (by default adapt=True keeps
whichever path is faster, re-timing the other now and then; ``--no-adapt`` forces it); and,
from one more call forced onto the compressed path: the compression ratio (float bytes the
same messages would have taken / bytes sent, all ranks), max |result - exact| / bound over
all ranks (exact = the float64 sum or the sender's values; <= 1 by contract) and whether the
ranks that must agree hold the same bytes. On the bed, the cost model's predictions
(mpi_collectives.costmodel, calibrated on one core at the start) close each row. The size is
the vector every op moves: the Allreduce/Bcast buffer, the Allgather result, the
Reduce_scatter_block input; each rank's block of the last two is size / ranks.

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
import hashlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from mpi4py import MPI

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT.parent / "shared" / "data"
DEFAULT_FIELDS = "ccsm-b003_ts-monthly"
OPS = ("allreduce", "bcast", "allgather", "reduce_scatter_block")
LARGE_MIB = 128  # rows this large run at most 3 reps: a 256 MiB plain Allreduce takes seconds

sys.path.insert(0, str(ROOT))
from mpi_collectives import CompressedComm  # noqa: E402

# --------------------------------------------------------------------------- payloads


def _tiles(source: Callable[[int], np.ndarray], count: int, plane: tuple[int, ...]) -> np.ndarray:
    """Tiles source(0), source(1), ... laid end to end, cut to about `count` values: whole
    planes of shape `plane` where a message holds 16 or more, else whole rows, else a flat
    vector (the same rule on every rank, so every rank's count is the same)."""
    size, row = int(np.prod(plane)), plane[-1] if plane else 1
    if plane and count >= 16 * size:
        unit, shape = size, plane
    elif len(plane) > 0 and count >= 16 * row:
        unit, shape = row, plane[-1:]
    else:
        unit, shape = 1, ()
    out = np.empty((count // unit, *shape), np.float64)
    flat = out.reshape(-1)
    filled, i = 0, 0
    while filled < flat.size:
        tile = source(i).reshape(-1)
        take = min(tile.size, flat.size - filled)
        flat[filled : filled + take] = tile[:take]
        filled, i = filled + take, i + 1
    return out


def _flipped(field: np.ndarray, i: int) -> np.ndarray:
    index = tuple(slice(None, None, -1 if i >> axis & 1 else 1) for axis in range(field.ndim))
    return field[index] * (1.0 + 0.003 * i)


class Payloads:
    """Every rank's data for one payload kind, built locally: any rank can compute the exact
    result of a collective without communicating."""

    def __init__(self, kind: str, data: Path, fields: list[str], nranks: int, dtype: np.dtype):
        self.kind, self.nranks, self.dtype = kind, nranks, dtype
        self._fields = []
        for name in fields:
            matches = sorted(data.glob(f"{name}*.f32"))
            if not matches:
                raise SystemExit(f"no float32 field {name}* in {data}")
            dims = tuple(int(d) for d in matches[0].stem.rsplit("_", 1)[1].split("x"))
            self._fields.append(np.fromfile(matches[0], "<f4").reshape(dims).astype(np.float64))
        self._heat = None
        if kind == "heat":
            sys.path.insert(0, str(ROOT / "examples"))
            import heat_mpi

            self._heat = (heat_mpi, heat_mpi.terrain(heat_mpi.TERRAIN))
            self.plane = heat_mpi.SHAPE
        else:
            planes = {f.shape[1:] for f in self._fields}
            self.plane = planes.pop() if len(planes) == 1 else ()  # a common grid, or flat vectors

    def _field(self, rank: int) -> np.ndarray:
        """Rank r's field: field r mod k, from its own slab on (rolled along the first axis)."""
        field = self._fields[rank % len(self._fields)]
        return np.roll(field, -(rank * field.shape[0] // self.nranks), axis=0)

    def _heat_model(self, rank: int):
        module, height = self._heat
        ranks = SimpleNamespace(Get_rank=lambda: rank, Get_size=lambda: self.nranks)
        return module.Heat(ranks, height)

    def reduction(self, rank: int, count: int, salt: int = 0) -> np.ndarray:
        """Rank `rank`'s contribution to a reduction or an Allgather."""
        if self.kind == "heat":
            model = self._heat_model(rank)
            out = _tiles(lambda i: model.deposit(i + salt).copy(), count, self.plane)
        else:
            field = self._field(rank)
            out = _tiles(lambda i: _flipped(field, i + salt), count, self.plane)
        return out.astype(self.dtype)

    def broadcast(self, root: int, count: int) -> np.ndarray:
        """The root's Bcast buffer."""
        if self.kind == "heat":
            return _tiles(self._heat_model(root).ambient_field, count, self.plane).astype(self.dtype)
        return self.reduction(root, count)


# --------------------------------------------------------------------------- one operation


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).view(np.uint8)).hexdigest()


def value_range(arrays) -> float:
    return max(float(a.max()) for a in arrays) - min(float(a.min()) for a in arrays)


def max_error(result: np.ndarray, exact: np.ndarray) -> float:
    return float(np.max(np.abs(result.astype(np.float64).reshape(-1) - exact.reshape(-1)), initial=0.0))


class Case:
    """One (op, size): its buffers, the plain and compressed calls, and the checks."""

    def __init__(self, op: str, nbytes: int, world: MPI.Intracomm, payloads: Payloads, settings: dict, root: int):
        self.op, self.world, self.root = op, world, root
        rank, n = world.Get_rank(), world.Get_size()
        itemsize = payloads.dtype.itemsize
        count = nbytes // itemsize
        if op == "bcast":
            source = payloads.broadcast(root, count)
            self.exact = source.astype(np.float64)
            self.bound_range = value_range([source])
            self.buf = source.copy() if rank == root else np.zeros_like(source)
            self.out = self.buf
        elif op == "allgather":
            blocks = [payloads.reduction(r, count // n) for r in range(n)]
            self.send = blocks[rank]
            self.exact = np.concatenate([b.reshape(-1) for b in blocks]).astype(np.float64)
            self.bound_range = value_range(blocks)
            self.out = np.empty((n, *self.send.shape), payloads.dtype)
        else:
            per_block = count // n if op == "reduce_scatter_block" else count

            def contribution(r: int) -> np.ndarray:
                if op == "allreduce":
                    return payloads.reduction(r, per_block)
                return np.stack([payloads.reduction(r, per_block, salt=7 * b) for b in range(n)])

            total, lo, hi = None, math.inf, -math.inf
            for r in range(n):  # one rank's data at a time: 256 MiB rows on 4 ranks fit in memory
                x = contribution(r)
                total = x.astype(np.float64) if total is None else total + x  # float64: exact to 2**-50
                lo, hi = min(lo, float(x.min())), max(hi, float(x.max()))
                if r == rank:
                    self.send = x
            self.bound_range = hi - lo
            if op == "reduce_scatter_block":
                self.exact = total[rank]
                self.out = np.empty(self.send.shape[1:], payloads.dtype)
            else:
                self.exact = total
                self.out = np.empty_like(self.send)
        self.nbytes = self.out.nbytes * (n if op == "reduce_scatter_block" else 1)
        self.settings = settings
        self.comm = CompressedComm(world, **settings)
        rel, abs_bound = settings.get("rel"), settings.get("abs")
        self.bound = abs_bound if abs_bound is not None else rel * self.bound_range

    def run(self, comm: MPI.Intracomm) -> None:
        if self.op == "allreduce":
            comm.Allreduce(self.send, self.out, MPI.SUM)
        elif self.op == "bcast":
            comm.Bcast(self.buf, self.root)
        elif self.op == "allgather":
            comm.Allgather(self.send, self.out)
        else:
            comm.Reduce_scatter_block(self.send, self.out, MPI.SUM)

    def reset(self) -> None:
        """Bcast overwrites the receivers' buffers; start each rep from zeros so a stale
        result cannot pass for a new one."""
        if self.op == "bcast" and self.world.Get_rank() != self.root:
            self.buf[...] = 0

    def check(self) -> tuple[float, bool, float]:
        """One call on the compressed path (adapt off): (max |result - exact| / bound over all
        ranks, whether the ranks that must agree hold the same bytes, compression ratio)."""
        world, rank = self.world, self.world.Get_rank()
        forced = CompressedComm(world, **{**self.settings, "adapt": False, "min_bytes": 0})
        self.reset()
        self.run(forced)
        ratio = world.allreduce(forced.stats.raw) / max(world.allreduce(forced.stats.sent), 1)
        mine = digest(self.out)
        err = max_error(self.out, self.exact) if not (self.op == "bcast" and rank == self.root) else 0.0
        err = world.allreduce(err, MPI.MAX) / self.bound if self.bound > 0 else math.inf
        hashes = world.allgather(mine)
        if self.op == "bcast":
            same = len({h for r, h in enumerate(hashes) if r != self.root}) == 1
        elif self.op == "reduce_scatter_block":
            # each rank holds a different block: it must be that block of a compressed
            # Allreduce of the same data (the same grid, so the same bits)
            full = np.empty_like(self.send)
            forced.Allreduce(self.send, full, MPI.SUM)
            same = world.allreduce(int(digest(full[rank]) != mine)) == 0
        else:
            same = len(set(hashes)) == 1
        forced.Free()
        return err, same, ratio

    def free(self) -> None:
        self.comm.Free()


def time_pair(case: Case, reps: int, warmup: int) -> tuple[list[float], list[float], list[float], int]:
    """Interleaved reps of plain and CompressedComm: per-rep times (slowest rank) of each, the
    CPU time of CompressedComm's busiest rank, and in how many timed reps it took its
    compressed path (adapt may choose plain)."""
    world = case.world
    plain, ours, cpu = [], [], []
    compressed = 0
    for rep in range(warmup + reps):
        if rep == warmup:  # path counts cover the timed reps only
            calls_before = case.comm.stats.calls
        pair = ((world, plain), (case.comm, ours))
        # alternate which goes first: in a fixed order the second ran 5-10 % slower, even on the same path
        for comm, times in pair if rep % 2 else pair[::-1]:
            case.reset()
            world.Barrier()
            start, cpu_start = time.perf_counter(), time.process_time()
            case.run(comm)
            elapsed = world.allreduce(time.perf_counter() - start, MPI.MAX)
            used = world.allreduce(time.process_time() - cpu_start, MPI.MAX)
            if rep >= warmup:
                times.append(elapsed)
                if comm is case.comm:
                    cpu.append(used)
    compressed = case.comm.stats.calls - calls_before
    return plain, ours, cpu, compressed


# --------------------------------------------------------------------------- the cost model


def quiet_wait(comm: MPI.Intracomm) -> None:
    """A barrier that sleeps between polls: MPICH busy-polls in a blocking call, and with
    4 ranks on 2 cores three spinning ranks halved the one-core speeds rank 0 calibrated."""
    request = comm.Ibarrier()
    while not request.Test():
        time.sleep(0.002)


def calibrate(payloads: Payloads, nranks: int, settings: dict) -> dict[str, float]:
    """One core's throughput (bytes of floats per second, best of 3) of the compute each path
    does per byte, on 16 MiB of rank 0's data cut into 1 MiB chunks as the pipelines cut it:
    reductions (quantize and predict + encode; decode, half added and half restored and
    written, as a SUM's ring does) and data movement (the fz block codec)."""
    import numba

    from mpi_collectives.movement import blockcodec
    from mpi_collectives.reduction import codes
    from mpi_collectives.reduction.grid import reduction_grid
    from mpi_collectives.settings import SUM
    from mpi_collectives.transport import chunks

    x = payloads.reduction(0, (16 << 20) // payloads.dtype.itemsize)
    flat = x.reshape(-1)
    bound = settings["abs"] if settings.get("abs") is not None else settings["rel"] * value_range([x])
    grid = reduction_grid(SUM, nranks, bound, float(np.max(np.abs(flat))), flat.dtype)
    row, trailing = chunks.row_layout(x.shape)
    parts = chunks.split(0, flat.size, row, trailing, (1 << 20) // flat.dtype.itemsize)
    out = np.empty_like(flat)

    def best(work: Callable[[], object], nbytes: int = flat.nbytes) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return nbytes / min(times)

    def residuals(p):
        return codes.quantize_residuals(p.of(flat), grid, p.shape, np.empty(p.size, grid.int_dtype))

    def decode_both(p, blob, acc):
        """A SUM's decodes, half of them each way: added on a reduce-scatter hop, and restored
        and written at the end."""
        codes.decode_add(blob, acc)
        codes.write(p.of(out), codes.decode(blob, p.size, grid.int_dtype), grid, None, residuals_of=p.shape)

    threads = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        red = [codes.encode(residuals(p), p.shape, predict=False) for p in parts]
        accs = [np.zeros(p.size, grid.int_dtype) for p in parts]
        mov = [blockcodec.encode(p.of(flat), p.shape, bound, "fz") for p in parts]
        return {
            "reduce_encode": best(lambda: [codes.encode(residuals(p), p.shape, predict=False) for p in parts]),
            "reduce_decode": best(
                lambda: [decode_both(p, b, a) for p, b, a in zip(parts, red, accs, strict=True)], 2 * flat.nbytes
            ),
            "move_encode": best(lambda: [blockcodec.encode(p.of(flat), p.shape, bound, "fz") for p in parts]),
            "move_decode": best(lambda: [blockcodec.decode(b, p.of(out)) for p, b in zip(parts, mov, strict=True)]),
        }
    finally:
        numba.set_num_threads(threads)


def predict(
    op: str, nbytes: int, n: int, ratio: float, speeds: dict[str, float], link_bits: float | None, segment: int
) -> tuple[float, float]:
    """(plain, compressed) seconds from mpi_collectives.costmodel for this machine: link at
    95.6 % of its rate (TCP payload share at MTU 1500), the cores shared by the ranks."""
    from mpi_collectives import costmodel
    from mpi_collectives.transport import chunks

    kind = "reduce" if op in ("allreduce", "reduce_scatter_block") else "move"
    cores = min(1.0, len(os.sched_getaffinity(0)) / n)
    link = 0.956 * link_bits / 8
    block = nbytes if op == "bcast" else nbytes // n
    rule = chunks.REDUCTION if kind == "reduce" else chunks.MOVEMENT
    chunk = chunks.target_values(segment, 4, block // 4, rule) * 4  # the rule the collectives use
    machine = costmodel.Machine(link, speeds[f"{kind}_encode"], speeds[f"{kind}_decode"], ratio, cores, chunk)
    return costmodel.plain(op, nbytes, n, link), costmodel.compressed(op, nbytes, n, machine)


def link_rate() -> float | None:
    """NETBED_RATE ('1gbit', '2500mbit') in bits per second, None off the bed."""
    text = os.environ.get("NETBED_RATE", "").strip().lower()
    units = {"kbit": 1e3, "mbit": 1e6, "gbit": 1e9}
    for unit, scale in units.items():
        if text.endswith(unit):
            return float(text[: -len(unit)]) * scale
    return None


# --------------------------------------------------------------------------- the run


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0.25,1,4,16,64,256", help="message sizes in MiB, comma separated")
    ap.add_argument("--ops", default=",".join(OPS), help=f"subset of {','.join(OPS)}")
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
    ap.add_argument("--root", type=int, default=0, help="Bcast root")
    ap.add_argument("--reps", type=int, default=5, help=f"timed reps per row (at most 3 from {LARGE_MIB} MiB)")
    ap.add_argument("--reps-small", type=int, default=15, help="timed reps for rows up to 4 MiB (noisier)")
    ap.add_argument(
        "--warmup", type=int, default=4, help="untimed reps (adapt=True explores both paths in its first 4 calls)"
    )
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
    args.sizes = [float(s) for s in args.sizes.split(",") if s.strip()]
    args.ops = [o.strip() for o in args.ops.split(",") if o.strip()]
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
    f"{'op':<22s}{'ranks':>5s}{'MiB':>9s}{'mpi ms':>9s}{'ours ms':>9s}{'cpu ms':>8s}{'speedup':>8s}"
    f"{'ratio':>8s}{'err/bnd':>8s}{'same':>6s}{'zip':>6s}{'model mpi/ours':>16s}"
)


def format_row(row: dict) -> str:
    same = {True: "yes", False: "NO"}.get(row["identical"], "-")
    return (
        f"{row['op']:<22s}{row['ranks']:>5d}{row['mib']:>9.3g}{row['mpi_ms']:>9.1f}{row['ours_ms']:>9.1f}"
        f"{row['ours_cpu_ms']:>8.1f}"
        f"{row['speedup']:>8.2f}{row['ratio']:>8.2f}{row['err_over_bound']:>8.4f}{same:>6s}"
        f"{row['compressed_reps']:>4d}/{row['reps']:<2d}"
        + (f"{row['model_mpi_ms']:>8.1f}/{row['model_ours_ms']:<7.1f}" if "model_ours_ms" in row else "")
    )


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    world = MPI.COMM_WORLD
    rank, n = world.Get_rank(), world.Get_size()
    payloads = Payloads(args.payload, args.data, args.fields.split(","), n, np.dtype(args.dtype))
    settings = comm_settings(args)
    load_start = os.getloadavg()
    rate = link_rate()
    speeds = calibrate(payloads, n, settings) if args.model and rate and rank == 0 else None
    quiet_wait(world)  # the others must not spin in MPI while rank 0 times one core
    speeds = world.bcast(speeds)  # rank 0's, so every rank prints the same model
    if rank == 0:
        bound = f"abs={args.abs:g}" if args.abs is not None else f"rel={args.rel:g}"
        print(
            f"# {n} ranks, link {os.environ.get('NETBED_RATE', 'unshaped (no netbed)')}, payload {args.payload} "
            f"{args.dtype}, {bound}, codec {args.codec}, load average {load_start[0]:.2f}",
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
            plain, ours, cpu, compressed_reps = time_pair(case, reps, args.warmup)
            err, identical, ratio = case.check()
            mpi_ms, ours_ms = 1e3 * statistics.median(plain), 1e3 * statistics.median(ours)
            row = {
                "op": op,
                "ranks": n,
                "mib": case.nbytes / 2**20,
                "bytes": case.nbytes,
                "mpi_ms": mpi_ms,
                "ours_ms": ours_ms,
                "ours_cpu_ms": 1e3 * statistics.median(cpu),
                "speedup": mpi_ms / ours_ms,
                "ratio": ratio,
                "err_over_bound": err,
                "identical": identical,
                "reps": reps,
                "compressed_reps": compressed_reps,
                "mpi_times": plain,
                "ours_times": ours,
                "load": os.getloadavg()[0],
            }
            if speeds is not None:
                model_plain, model_ours = predict(
                    op, case.nbytes, n, row["ratio"], speeds, rate, args.segment_bytes or 0
                )
                row.update(model_mpi_ms=1e3 * model_plain, model_ours_ms=1e3 * model_ours)
            rows.append(row)
            case.free()
            del case
            if rank == 0:
                print(format_row(row), flush=True)
    load_end = os.getloadavg()
    if rank == 0:
        print(f"# load average {load_start[0]:.2f} at the start, {load_end[0]:.2f} at the end", flush=True)
        meta = {
            "ranks": n,
            "rate": os.environ.get("NETBED_RATE"),
            "payload": args.payload,
            "dtype": args.dtype,
            "settings": settings,
            "load_start": load_start,
            "load_end": load_end,
            "speeds": speeds,
        }
        if args.json:
            args.json.write_text(json.dumps({"run": meta, "rows": rows}, indent=1))
        if args.csv:
            with args.csv.open("w", newline="") as f:
                fields = [k for k in rows[0] if not k.endswith("_times")] if rows else []
                writer = csv.DictWriter(f, fields, extrasaction="ignore")
                writer.writeheader()
                writer.writerows(rows)


if __name__ == "__main__":
    main()
