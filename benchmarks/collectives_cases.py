"""The cases benchmarks/collectives.py times: every rank's data (real fields or the heat
example's state), each collective's buffers and exact result, and the timing loops.

Payloads are built locally on every rank for every rank, so any rank can compute the exact
result of a collective without communicating.
"""

from __future__ import annotations

import hashlib
import math
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
sys.path.insert(0, str(ROOT))
from mpi_collectives import CompressedComm  # noqa: E402

OPS = ("allreduce", "bcast", "allgather", "reduce_scatter_block", "reduce", "gather", "scatter", "alltoall")
ROOTED = ("bcast", "reduce", "gather", "scatter")

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
    """One (op, size): its buffers, the plain and compressed calls, and the checks. The size is
    the vector every op moves: the Allreduce/Reduce/Bcast buffer, the Allgather and Gather
    result, the Scatter root's buffer, the Reduce_scatter_block input, each rank's Alltoall
    send buffer; the blocks of the last five are size / ranks."""

    def __init__(self, op: str, nbytes: int, world: MPI.Intracomm, payloads: Payloads, settings: dict, root: int):
        self.op, self.world, self.root = op, world, root
        rank, n = world.Get_rank(), world.Get_size()
        count = nbytes // payloads.dtype.itemsize
        block = count // n
        self.recv = None
        if op == "bcast":
            source = payloads.broadcast(root, count)
            self.exact = source.astype(np.float64)
            self.bound_range = value_range([source])
            self.send = source.copy() if rank == root else np.zeros_like(source)
            self.out = self.send
        elif op in ("allgather", "gather"):
            blocks = [payloads.reduction(r, block) for r in range(n)]
            self.send = blocks[rank]
            self.exact = np.concatenate([b.reshape(-1) for b in blocks]).astype(np.float64)
            self.bound_range = value_range(blocks)
            keep = op == "allgather" or rank == root
            self.out = np.empty((n, *self.send.shape), payloads.dtype) if keep else None
        elif op == "scatter":
            blocks = [payloads.reduction(root, block, salt=5 * b) for b in range(n)]
            self.send = np.stack(blocks) if rank == root else None
            self.exact = blocks[rank].astype(np.float64)
            self.bound_range = value_range(blocks)
            self.out = np.empty_like(blocks[rank])
        elif op == "alltoall":
            mine = [payloads.reduction(rank, block, salt=11 * b) for b in range(n)]
            self.send = np.stack(mine)
            self.exact = np.stack([payloads.reduction(r, block, salt=11 * rank) for r in range(n)]).astype(np.float64)
            self.bound_range = value_range(
                [payloads.reduction(r, block, salt=11 * b) for r in range(n) for b in range(n)]
            )
            self.out = np.empty_like(self.send)
        else:
            per_block = block if op == "reduce_scatter_block" else count

            def contribution(r: int) -> np.ndarray:
                if op != "reduce_scatter_block":
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
                self.out = np.empty_like(self.send) if op == "allreduce" or rank == root else None
        self.nbytes = (
            count // n * n * payloads.dtype.itemsize
            if op not in ("allreduce", "bcast", "reduce")
            else (self.send.nbytes)
        )
        self.settings = settings
        self.comm = CompressedComm(world, **settings)
        rel, abs_bound = settings.get("rel"), settings.get("abs")
        self.bound = abs_bound if abs_bound is not None else rel * self.bound_range

    def run(self, comm: MPI.Intracomm) -> None:
        op, root = self.op, self.root
        if op == "allreduce":
            comm.Allreduce(self.send, self.out, MPI.SUM)
        elif op == "bcast":
            comm.Bcast(self.send, root)
        elif op == "allgather":
            comm.Allgather(self.send, self.out)
        elif op == "reduce_scatter_block":
            comm.Reduce_scatter_block(self.send, self.out, MPI.SUM)
        elif op == "reduce":
            comm.Reduce(self.send, self.out, MPI.SUM, root)
        elif op == "gather":
            comm.Gather(self.send, self.out, root)
        elif op == "scatter":
            comm.Scatter(self.send, self.out, root)
        else:
            comm.Alltoall(self.send, self.out)

    def reset(self) -> None:
        """Bcast overwrites the receivers' buffers; start each rep from zeros so a stale
        result cannot pass for a new one."""
        if self.op == "bcast" and self.world.Get_rank() != self.root:
            self.send[...] = 0

    def holds_result(self) -> bool:
        rank = self.world.Get_rank()
        if self.op == "bcast":
            return rank != self.root
        if self.op in ("reduce", "gather"):
            return rank == self.root
        return True

    def check(self) -> tuple[float, bool | None, float]:
        """One call on the compressed path (adapt off): (max |result - exact| / bound over all
        ranks, whether the ranks that must agree hold the same bytes (None where one rank holds
        the result), compression ratio)."""
        world, rank = self.world, self.world.Get_rank()
        forced = CompressedComm(world, **{**self.settings, "adapt": False, "min_bytes": 0})
        self.reset()
        self.run(forced)
        ratio = world.allreduce(forced.stats.raw) / max(world.allreduce(forced.stats.sent), 1)
        err = max_error(self.out, self.exact) if self.holds_result() and self.out is not None else 0.0
        err = world.allreduce(err, MPI.MAX) / self.bound if self.bound > 0 else math.inf
        same: bool | None = None
        if self.op in ("bcast", "allgather", "allreduce"):
            hashes = world.allgather(digest(self.out))
            same = len({h for r, h in enumerate(hashes) if self.op != "bcast" or r != self.root}) == 1
        elif self.op == "reduce_scatter_block":
            # each rank holds a different block: it must be that block of a compressed
            # Allreduce of the same data (the same grid, so the same bits)
            full = np.empty_like(self.send)
            forced.Allreduce(self.send, full, MPI.SUM)
            same = world.allreduce(int(digest(full[rank]) != digest(self.out))) == 0
        forced.Free()
        return err, same, ratio

    def free(self) -> None:
        self.comm.Free()


def time_series(case: Case, reps: int, warmup: int, noise: bool = False) -> dict:
    """Interleaved reps of plain MPI, CompressedComm and (noise) plain MPI on a duplicate of the
    communicator, their order rotating from rep to rep: per-rep times (slowest rank) of each,
    the CPU time of CompressedComm's busiest rank, and in how many timed reps it compressed."""
    world = case.world
    series = {"plain": [], "ours": [], "cpu": []}
    comms = [("plain", world), ("ours", case.comm)]
    if noise:
        duplicate = world.Dup()
        comms.append(("again", duplicate))
        series["again"] = []
    compressed = 0
    calls_before = case.comm.stats.calls
    for rep in range(warmup + reps):
        if rep == warmup:  # path counts cover the timed reps only
            calls_before = case.comm.stats.calls
        shift = rep % len(comms)  # in a fixed order the second ran 5-10 % slower, even on the same path
        for name, comm in comms[shift:] + comms[:shift]:
            case.reset()
            world.Barrier()
            start, cpu_start = time.perf_counter(), time.process_time()
            case.run(comm)
            elapsed = world.allreduce(time.perf_counter() - start, MPI.MAX)
            used = world.allreduce(time.process_time() - cpu_start, MPI.MAX)
            if rep >= warmup:
                series[name].append(elapsed)
                if name == "ours":
                    series["cpu"].append(used)
    compressed = case.comm.stats.calls - calls_before
    if noise:
        duplicate.Free()
    series["compressed"] = compressed
    return series


def first_calls(
    op: str, nbytes: int, world: MPI.Intracomm, payloads: Payloads, settings: dict, reps: int, trials: int = 9
) -> dict:
    """The first call of `op` on a fresh plain duplicate of world and on a fresh CompressedComm
    (default settings: the first call is the one a program pays for), in `trials` trials with
    new communicators each (their order alternating), and the median of `reps` later calls of
    each, alternating. MPI's own first-use costs on a new communicator are paid by both."""
    case = Case(op, nbytes, world, payloads, settings, 0)
    firsts: dict[str, list[float]] = {"plain": [], "ours": []}
    times: dict[str, list[float]] = {"plain": [], "ours": []}
    compressed = 0
    for trial in range(trials):
        plain, ours = world.Dup(), CompressedComm(world, **settings)
        order = [("plain", plain), ("ours", ours)]
        if trial % 2:
            order.reverse()
        for call in range(reps + 1 if trial == 0 else 1):
            for name, comm in order:
                case.reset()
                world.Barrier()
                start = time.perf_counter()
                case.run(comm)
                elapsed = world.allreduce(time.perf_counter() - start, MPI.MAX)
                (firsts if call == 0 else times)[name].append(elapsed)
            order.reverse()
        compressed += world.allreduce(ours.stats.calls, MPI.MAX)
        plain.Free()
        ours.Free()
    case.free()
    return {
        "op": op,
        "bytes": case.nbytes,
        "plain_first": statistics.median(firsts["plain"]),
        "ours_first": statistics.median(firsts["ours"]),
        "plain_median": statistics.median(times["plain"]),
        "ours_median": statistics.median(times["ours"]),
        "compressed_calls": compressed,
    }
