"""Ratio and time of every codec on HDF5-style slab chunks of the 3-D fields, beside SZ3 and zfpy.

    .venv/bin/python benchmarks/slabs.py [--slabs 1,2,4] [--rel 1e-2,1e-3,1e-4] [--codecs sz,zfp,...]

A file of a 3-D field written one time step (or level) at a time is chunked as slabs of k
layers, (k, ny, nx): one codec call per chunk, each chunk an array with a thin first axis. Per
field of ../shared/data (the 3-D ones), slab thickness k and relative bound (of the whole
field's range, as an absolute bound for every chunk), every codec compresses every chunk of
the field; printed: the field's bytes over the sum of the chunks' stream bytes, and the
compress time summed over the chunks (one thread, one pass after one untimed chunk). The
last lines give each codec's geometric-mean ratio per k over fields and bounds.

Peers: SZ3 (pysz, INTERP_LORENZO, ABS) and zfpy (fixed accuracy, tolerance = the bound), on
the same chunks. Uses errbound's public API only, so ``PYTHONPATH=<old checkout>`` measures an
older version the same way.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one thread, before numpy and numba load

import numpy as np  # noqa: E402

import errbound  # noqa: E402

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


def peer_compress(name: str):
    """A function (chunk, eb) -> stream bytes for a peer, or None where it is not installed."""
    try:
        if name == "SZ3":
            from pysz import sz, szAlgorithm, szConfig, szErrorBoundMode

            def run(x, eb):
                cfg = szConfig()
                cfg.errorBoundMode, cfg.absErrorBound = szErrorBoundMode.ABS, eb
                cfg.cmprAlgo, cfg.openmp = szAlgorithm.INTERP_LORENZO, False
                return int(sz.compress(x, cfg)[0].nbytes)

            return run
        import zfpy

        return lambda x, eb: len(zfpy.compress_numpy(x, tolerance=eb))
    except ImportError:
        return None


def ours(codec: str):
    return lambda x, eb: len(errbound.compress(x, codec, abs=eb))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slabs", default="1,2,4", help="slab thicknesses k (layers per chunk)")
    ap.add_argument("--rel", default="1e-2,1e-3,1e-4")
    ap.add_argument("--codecs", default="sz,zfp,fz,sperr,hlr,auto")
    ap.add_argument("--data", type=Path, default=DATA)
    args = ap.parse_args(argv)
    slabs = [int(k) for k in args.slabs.split(",")]
    rels = [float(r) for r in args.rel.split(",")]
    names = [c for c in args.codecs.split(",") if c]
    runners = {c: ours(c) for c in names}
    for peer in ("SZ3", "zfpy"):
        run = peer_compress(peer)
        if run is not None:
            runners[peer] = run
    print(
        f"# errbound {errbound.__version__} from {Path(errbound.__file__).parent}; slab chunks (k, ny, nx); "
        f"ratio (compress s summed over chunks); one thread; load average {os.getloadavg()[0]:.2f}"
    )
    logs: dict[tuple[str, int], list[float]] = {}
    for name, field in fields(args.data):
        print(f"\n## {name} {field.shape}\n")
        print("| k | rel | " + " | ".join(runners) + " |")
        print("|---|---|" + "---|" * len(runners))
        span = float(field.max()) - float(field.min())
        for k in slabs:
            chunks = [np.ascontiguousarray(field[i : i + k]) for i in range(0, field.shape[0], k)]
            for rel in rels:
                eb = rel * span
                cells = []
                for label, run in runners.items():
                    run(chunks[0], eb)  # untimed: first-call costs are cold_start.py's business
                    t0 = time.perf_counter()
                    total = sum(run(c, eb) for c in chunks)
                    seconds = time.perf_counter() - t0
                    ratio = field.nbytes / total
                    logs.setdefault((label, k), []).append(math.log(ratio))
                    cells.append(f"{ratio:.2f} ({seconds:.2f})")
                print(f"| {k} | {rel:g} | " + " | ".join(cells) + " |")
    print("\n## geometric-mean ratio over fields and bounds\n")
    print("| k | " + " | ".join(runners) + " |")
    print("|---|" + "---|" * len(runners))
    for k in slabs:
        print(f"| {k} | " + " | ".join(f"{math.exp(np.mean(logs[(c, k)])):.2f}" for c in runners) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
