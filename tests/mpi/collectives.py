"""Every compressed collective against the exact answer, under mpiexec.

Usage: mpiexec -n N python collectives.py [DATA_DIR]

Each case runs on every rank; rank 0 prints one JSON list with, per case:
``err`` (max |result - exact| / bound over all ranks, exact = float64 or wider),
``identical`` (the ranks that must agree hold the same bytes), ``exact`` (pass-through
results equal plain MPI bit for bit) and ``compressed`` (whether the compressed path ran).
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpi_collectives import CompressedComm

WORLD = MPI.COMM_WORLD
RANK, SIZE = WORLD.Get_rank(), WORLD.Get_size()
RESULTS: list[dict] = []
MIN_BYTES = 64 * 1024


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def max_ratio(result, exact, bound: float) -> float:
    """max |result - exact| / bound over the finite points; non-finite points must match exactly."""
    result = np.asarray(result, np.longdouble).reshape(-1)
    exact = np.asarray(exact, np.longdouble).reshape(-1)
    finite = np.isfinite(exact)
    same_nonfinite = bool(
        np.array_equal(np.isnan(result[~finite]), np.isnan(exact[~finite]))
        and np.array_equal(result[~finite & ~np.isnan(exact)], exact[~finite & ~np.isnan(exact)])
    )
    if not same_nonfinite:
        return float("inf")
    if not finite.any():
        return 0.0
    return float(np.max(np.abs(result[finite] - exact[finite])) / bound)


def record(
    name: str, err: float = 0.0, identical: bool = True, exact: bool = True, compressed: bool = True, **extra
) -> None:
    """`compressed`: the expected path ran (the compressed one; for pass-through cases, plain MPI)."""
    """Combine every rank's view of a case and keep it at rank 0."""
    views = WORLD.gather((err, identical, exact, compressed))
    if RANK == 0:
        RESULTS.append(
            {
                "case": name,
                "ranks": SIZE,
                "err": max(v[0] for v in views),
                "identical": all(v[1] for v in views),
                "exact": all(v[2] for v in views),
                "compressed": all(v[3] for v in views),
                **extra,
            }
        )


def same_everywhere(a: np.ndarray, ranks=None) -> bool:
    hashes = WORLD.allgather(digest(a))
    chosen = [hashes[r] for r in (ranks if ranks is not None else range(SIZE))]
    return len(set(chosen)) == 1


def global_range(local: np.ndarray) -> float:
    finite = local[np.isfinite(local)]
    hi = WORLD.allreduce(float(finite.max()) if finite.size else -np.inf, MPI.MAX)
    lo = WORLD.allreduce(float(finite.min()) if finite.size else np.inf, MPI.MIN)
    return hi - lo


def inputs(kind: str, dtype, n: int = 40_000, data_dir: Path | None = None) -> np.ndarray:
    """Per-rank input: a smooth random walk, or a real field shifted differently on each rank."""
    rng = np.random.default_rng(1234 + RANK)
    if kind == "random":
        return (np.cumsum(rng.standard_normal(n)) + 10 * RANK).astype(dtype)
    field = np.fromfile(data_dir / "echam5_temperature_17x96x192.f32", "<f4").reshape(17, 96, 192)
    return np.roll(field, 11 * RANK, axis=-1).astype(dtype)


def calls(comm: CompressedComm) -> int:
    return comm.stats.calls


# ---------------------------------------------------------------------------------------------


def check_reductions(comm: CompressedComm, label: str, x: np.ndarray, bound_of, ops=("SUM", "MAX", "MIN")):
    everyone = np.stack(WORLD.allgather(x)).astype(np.longdouble)
    for name in ops:
        op = getattr(MPI, name)
        exact = {"SUM": everyone.sum(axis=0), "MAX": everyone.max(axis=0), "MIN": everyone.min(axis=0)}[name]
        bound = bound_of(x)
        before = calls(comm)
        out = np.empty_like(x)
        comm.Allreduce(x, out, op)
        record(
            f"Allreduce {name} {label}",
            max_ratio(out, exact, bound),
            same_everywhere(out),
            compressed=calls(comm) > before,
        )
        inplace = x.copy()
        comm.Allreduce(MPI.IN_PLACE, inplace, op)
        record(
            f"Allreduce IN_PLACE {name} {label}",
            max_ratio(inplace, exact, bound),
            same_everywhere(inplace) and bool(np.array_equal(inplace.view(np.uint8), out.view(np.uint8))),
        )
        req = comm.Iallreduce(x, out2 := np.empty_like(x), op)
        req.Wait()
        record(f"Iallreduce {name} {label}", max_ratio(out2, exact, bound), same_everywhere(out2))


def check_rooted_reductions(comm: CompressedComm, label: str, x: np.ndarray, bound: float) -> None:
    everyone = np.stack(WORLD.allgather(x)).astype(np.longdouble)
    root = SIZE - 1
    out = np.full_like(x, -7.0)
    comm.Reduce(x, out, MPI.SUM, root=root)
    if RANK == root:
        record(f"Reduce SUM root={root} {label}", max_ratio(out, everyone.sum(axis=0), bound))
    else:
        record(f"Reduce SUM root={root} {label}", exact=bool(np.all(out == -7.0)))

    blocks = x.reshape(SIZE, -1) if x.size % SIZE == 0 else x[: x.size // SIZE * SIZE].reshape(SIZE, -1)
    mine = np.empty(blocks.shape[1], x.dtype)
    comm.Reduce_scatter_block(np.ascontiguousarray(blocks), mine, MPI.SUM)
    exact = np.stack(WORLD.allgather(blocks)).astype(np.longdouble).sum(axis=0)[RANK]
    record(f"Reduce_scatter_block SUM {label}", max_ratio(mine, exact, bound))
    inplace = np.ascontiguousarray(blocks).reshape(-1).copy()
    comm.Reduce_scatter_block(MPI.IN_PLACE, inplace, MPI.SUM)
    record(
        f"Reduce_scatter_block IN_PLACE SUM {label}",
        max_ratio(inplace[: mine.size], exact, bound),
        exact=bool(np.array_equal(inplace[: mine.size], mine)),
    )


def check_movement(comm: CompressedComm, label: str, x: np.ndarray, bound_of) -> None:
    root = SIZE - 1
    # Bcast: receivers within the bound and identical; the root's buffer untouched
    original = WORLD.bcast(x, root=root)
    buf = x.copy() if RANK == root else np.zeros_like(x)
    comm.Bcast(buf, root=root)
    bound = bound_of(original)
    receivers = [r for r in range(SIZE) if r != root]
    record(
        f"Bcast {label}",
        max_ratio(buf, original, bound),
        same_everywhere(buf, receivers),
        exact=RANK != root or bool(np.array_equal(buf, x)),
    )
    buf = x.copy() if RANK == root else np.zeros_like(x)
    comm.Bcast(buf, root=root, consistent=True)
    record(f"Bcast consistent {label}", max_ratio(buf, original, bound), same_everywhere(buf))
    buf = x.copy() if RANK == root else np.zeros_like(x)
    comm.Ibcast(buf, root=root).Wait()
    record(f"Ibcast {label}", max_ratio(buf, original, bound), same_everywhere(buf, receivers))

    # Allgather: every block within the bound of all gathered data; the same bytes everywhere
    everyone = np.stack(WORLD.allgather(x))
    bound = bound_of(x)  # the global range of all blocks, as mpi_collectives defines it for rel
    out = np.empty_like(everyone)
    comm.Allgather(x, out)
    record(f"Allgather {label}", max_ratio(out, everyone, bound), same_everywhere(out))
    inplace = np.zeros_like(everyone)
    inplace[RANK] = x
    comm.Allgather(MPI.IN_PLACE, inplace)
    record(f"Allgather IN_PLACE {label}", max_ratio(inplace, everyone, bound), same_everywhere(inplace))

    # Gather to root: others within the bound, root's own block exact
    out = np.zeros_like(everyone) if RANK == root else None
    comm.Gather(x, out, root=root)
    if RANK == root:
        record(f"Gather {label}", max_ratio(out, everyone, bound), exact=bool(np.array_equal(out[root], x)))
    else:
        record(f"Gather {label}")

    # Scatter from root: the root's data, block by block
    source = np.stack([np.roll(x, k) for k in range(SIZE)]) if RANK == root else None
    truth = WORLD.bcast(source, root=root)
    bound = bound_of(source if RANK == root else np.zeros(0, x.dtype))  # rel: the root's data
    mine = np.zeros_like(x)
    comm.Scatter(source, mine, root=root)
    record(
        f"Scatter {label}",
        max_ratio(mine, truth[RANK], bound),
        exact=RANK != root or bool(np.array_equal(mine, truth[root])),
    )

    # Alltoall: block j of rank i goes to rank j
    send = np.stack([np.roll(x, 3 * k) for k in range(SIZE)])
    bound = bound_of(send)
    out = np.zeros_like(send)
    comm.Alltoall(send, out)
    truth = np.stack([WORLD.allgather(send[k]) for k in range(SIZE)][RANK])
    record(f"Alltoall {label}", max_ratio(out, truth, bound), exact=bool(np.array_equal(out[RANK], send[RANK])))


def check_nonfinite(comm: CompressedComm, dtype) -> None:
    """Non-finite inputs are reduced exactly, IEEE style: a NaN on any rank gives NaN, for MAX
    and MIN too (MPICH's plain MAX keeps or drops a NaN depending on the order of its operands:
    documented in README's error contract)."""
    x = inputs("random", dtype)
    x[RANK * 7] = np.nan
    x[100 + RANK] = np.inf
    x[200] = -np.inf if RANK == 0 else 1.0  # one rank -inf, the rest finite
    x[300] = np.inf if RANK % 2 else -np.inf  # +inf + -inf = nan (from two ranks on)
    everyone = np.stack(WORLD.allgather(x)).astype(np.longdouble)
    with np.errstate(invalid="ignore"):
        exact = {"SUM": everyone.sum(axis=0), "MAX": everyone.max(axis=0), "MIN": everyone.min(axis=0)}
    for name in ("SUM", "MAX", "MIN"):
        out = np.empty_like(x)
        comm.Allreduce(x, out, getattr(MPI, name))
        nan_everywhere = bool(np.all(np.isnan(out[[7 * r for r in range(SIZE)]])))
        record(
            f"Allreduce {name} non-finite {np.dtype(dtype).name}",
            max_ratio(out, exact[name], comm.settings.abs),
            same_everywhere(out),
            exact=nan_everywhere,
        )


def check_mixed_shapes(comm: CompressedComm) -> None:
    """MPI only needs equal counts: ranks may hold the same values as differently shaped arrays."""
    flat = inputs("random", np.float64)
    x = flat.reshape(200, 200) if RANK % 2 == 0 else flat.reshape(400, 100) if RANK % 3 else flat
    everyone = np.stack([a.reshape(-1) for a in WORLD.allgather(x)]).astype(np.longdouble)
    out = np.empty_like(x)
    comm.Allreduce(x, out, MPI.SUM)
    record(
        "Allreduce SUM shapes differ",
        max_ratio(out, everyone.sum(axis=0), comm.settings.abs),
        same_everywhere(out.reshape(-1)),
    )


def check_nonblocking(comm: CompressedComm) -> None:
    """Requests work with Waitall and Test, and overlap blocking compressed collectives."""
    x = inputs("random", np.float64)
    everyone = np.stack(WORLD.allgather(x)).astype(np.longdouble)
    summed, maxed, blocking = np.empty_like(x), np.empty_like(x), np.empty_like(x)
    buf = x.copy() if RANK == 0 else np.zeros_like(x)
    requests = [comm.Iallreduce(x, summed, MPI.SUM), comm.Ibcast(buf, root=0), comm.Iallreduce(x, maxed, MPI.MAX)]
    comm.Allreduce(x, blocking, MPI.SUM)  # runs while the worker handles the queue
    MPI.Request.Waitall(requests)
    bound = comm.settings.abs
    record(
        "Iallreduce+Ibcast Waitall SUM",
        max_ratio(summed, everyone.sum(axis=0), bound),
        same_everywhere(summed),
        exact=bool(np.array_equal(summed, blocking)),
    )
    record("Iallreduce+Ibcast Waitall MAX", max_ratio(maxed, everyone.max(axis=0), bound), same_everywhere(maxed))
    record("Iallreduce+Ibcast Waitall Bcast", max_ratio(buf, everyone[0], bound), same_everywhere(buf, range(1, SIZE)))
    request = comm.Iallreduce(MPI.IN_PLACE, inplace := x.copy(), MPI.MIN)
    while not request.Test():
        pass
    record("Iallreduce Test loop MIN", max_ratio(inplace, everyone.min(axis=0), bound), same_everywhere(inplace))


def check_pass_through(comm: CompressedComm) -> None:
    """Results equal plain MPI bit for bit where nothing is compressed."""

    def compare(name, call, make):
        a, b = make(), make()
        before = calls(comm)
        call(comm, a)
        compressed = calls(comm) > before
        call(WORLD, b)
        record(
            f"pass-through {name}",
            exact=bool(np.array_equal(np.asarray(a).view(np.uint8), np.asarray(b).view(np.uint8))),
            compressed=not compressed,
        )  # True: plain MPI ran, as it should

    rng = np.random.default_rng(RANK)
    ints = rng.integers(-1000, 1000, 50_000).astype(np.int32)
    small = rng.standard_normal(100).astype(np.float32)
    big = (1 + rng.random(50_000)).astype(np.float64)
    compare("int32 SUM", lambda c, out: c.Allreduce(ints, out, MPI.SUM), lambda: np.empty_like(ints))
    compare("float32 below min_bytes", lambda c, out: c.Allreduce(small, out, MPI.SUM), lambda: np.empty_like(small))
    compare("float64 PROD", lambda c, out: c.Allreduce(big, out, MPI.PROD), lambda: np.empty_like(big))
    compare(
        "[buf, count, MPI.INT]",
        lambda c, out: c.Allreduce([ints, 1000, MPI.INT], [out, 1000, MPI.INT]),
        lambda: np.zeros_like(ints),
    )

    def bcast_vector(c, buf):
        vector = MPI.DOUBLE.Create_vector(buf.size // 2, 1, 2).Commit()
        if RANK == 0:
            buf[...] = big
        c.Bcast([buf, 1, vector], root=0)
        vector.Free()

    compare("Bcast derived datatype", bcast_vector, lambda: np.zeros_like(big))
    obj = comm.allreduce({"rank": RANK}, op=lambda a, b: {"rank": a["rank"] + b["rank"]})
    record("pass-through lowercase allreduce", exact=obj == {"rank": SIZE * (SIZE - 1) // 2})


def main() -> None:
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    # the test messages (80-320 KB) are below the default min_bytes, which is sized for speed
    abs_comm = CompressedComm(WORLD, abs=1e-3, min_bytes=MIN_BYTES, adapt=False)
    rel_comm = CompressedComm(WORLD, rel=1e-3, min_bytes=MIN_BYTES, adapt=False)
    for dtype in (np.float32, np.float64):
        name = np.dtype(dtype).name
        x = inputs("random", dtype)
        check_reductions(abs_comm, f"abs {name} random", x, lambda _: 1e-3)
        check_reductions(rel_comm, f"rel {name} random", x, lambda a: 1e-3 * global_range(a))
        check_rooted_reductions(abs_comm, f"abs {name} random", x, 1e-3)
        check_movement(abs_comm, f"abs {name} random", x, lambda _: 1e-3)
        check_nonfinite(abs_comm, dtype)
    for algorithm in ("ring", "doubling", "halving", "tree"):
        comm = CompressedComm(WORLD, abs=1e-2, algorithm=algorithm, min_bytes=MIN_BYTES, adapt=False)
        x = inputs("random", np.float32)
        check_reductions(comm, f"{algorithm} float32 random", x, lambda _: 1e-2, ops=("SUM", "MAX"))
        check_rooted_reductions(comm, f"{algorithm} float32 random", x, 1e-2)
        comm.Free()
    if data_dir is not None:
        field = inputs("real", np.float32, data_dir=data_dir)
        check_reductions(rel_comm, "rel float32 echam5", field, lambda a: 1e-3 * global_range(a))
        check_rooted_reductions(rel_comm, "rel float32 echam5", field, 1e-3 * global_range(field))
        check_movement(rel_comm, "rel float32 echam5", field, lambda a: 1e-3 * global_range(a))
    check_mixed_shapes(abs_comm)
    check_nonblocking(abs_comm)
    check_pass_through(abs_comm)
    if RANK == 0:
        print(json.dumps(RESULTS))


if __name__ == "__main__":
    main()
