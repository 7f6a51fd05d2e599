"""Reading a whole field chunk by chunk, as h5py or zarr do: `sz` decompress per chunk beside SZ3.

    .venv/bin/python benchmarks/dataset_reads.py [--kib 16,64,256] [--rel 1e-2,1e-3,1e-4]
        [--data ../shared/data] [--chunks 150] [--rounds 7]

Every field of ../shared/data (``NAME_AxB[xC].f32|f64``; a synthetic one without it) is cut
into chunks of about ``--kib`` KiB (2-D: square tiles; 3-D: 4-16 x 16-64 x 16-64 blocks; 1-D:
runs), the first ``--chunks`` of them in row-major order, each compressed with one absolute
bound for the whole dataset (rel x the field's range), as ``errbound h5 compress`` and the
filter in abs mode write them. A round decodes every chunk once; each number is the fastest of
``--rounds`` rounds over the chunk count, in microseconds a chunk, one thread, in this
process. Unlike ``chunks.py`` (one tile, called again and again) the chunks differ, as a
reader meets them. Uses errbound's public API only, so ``PYTHONPATH=<old checkout>``
measures an older version in the same way.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one thread, before numpy and numba load

import numpy as np  # noqa: E402

import errbound  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BLOCKS = [(16, 32, 32), (8, 32, 32), (4, 32, 32), (16, 64, 64), (8, 64, 64), (4, 16, 16), (16, 16, 16)]


def fields(data: Path):
    found = []
    for path in sorted([*data.glob("*_*.f32"), *data.glob("*_*.f64")]) if data.is_dir() else []:
        shape = tuple(int(n) for n in path.stem.rsplit("_", 1)[1].split("x"))
        found.append(
            (path.stem.rsplit("_", 1)[0], np.fromfile(path, {".f32": "<f4", ".f64": "<f8"}[path.suffix]).reshape(shape))
        )
    if not found:
        grids = np.meshgrid(np.linspace(0, 20, 512), np.linspace(0, 20, 512), indexing="ij")
        found.append(("synthetic", (np.sin(grids[0]) * np.cos(1.3 * grids[1])).astype(np.float32)))
    return found


def chunk_shape(field: np.ndarray, kib: int) -> tuple[int, ...] | None:
    values = kib * 1024 // field.itemsize
    if field.ndim == 1:
        shape = (values,)
    elif field.ndim == 2:
        shape = (int(round(values**0.5)),) * 2
    else:
        shape = next((b for b in BLOCKS if b[0] * b[1] * b[2] == values), None)
    if shape is None or len(shape) != field.ndim or any(c > n for c, n in zip(shape, field.shape, strict=True)):
        return None
    return shape


def sz3(eb: float):
    from pysz import sz, szAlgorithm, szConfig, szErrorBoundMode

    cfg = szConfig()
    cfg.errorBoundMode, cfg.absErrorBound = szErrorBoundMode.ABS, eb
    cfg.cmprAlgo, cfg.openmp = szAlgorithm.INTERP_LORENZO, False
    return (lambda x: sz.compress(x, cfg)[0]), (lambda c, x: sz.decompress(c, x.dtype, x.shape))


def fastest_us(calls, rounds: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t0 = time.perf_counter()
        for call in calls:
            call()
        best = min(best, time.perf_counter() - t0)
    return 1e6 * best / len(calls)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kib", default="16,64,256")
    ap.add_argument("--rel", default="1e-2,1e-3,1e-4")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--chunks", type=int, default=150)
    ap.add_argument("--rounds", type=int, default=7)
    args = ap.parse_args(argv)
    try:
        import pysz  # noqa: F401

        peer = True
    except ImportError:
        peer = False
    print(f"# errbound {errbound.__version__}; SZ3 (pysz INTERP_LORENZO) {'beside it' if peer else 'not installed'}")
    for kib in (int(k) for k in args.kib.split(",")):
        print(f"\n{kib} KiB chunks: us per chunk (fastest of {args.rounds} rounds)")
        print("| field | rel | chunks | SZ3 | sz | sz/SZ3 |\n|---|---|---|---|---|---|")
        ratios = []
        for name, field in fields(args.data):
            shape = chunk_shape(field, kib)
            if shape is None:
                continue
            corners = itertools.islice(
                itertools.product(*[range(0, n - c + 1, c) for n, c in zip(field.shape, shape, strict=True)]),
                args.chunks,
            )
            xs = [
                np.ascontiguousarray(field[tuple(slice(o, o + c) for o, c in zip(at, shape, strict=True))])
                for at in corners
            ]
            value_range = float(np.nanmax(field) - np.nanmin(field))
            for rel in (float(r) for r in args.rel.split(",")):
                eb = rel * value_range
                blobs = [errbound.compress(x, "sz", abs=eb) for x in xs]
                ours = fastest_us([lambda b=b: errbound.decompress(b) for b in blobs], args.rounds)
                line = f"| {name} | {rel:g} | {len(xs)} |"
                if peer:
                    compress, decompress = sz3(eb)
                    streams = [compress(x) for x in xs]
                    theirs = fastest_us(
                        [lambda c=c, x=x, d=decompress: d(c, x) for c, x in zip(streams, xs, strict=True)], args.rounds
                    )
                    ratios.append(ours / theirs)
                    line += f" {theirs:.0f} | {ours:.0f} | {ours / theirs:.2f} |"
                else:
                    line += f" - | {ours:.0f} | - |"
                print(line, flush=True)
        if ratios:
            print(f"geometric mean sz/SZ3 {float(np.exp(np.mean(np.log(ratios)))):.2f} over {len(ratios)} cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
