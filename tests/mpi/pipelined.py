"""The pipelined algorithms against the unpipelined ones, under mpiexec.

Usage: mpiexec -n N python pipelined.py [DATA_DIR]

Every collective runs with tiny chunks (``segment_bytes`` of a few KiB: dozens of chunks per
block) and with pipelining off (one chunk per message), and for Bcast with every tree. Rank 0
prints one JSON list with, per case: ``err`` (max |result - exact| / bound over all ranks),
``identical`` (the ranks that must agree hold the same bytes), ``same`` (the result equals
the unpipelined one bit for bit, as the contract requires for reductions and the fz codec)
and ``chunks`` (the pipelined run really cut the message: more sends than the unpipelined).
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
TINY, OFF = 4096, 1 << 40


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).view(np.uint8)).hexdigest()


def same_everywhere(a: np.ndarray, ranks=None) -> bool:
    hashes = WORLD.allgather(digest(a))
    return len({hashes[r] for r in (ranks if ranks is not None else range(SIZE))}) == 1


def ratio(result, exact, bound: float) -> float:
    result = np.asarray(result, np.longdouble).reshape(-1)
    exact = np.asarray(exact, np.longdouble).reshape(-1)
    finite = np.isfinite(exact)
    if not np.array_equal(np.isnan(result), np.isnan(exact)) or not np.array_equal(
        result[~finite & ~np.isnan(exact)], exact[~finite & ~np.isnan(exact)]
    ):
        return float("inf")
    return float(np.max(np.abs(result[finite] - exact[finite]), initial=0.0) / bound)


def record(name: str, err: float, identical: bool, same: bool, chunks: bool = True) -> None:
    views = WORLD.gather((err, identical, same, chunks))
    if RANK == 0:
        RESULTS.append(
            {
                "case": name,
                "ranks": SIZE,
                "err": max(v[0] for v in views),
                "identical": all(v[1] for v in views),
                "same": all(v[2] for v in views),
                "chunks": any(v[3] for v in views),
            }
        )


def comms(**settings) -> tuple[CompressedComm, CompressedComm]:
    """(pipelined with tiny chunks, unpipelined) communicators with the same bound."""
    return (
        CompressedComm(WORLD, segment_bytes=TINY, min_bytes=0, **settings, adapt=False),
        CompressedComm(WORLD, segment_bytes=OFF, min_bytes=0, **settings, adapt=False),
    )


def both(fast: CompressedComm, slow: CompressedComm, call) -> tuple[np.ndarray, np.ndarray, bool]:
    """call(comm) on both; (fast result, slow result, whether fast sent more messages)."""
    before = (fast.stats.messages, slow.stats.messages)
    a, b = call(fast), call(slow)
    more = fast.stats.messages - before[0] > slow.stats.messages - before[1]
    return a, b, WORLD.allreduce(int(more), MPI.MAX) > 0


def inputs(kind: str, dtype, data_dir: Path | None = None) -> np.ndarray:
    """A different smooth 2-D field on each rank (300 KB as float32: above the doubling limit), or
    a real 3-D field."""
    rng = np.random.default_rng(99 + RANK)
    if kind == "real":
        field = np.fromfile(data_dir / "echam5_temperature_17x96x192.f32", "<f4").reshape(17, 96, 192)
        return np.roll(field, 5 * RANK, axis=1).astype(dtype)
    walk = np.cumsum(rng.standard_normal((300, 250)), axis=1) + np.linspace(0, 20 * (RANK + 1), 300)[:, None]
    return walk.astype(dtype)


def check_reductions(label: str, x: np.ndarray, fast: CompressedComm, slow: CompressedComm, bound: float) -> None:
    everyone = np.stack(WORLD.allgather(x)).astype(np.longdouble)
    results = {}
    for name, exact in (("SUM", everyone.sum(0)), ("MAX", everyone.max(0))):
        op = getattr(MPI, name)
        a, b, more = both(fast, slow, lambda c, op=op: (c.Allreduce(x, out := np.empty_like(x), op), out)[1])
        record(f"Allreduce {name} {label}", ratio(a, exact, bound), same_everywhere(a), digest(a) == digest(b), more)
        results[name] = b
    reference = results["SUM"]
    inplace = x.copy()
    fast.Allreduce(MPI.IN_PLACE, inplace, MPI.SUM)
    record(
        f"Allreduce IN_PLACE SUM {label}",
        ratio(inplace, everyone.sum(0), bound),
        same_everywhere(inplace),
        digest(inplace) == digest(reference),
    )
    fast.Iallreduce(x, nb := np.empty_like(x), MPI.SUM).Wait()
    record(
        f"Iallreduce SUM {label}",
        ratio(nb, everyone.sum(0), bound),
        same_everywhere(nb),
        digest(nb) == digest(reference),
    )

    root = SIZE - 1
    a, b, more = both(fast, slow, lambda c: (c.Reduce(x, out := np.full_like(x, -1), MPI.SUM, root=root), out)[1])
    err = ratio(a, everyone.sum(0), bound) if RANK == root else 0.0
    untouched = RANK == root or bool(np.all(a == -1))
    record(
        f"Reduce SUM {label}",
        err,
        untouched,
        digest(a) == digest(b) and (RANK != root or digest(a) == digest(reference)),
        more,
    )

    blocks = np.ascontiguousarray(np.resize(x, (SIZE, x.size // SIZE)))
    exact = np.stack(WORLD.allgather(blocks)).astype(np.longdouble).sum(0)[RANK]
    a, b, more = both(
        fast,
        slow,
        lambda c: (c.Reduce_scatter_block(blocks, out := np.empty(blocks.shape[1], x.dtype), MPI.SUM), out)[1],
    )
    full = np.empty_like(blocks)
    slow.Allreduce(blocks, full, MPI.SUM)
    record(
        f"Reduce_scatter_block SUM {label}",
        ratio(a, exact, bound),
        digest(a) == digest(full[RANK]),
        digest(a) == digest(b),
        more,
    )
    inplace = blocks.copy()
    fast.Reduce_scatter_block(MPI.IN_PLACE, inplace, MPI.SUM)
    record(
        f"Reduce_scatter_block IN_PLACE SUM {label}",
        ratio(inplace[0], exact, bound),
        digest(inplace[0]) == digest(full[RANK]),
        digest(inplace[0]) == digest(b),
    )


def check_movement(
    label: str,
    x: np.ndarray,
    fast: CompressedComm,
    slow: CompressedComm,
    bcast_bound: float,
    gather_bound: float,
    exact_codec: bool = True,
) -> None:
    """exact_codec: fz, whose decoded values do not depend on the chunking."""
    root = SIZE - 1
    original = WORLD.bcast(x, root=root)
    receivers = [r for r in range(SIZE) if r != root]
    reference = x.copy() if RANK == root else np.zeros_like(x)
    slow.Bcast(reference, root=root)
    for algorithm in ("chain", "binary", "binomial"):
        comm = CompressedComm(WORLD, segment_bytes=TINY, bcast_algorithm=algorithm, **settings_of(fast), adapt=False)
        buf = x.copy() if RANK == root else np.zeros_like(x)
        comm.Bcast(buf, root=root)
        pipelined = algorithm == "binomial" or WORLD.allreduce(comm.stats.messages, MPI.MAX) > 2
        record(
            f"Bcast {algorithm} {label}",
            ratio(buf, original, bcast_bound) if RANK != root else 0.0,
            same_everywhere(buf, receivers) and (RANK != root or np.array_equal(buf, x)),
            RANK == root or not exact_codec or digest(buf) == digest(reference),
            pipelined,
        )
        buf = x.copy() if RANK == root else np.zeros_like(x)
        comm.Bcast(buf, root=root, consistent=True)
        record(
            f"Bcast {algorithm} consistent {label}",
            ratio(buf, original, bcast_bound),
            same_everywhere(buf),
            RANK == root or not exact_codec or digest(buf) == digest(reference),
        )
        buf = x.copy() if RANK == root else np.zeros_like(x)
        comm.Ibcast(buf, root=root).Wait()  # the same pipeline on the worker thread
        record(
            f"Ibcast {algorithm} {label}",
            ratio(buf, original, bcast_bound) if RANK != root else 0.0,
            same_everywhere(buf, receivers),
            RANK == root or not exact_codec or digest(buf) == digest(reference),
        )
        comm.Free()

    everyone = np.stack(WORLD.allgather(x))
    a, b, more = both(fast, slow, lambda c: (c.Allgather(x, out := np.empty_like(everyone)), out)[1])
    record(
        f"Allgather {label}",
        ratio(a, everyone, gather_bound),
        same_everywhere(a),
        not exact_codec or digest(a) == digest(b),
        more,
    )
    inplace = np.zeros_like(everyone)
    inplace[RANK] = x
    fast.Allgather(MPI.IN_PLACE, inplace)
    record(
        f"Allgather IN_PLACE {label}",
        ratio(inplace, everyone, gather_bound),
        same_everywhere(inplace),
        not exact_codec or digest(inplace) == digest(a),
    )


def settings_of(comm: CompressedComm) -> dict:
    s = comm.settings
    return {"abs": s.abs, "rel": s.rel, "codec": s.codec, "min_bytes": s.min_bytes}


def check_nonfinite(fast: CompressedComm, slow: CompressedComm) -> None:
    x = inputs("walk", np.float64)
    flat = x.reshape(-1)
    flat[RANK * 1000 + 7] = np.nan
    flat[30_000 + RANK] = np.inf
    flat[50_000] = -np.inf if RANK == 0 else 1.0
    everyone = np.stack(WORLD.allgather(x)).astype(np.longdouble)
    with np.errstate(invalid="ignore"):
        exact = everyone.sum(0)
    a, b, more = both(fast, slow, lambda c: (c.Allreduce(x, out := np.empty_like(x), MPI.SUM), out)[1])
    record(
        "Allreduce SUM non-finite", ratio(a, exact, fast.settings.abs), same_everywhere(a), digest(a) == digest(b), more
    )


def check_mixed_shapes(fast: CompressedComm, slow: CompressedComm) -> None:
    """Ranks that see the same count as different shapes cut the same (flat) chunks."""
    flat = inputs("walk", np.float32).reshape(-1)
    x = flat.reshape(300, 250) if RANK % 2 == 0 else flat.reshape(600, 125) if RANK % 3 else flat
    everyone = np.stack([v.reshape(-1) for v in WORLD.allgather(x)]).astype(np.longdouble)
    a, b, more = both(fast, slow, lambda c: (c.Allreduce(x, out := np.empty_like(x), MPI.SUM), out)[1])
    record(
        "Allreduce SUM shapes differ",
        ratio(a, everyone.sum(0), fast.settings.abs),
        same_everywhere(a.reshape(-1)),
        digest(a) == digest(b),
        more,
    )
    everyone = np.stack([v.reshape(-1) for v in WORLD.allgather(x)])
    a, b, more = both(fast, slow, lambda c: (c.Allgather(x, out := np.empty((SIZE, x.size), x.dtype)), out)[1])
    record(
        "Allgather shapes differ",
        ratio(a, everyone, fast.settings.abs),
        same_everywhere(a),
        digest(a) == digest(b),
        more,
    )


def check_adaptive() -> None:
    """adapt=True: on one node plain MPI from the first call (nothing compressed, nothing
    explored); on several nodes the cost model's choice from the first call on. Either way
    every result within the bound, the same on every rank, and the same path everywhere."""
    comm = CompressedComm(WORLD, abs=1e-2, adapt=True, min_bytes=0)
    x = inputs("walk", np.float32)
    exact = np.stack(WORLD.allgather(x)).astype(np.longdouble).sum(0)
    compressed, err, identical = [], 0.0, True
    for call in range(8):
        before = comm.stats.calls
        out = np.empty_like(x)
        comm.Allreduce(x, out, MPI.SUM)
        if comm.stats.calls > before:
            compressed.append(call)
        err = max(err, ratio(out, exact, 1e-2))
        identical = identical and same_everywhere(out)
    alike = all(c == compressed for c in WORLD.allgather(compressed))
    expected = not compressed if comm.nodes.single_node else comm.compressing
    record("adapt: plain MPI on one node, the same path everywhere", err, identical, alike and expected)
    comm.Free()


def main() -> None:
    data_dir = Path(sys.argv[1]) if len(sys.argv) > 1 else None
    for dtype in (np.float32, np.float64):
        x = inputs("walk", dtype)
        fast, slow = comms(abs=1e-2)
        check_reductions(f"abs {np.dtype(dtype).name}", x, fast, slow, 1e-2)
        check_movement(f"abs {np.dtype(dtype).name}", x, fast, slow, 1e-2, 1e-2)
        if dtype == np.float64:
            check_nonfinite(fast, slow)
            check_mixed_shapes(fast, slow)
        fast.Free()
        slow.Free()
    fast, slow = comms(abs=0.05, codec="sz")
    check_movement("sz codec", inputs("walk", np.float32), fast, slow, 0.05, 0.05, exact_codec=False)
    fast.Free()
    slow.Free()
    if data_dir is not None:
        field = inputs("real", np.float32, data_dir)
        fast, slow = comms(rel=1e-3)
        lo, hi = WORLD.allreduce(float(field.min()), MPI.MIN), WORLD.allreduce(float(field.max()), MPI.MAX)
        root_range = WORLD.bcast(float(field.max()) - float(field.min()), root=SIZE - 1)
        check_reductions("rel echam5", field, fast, slow, 1e-3 * (hi - lo))
        check_movement("rel echam5", field, fast, slow, 1e-3 * root_range, 1e-3 * (hi - lo))
        fast.Free()
        slow.Free()
    check_adaptive()
    if RANK == 0:
        print(json.dumps(RESULTS))


if __name__ == "__main__":
    main()
