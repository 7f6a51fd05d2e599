"""errbound's main demo: compress a built-in field with every codec and show what came back.

    python examples/demo.py [--rel 1e-3]

Prints, per codec: compression ratio, PSNR, max error / bound (must be <= 1) and MB/s
both ways (single thread, wall clock, after one warm-up run that compiles the kernels).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

import errbound
from errbound.bounds import psnr
from errbound.datasets import demo_field


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rel", type=float, default=1e-3, help="bound relative to the value range")
    args = parser.parse_args()

    field = demo_field()
    bound = args.rel * float(field.max() - field.min())
    print(
        f"built-in field: {field.shape} {field.dtype}, {field.nbytes / 1e6:.1f} MB, "
        f"rel bound {args.rel:g} = abs {bound:.3g}"
    )
    print(f"{'codec':8s} {'ratio':>8s} {'PSNR dB':>8s} {'err/bound':>10s} {'comp MB/s':>10s} {'dec MB/s':>9s}")
    worst = 0.0
    for name in (n for n in errbound.codecs() if n != "raw"):
        errbound.decompress(errbound.compress(field, codec=name, rel=args.rel))  # JIT warm-up
        t0 = time.perf_counter()
        blob = errbound.compress(field, codec=name, rel=args.rel)
        t1 = time.perf_counter()
        restored = errbound.decompress(blob)
        t2 = time.perf_counter()
        err = float(np.max(np.abs(restored.astype(np.float64) - field)))
        worst = max(worst, err / bound)
        print(
            f"{name:8s} {field.nbytes / len(blob):8.2f} {psnr(field, restored):8.2f} {err / bound:10.4f} "
            f"{field.nbytes / (t1 - t0) / 1e6:10.0f} {field.nbytes / (t2 - t1) / 1e6:9.0f}"
        )
    print("bound held for every codec" if worst <= 1.0 else "BOUND VIOLATED")
    raise SystemExit(0 if worst <= 1.0 else 1)


if __name__ == "__main__":
    main()
