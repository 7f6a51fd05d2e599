"""The contract on real fields: max |result - exact| / bound, compression ratio, identical bytes.
(In the markdown table the error ratio is rounded down, so 0.99999 shows as 0.9999.)

Usage: mpiexec -n N python real_fields.py DATA_DIR [--rel 1e-3,1e-4] [--fields a,b] [--markdown]

Rank r contributes the field shifted by 11*r cells along its last axis (a different but
equally real input on every rank). Per field, bound and collective, rank 0 prints one JSON
list (or a markdown table with --markdown): ``err`` = max over ranks and points of
|result - exact| / bound (exact in extended precision), ``ratio`` = bytes the messages would
have taken as floats / bytes sent (all ranks, all hops), ``identical`` = every rank that must
hold the same result holds the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from pathlib import Path

import numpy as np
from mpi4py import MPI

from mpi_collectives import CompressedComm

WORLD = MPI.COMM_WORLD
RANK, SIZE = WORLD.Get_rank(), WORLD.Get_size()


def load(path: Path) -> np.ndarray:
    dims = tuple(int(n) for n in path.stem.rsplit("_", 1)[1].split("x"))
    return np.fromfile(path, "<f4" if path.suffix == ".f32" else "<f8").reshape(dims)


def same_everywhere(a: np.ndarray, ranks=None) -> bool:
    hashes = WORLD.allgather(hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest())
    return len({hashes[r] for r in (ranks if ranks is not None else range(SIZE))}) == 1


def worst(result: np.ndarray, exact: np.ndarray, bound: float) -> float:
    diff = np.abs(result.astype(np.longdouble) - exact.astype(np.longdouble))
    return WORLD.allreduce(float(diff.max() / bound), op=MPI.MAX)


def traffic(comm: CompressedComm, call) -> float:
    sent, raw = comm.stats.sent, comm.stats.raw
    call()
    sent = WORLD.allreduce(comm.stats.sent - sent)
    raw = WORLD.allreduce(comm.stats.raw - raw)
    return raw / sent if sent else float("nan")


def run_field(path: Path, rel: float) -> list[dict]:
    field = load(path)
    x = np.ascontiguousarray(np.roll(field, 11 * RANK, axis=-1))
    comm = CompressedComm(WORLD, rel=rel, min_bytes=64 * 1024, adapt=False)  # the 80 KB ICON field compresses too
    everyone = np.stack(WORLD.allgather(x)).astype(np.longdouble)
    lo = WORLD.allreduce(float(x.min()), op=MPI.MIN)
    hi = WORLD.allreduce(float(x.max()), op=MPI.MAX)
    bound = rel * (hi - lo)  # rel: the global range of all ranks' inputs
    rows = []

    def row(collective: str, err: float, ratio: float, identical: bool) -> None:
        rows.append(
            {
                "field": path.name,
                "dtype": str(x.dtype),
                "ranks": SIZE,
                "rel": rel,
                "collective": collective,
                "err": err,
                "ratio": ratio,
                "identical": identical,
            }
        )

    for name in ("SUM", "MAX"):
        out = np.empty_like(x)
        ratio = traffic(comm, lambda out=out, name=name: comm.Allreduce(x, out, getattr(MPI, name)))
        exact = everyone.sum(axis=0) if name == "SUM" else everyone.max(axis=0)
        row(f"Allreduce {name}", worst(out, exact, bound), ratio, same_everywhere(out))

    buf = field.copy() if RANK == 0 else np.zeros_like(field)
    ratio = traffic(comm, lambda: comm.Bcast(buf, root=0))
    root_bound = rel * float(field.max() - field.min())  # Bcast: the root's range
    row("Bcast", worst(buf, field, root_bound), ratio, same_everywhere(buf, range(1, SIZE)))

    out = np.empty((SIZE, *x.shape), x.dtype)
    ratio = traffic(comm, lambda: comm.Allgather(x, out))
    row("Allgather", worst(out, everyone.astype(x.dtype), bound), ratio, same_everywhere(out))
    comm.Free()
    return rows


def markdown(rows: list[dict]) -> str:
    lines = [
        "| field | dtype | ranks | rel | collective | max err / bound | ratio | identical |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['field']} | {r['dtype']} | {r['ranks']} | {r['rel']:g} | {r['collective']} | "
            f"{math.floor(r['err'] * 1e4) / 1e4:.4f} | {r['ratio']:.2f} | {'yes' if r['identical'] else 'NO'} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--rel", default="1e-3")
    parser.add_argument("--fields", default="", help="comma-separated file names (default: all)")
    parser.add_argument("--markdown", action="store_true")
    args = parser.parse_args()
    paths = sorted(p for p in args.data_dir.iterdir() if p.suffix in (".f32", ".f64"))
    if args.fields:
        wanted = args.fields.split(",")
        paths = [p for p in paths if p.name in wanted]
    rows = [r for p in paths for rel in map(float, args.rel.split(",")) for r in run_field(p, rel)]
    if RANK == 0:
        print(markdown(rows) if args.markdown else json.dumps(rows))


if __name__ == "__main__":
    main()
