"""2-D heat on a domain decomposed over ranks, with compressed Allreduce and Bcast in its loop.

    mpiexec -n 4 python examples/heat_mpi.py [--steps 40] [--rel 1e-4] [--every 5]

The grid (438 x 450, the shape of a European terrain map) is split into row slabs, one per
rank; neighbours swap halo rows each step (small messages: plain MPI). Two large
collectives per step feed the physics:

* heating: each rank owns a few moving heat sources that may sit anywhere in the domain
  and deposits them on a full-grid array; ``Allreduce(SUM)`` gives every rank the total
  heating, of which it uses its slab (the particle-in-cell deposition pattern);
* ambient temperature: rank 0 computes a time-varying ambient field from the terrain
  (lapse rate plus a moving warm front) and ``Bcast``s it; the slab relaxes towards it.

The same simulation runs twice in lockstep, once on a CompressedComm and once on plain
``MPI.COMM_WORLD``. Each printed step shows the worst error of the two collectives
against the uncompressed run as a fraction of the bound (<= 1 by contract), the drift of
the temperature field, and the bytes the compressed collectives saved so far.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpi_collectives import CompressedComm

SHAPE = (438, 450)
TERRAIN = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "rcm-eur011_hsurf_438x450.f32"


def terrain(path: Path) -> np.ndarray:
    """Surface height in metres: the real map when it is there, else a synthetic one."""
    if path.is_file():
        return np.fromfile(path, "<f4").reshape(SHAPE).astype(np.float64)
    from errbound.datasets import demo_field

    return 800.0 * np.maximum(demo_field(SHAPE, seed=3, dtype=np.float64), 0.0)


class Heat:
    """One rank's slab of the temperature field and the loop that advances it."""

    alpha, dt, relax = 0.2, 0.5, 0.02  # diffusion, time step, relaxation rate (grid units)

    def __init__(self, comm: MPI.Intracomm, height: np.ndarray, sources: int = 6):
        self.comm = comm
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        ny, nx = SHAPE
        self.rows = slice(ny * self.rank // self.size, ny * (self.rank + 1) // self.size)
        self.height = height
        self.temp = np.zeros((self.rows.stop - self.rows.start + 2, nx))  # with one halo row per side
        self.temp[1:-1] = self.lapse(height[self.rows])
        rng = np.random.default_rng(100 + self.rank)
        self.centres = rng.uniform([0, 0], SHAPE, size=(sources, 2))
        self.speeds = rng.uniform(-1.5, 1.5, size=(sources, 2))
        self.heating = np.zeros(SHAPE)
        self.ambient = np.zeros(SHAPE)
        self.y, self.x = np.arange(ny, dtype=np.float64), np.arange(nx, dtype=np.float64)

    @staticmethod
    def lapse(height: np.ndarray) -> np.ndarray:
        return 15.0 - 6.5e-3 * height

    def deposit(self, step: int) -> np.ndarray:
        """This rank's sources on the full grid (Gaussians of width 12 cells)."""
        self.heating[...] = 0.0
        for (cy, cx), (vy, vx) in zip(self.centres, self.speeds, strict=True):
            py, px = (cy + vy * step) % SHAPE[0], (cx + vx * step) % SHAPE[1]
            self.heating += 0.4 * np.outer(
                np.exp(-(((self.y - py) / 12.0) ** 2)), np.exp(-(((self.x - px) / 12.0) ** 2))
            )
        return self.heating

    def ambient_field(self, step: int) -> np.ndarray:
        """Rank 0's forcing: lapse-rate temperature plus a warm front moving east."""
        front = 6.0 / (1.0 + np.exp(-(self.x - 5.0 * step) / 25.0))
        return self.lapse(self.height) + front[None, :]

    def step(self, step: int) -> None:
        self.comm.Allreduce(MPI.IN_PLACE, self.deposit(step), op=MPI.SUM)
        if self.rank == 0:
            self.ambient[...] = self.ambient_field(step)
        self.comm.Bcast(self.ambient, root=0)
        self.exchange_halos()
        t = self.temp
        lap = np.zeros_like(t[1:-1])
        lap += t[:-2] + t[2:] - 2 * t[1:-1]
        lap[:, 1:-1] += t[1:-1, :-2] + t[1:-1, 2:] - 2 * t[1:-1, 1:-1]
        t[1:-1] += self.dt * (
            self.alpha * lap + self.heating[self.rows] + self.relax * (self.ambient[self.rows] - t[1:-1])
        )

    def exchange_halos(self) -> None:
        up = self.rank - 1 if self.rank > 0 else MPI.PROC_NULL
        down = self.rank + 1 if self.rank < self.size - 1 else MPI.PROC_NULL
        self.comm.Sendrecv(self.temp[1], up, 0, self.temp[-1], down, 0)
        self.comm.Sendrecv(self.temp[-2], down, 1, self.temp[0], up, 1)
        if up == MPI.PROC_NULL:
            self.temp[0] = self.temp[1]  # insulated edges
        if down == MPI.PROC_NULL:
            self.temp[-1] = self.temp[-2]


def down(value: float, digits: int = 4) -> str:
    """Rounded down, so that a ratio just under 1 never prints as 1 or more."""
    return f"{math.floor(value * 10**digits) / 10**digits:.{digits}f}"


def global_max(value: float) -> float:
    return MPI.COMM_WORLD.allreduce(value, op=MPI.MAX)


def value_range(local: np.ndarray) -> float:
    return global_max(float(local.max())) + global_max(-float(local.min()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rel", type=float, default=1e-4, help="bound relative to each collective's value range")
    parser.add_argument("--every", type=int, default=5, help="print every this many steps")
    parser.add_argument("--terrain", type=Path, default=TERRAIN, help="438x450 float32 surface height")
    args = parser.parse_args()

    world = MPI.COMM_WORLD
    rank = world.Get_rank()
    # adapt=False: this demo runs on one machine, where the default runs plain MPI (ranks on
    # one node share memory, faster than any compressor); forced, every rank counts as a node
    if rank == 0:
        print(
            f"{world.Get_size()} ranks, grid {SHAPE[0]}x{SHAPE[1]} float64, rel bound {args.rel:g}; "
            "errors are max |compressed - uncompressed| / bound",
            flush=True,
        )
    comm = CompressedComm(world, rel=args.rel, adapt=False)
    height = terrain(args.terrain)
    fast, exact = Heat(comm, height), Heat(world, height)
    if rank == 0:
        print(
            f"{'step':>5s} {'Allreduce':>10s} {'Bcast':>8s} {'T drift':>10s} {'sent MB':>8s} {'saved MB':>9s} {'ratio':>6s}"
        )
    worst = 0.0
    for step in range(args.steps):
        heating_bound = args.rel * value_range(exact.deposit(step))  # rel: the inputs' global range
        fast.step(step)
        exact.step(step)
        ambient_bound = args.rel * float(np.ptp(exact.ambient))  # rel: the root's field
        e_sum = global_max(float(np.max(np.abs(fast.heating - exact.heating)))) / heating_bound
        e_bcast = global_max(float(np.max(np.abs(fast.ambient - exact.ambient)))) / ambient_bound
        drift = global_max(float(np.max(np.abs(fast.temp[1:-1] - exact.temp[1:-1]))))
        worst = max(worst, e_sum, e_bcast)
        sent = world.allreduce(comm.stats.sent)
        raw = world.allreduce(comm.stats.raw)
        if rank == 0 and (step % args.every == 0 or step == args.steps - 1):
            print(
                f"{step:5d} {down(e_sum):>10s} {down(e_bcast):>8s} {drift:10.2e} {sent / 1e6:8.2f} "
                f"{(raw - sent) / 1e6:9.2f} {raw / sent:6.1f}"
            )
    if rank == 0:
        print(f"worst collective error / bound over {args.steps} steps: {down(worst, 6)} (contract: <= 1)")
    comm.Free()


if __name__ == "__main__":
    main()
