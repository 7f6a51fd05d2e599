"""Ratio and time of every codec on slab chunks of the 3-D fields, beside SZ3 and zfpy.

    .venv/bin/python benchmarks/slabs.py [--route api|hdf5] [--slabs 1,2,4] [--rel 1e-2,1e-3,1e-4]
        [--codecs sz,zfp,...]

A 3-D field written one time step (or level) at a time is chunked as slabs of k layers,
(k, ny, nx): one codec call per chunk, each chunk an array with a thin first axis. Per field
of ../shared/data (the 3-D ones), slab thickness k and relative bound (of the whole field's
range, as an absolute bound for every chunk), every codec compresses every chunk of the
field; printed: the field's bytes over the chunks' stored bytes, and the time to compress the
field (one thread, one pass after one untimed pass over the first chunk). The last lines give
each codec's geometric-mean ratio per k over fields and bounds.

Routes: ``api`` (default) calls ``errbound.compress`` on each slab as it is, as a program or
numcodecs (zarr 2) does; ``hdf5`` writes the field into an in-memory HDF5 file with chunks
(k, ny, nx) through errbound's filter (which drops axes of size 1 before the codec, as the
zarr 3 codecs do) and counts the dataset's storage size. Peers on the same chunks: SZ3
and zfpy as ``errbound.cli.measure`` drives them for every benchmark (hdf5plugin's SZ3 and
Zfp filters on the hdf5 route, ZFP with the bound as its accuracy). Uses errbound's public API only, so
``PYTHONPATH=<old checkout>`` measures an older version the same way.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one thread, before numpy and numba load

import numpy as np  # noqa: E402

import errbound  # noqa: E402
from errbound.cli.measure import SZ3, ZFP, Ours, geomean  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def fields(data: Path):
    """(name, array) of every 3-D field in ``data``; a synthetic one where there is none."""
    found = []
    for path in sorted(data.glob("*_*x*x*.f32")) if data.is_dir() else []:
        shape = tuple(int(n) for n in path.stem.rsplit("_", 1)[1].split("x"))
        found.append((path.stem.rsplit("_", 1)[0], np.fromfile(path, "<f4").reshape(shape)))
    if not found:
        grids = np.meshgrid(*[np.linspace(0, 6, n) for n in (32, 64, 96)], indexing="ij")
        rng = np.random.default_rng(0)
        x = sum(np.sin((1 + k) * g) for k, g in enumerate(grids)) + 0.01 * rng.standard_normal((32, 64, 96))
        found.append(("synthetic", x.astype(np.float32)))
    return found


def per_slab(candidate):
    """(field, k, eb) -> stored bytes of a measure.Candidate's stream of every slab."""

    def field_bytes(field, k, eb):
        candidate.setup(eb)
        slabs = (np.ascontiguousarray(field[i : i + k]) for i in range(0, field.shape[0], k))
        return sum(candidate.nbytes(candidate.compress(slab, eb)) for slab in slabs)

    return field_bytes


def hdf5_dataset(filter_of):
    """(field, k, eb) -> storage bytes of the field in an in-memory HDF5 file, chunks (k, ny, nx),
    with the filter keywords ``filter_of(eb)``."""
    import h5py

    def field_bytes(field, k, eb):
        with h5py.File(f"slabs-{time.perf_counter_ns()}.h5", "w", driver="core", backing_store=False) as f:
            chunks = (min(k, field.shape[0]),) + field.shape[1:]
            return f.create_dataset("x", data=field, chunks=chunks, **filter_of(eb)).id.get_storage_size()

    return field_bytes


def runners_for(route: str, codecs: list[str]) -> dict:
    if route == "api":
        probe = np.zeros((4, 4, 4), np.float32)
        peers = {"SZ3": SZ3(), "zfpy": ZFP()}
        runners = {c: per_slab(Ours(c)) for c in codecs}
        runners.update({label: per_slab(peer) for label, peer in peers.items() if peer.unsupported(probe) is None})
        return runners
    from errbound import hdf5

    runners = {c: hdf5_dataset(lambda eb, c=c: hdf5.filter(codec=c, abs=eb)) for c in codecs}
    try:
        import hdf5plugin
    except ImportError:
        return runners
    runners["SZ3"] = hdf5_dataset(lambda eb: {"compression": hdf5plugin.SZ3(absolute=eb)})
    runners["ZFP"] = hdf5_dataset(lambda eb: {"compression": hdf5plugin.Zfp(accuracy=eb)})
    return runners


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--route", choices=("api", "hdf5"), default="api")
    ap.add_argument("--slabs", default="1,2,4", help="slab thicknesses k (layers per chunk)")
    ap.add_argument("--rel", default="1e-2,1e-3,1e-4")
    ap.add_argument("--codecs", default="sz,zfp,fz,sperr,hlr,auto")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    slabs = [int(k) for k in args.slabs.split(",")]
    rels = [float(r) for r in args.rel.split(",")]
    names = [c for c in args.codecs.split(",") if c]
    runners = runners_for(args.route, names)
    print(
        f"# errbound {errbound.__version__} from {Path(errbound.__file__).parent}; route {args.route}; "
        "slab chunks (k, ny, nx); "
        f"ratio (seconds to compress the field); one thread; load average {os.getloadavg()[0]:.2f}"
    )
    ratios: dict[tuple[str, int], list[float]] = {}
    for name, field in fields(args.data):
        print(f"\n## {name} {field.shape}\n")
        print("| k | rel | " + " | ".join(runners) + " |")
        print("|---|---|" + "---|" * len(runners))
        span = float(field.max()) - float(field.min())
        for k in slabs:
            for rel in rels:
                eb = rel * span
                cells = []
                for label, field_bytes in runners.items():
                    field_bytes(field[: min(k, field.shape[0])], k, eb)  # untimed: first calls compile
                    t0 = time.perf_counter()
                    ratio = field.nbytes / field_bytes(field, k, eb)
                    seconds = time.perf_counter() - t0
                    ratios.setdefault((label, k), []).append(ratio)
                    cells.append(f"{ratio:.2f} ({seconds:.2f})")
                print(f"| {k} | {rel:g} | " + " | ".join(cells) + " |")
    print("\n## geometric-mean ratio over fields and bounds\n")
    print("| k | " + " | ".join(runners) + " |")
    print("|---|" + "---|" * len(runners))
    for k in slabs:
        print(f"| {k} | " + " | ".join(f"{geomean(ratios[(c, k)]):.2f}" for c in runners) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
