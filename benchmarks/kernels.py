"""Per-stage kernel speed of the `sz` pipeline on the shared fields, in ns per value.

    .venv/bin/python benchmarks/kernels.py [--rel 1e-3] [--fields turb,echam]
    PYTHONPATH=<old checkout> .venv/bin/python benchmarks/kernels.py     # the same for an older version

For each field: the predictor the `sz` policy picks at the bound (its samples only), then the
minimum over ``--repeat`` runs of its encode and decode, and of Huffman's and rANS's encode
and decode of its codes. One thread. Each stage's output is checked against its input (the
decoders rebuild what the encoders had), so a faster kernel that decodes wrongly fails here
rather than looking fast. The whole codec beside SZ3 is `benchmarks/codecs.py`.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

import errbound
from errbound.codecs.sz.policy import choose
from errbound.stages.coders import huffman, rans

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def best_of(repeat: int, fn) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def load(path: Path) -> np.ndarray:
    shape = tuple(int(n) for n in path.stem.rsplit("_", 1)[1].split("x"))
    return np.fromfile(path, "<f4" if path.suffix == ".f32" else "<f8").reshape(shape)


def row(path: Path, rel: float, repeat: int) -> str:
    """One field's table row."""
    x = load(path)
    eb = rel * float(x.max() - x.min())
    choice = choose(x, eb)  # the samples' pick (a close call is not settled here)
    predictor = choice.predictor if hasattr(choice, "predictor") else choice[0]  # older: a tuple
    codes, unpred, recon = predictor.encode(x, eb)
    decoded = predictor.decode(codes, unpred, x.shape, x.dtype, eb)
    assert np.array_equal(decoded.view(np.uint8), recon.view(np.uint8)), path.name
    alphabet, center = 2 * predictor.radius, predictor.radius
    huff = huffman.encode(codes, alphabet)
    assert np.array_equal(huffman.decode(huff, codes.size, alphabet), codes), path.name
    coded = rans.encode(codes, alphabet, center)
    assert np.array_equal(rans.decode(coded, codes.size, alphabet, center), codes), path.name
    per_value = 1e9 / x.size
    per_code = 1e9 / max(codes.size, 1)
    cells = [
        best_of(repeat, lambda: predictor.encode(x, eb)) * per_value,
        best_of(repeat, lambda: predictor.decode(codes, unpred, x.shape, x.dtype, eb)) * per_value,
        best_of(repeat, lambda: huffman.encode(codes, alphabet)) * per_code,
        best_of(repeat, lambda: huffman.decode(huff, codes.size, alphabet)) * per_code,
        best_of(repeat, lambda: rans.encode(codes, alphabet, center)) * per_code,
        best_of(repeat, lambda: rans.decode(coded, codes.size, alphabet, center)) * per_code,
    ]
    kind = predictor.name
    if kind == "interpolation":
        kind += " cubic" if predictor.cubic else " linear"
    return f"| {path.stem} | {kind} | " + " | ".join(f"{c:.2f}" for c in cells) + " |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--rel", type=float, default=1e-3)
    ap.add_argument("--fields", default="", help="only fields whose name contains one of these (comma list)")
    ap.add_argument("--repeat", type=int, default=9)
    args = ap.parse_args()
    if not args.data.is_dir():
        sys.exit(f"no field folder at {args.data}")
    wanted = [w for w in args.fields.split(",") if w]
    paths = sorted(p for p in args.data.iterdir() if p.suffix in (".f32", ".f64") and "_" in p.stem)
    paths = [p for p in paths if not wanted or any(w in p.name for w in wanted)]
    print(
        f"# errbound {errbound.__version__} from {Path(errbound.__file__).parent}; rel {args.rel:g}; "
        f"one thread; min of {args.repeat}; load average {os.getloadavg()[0]:.2f}"
    )
    print("| field | predictor | encode | decode | Huffman encode | Huffman decode | rANS encode | rANS decode |")
    print("|---|---|---|---|---|---|---|---|")
    for path in paths:
        print(row(path, args.rel, args.repeat), flush=True)
    print("# ns per value (predictor) and per code (coders)")


if __name__ == "__main__":
    main()
