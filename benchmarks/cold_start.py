"""The first call of every codec in a fresh process: with an empty numba cache, and after
``errbound warmup`` (issue 14).

    .venv/bin/python benchmarks/cold_start.py [--codecs sz,fz,sperr,hlr,zfp] [--repeat 1]

For each codec, a new process with an empty cache times compress + decompress of a 64^3
float32 field, then (same process) of a 1-D float64 series of 2^20 values; then the same two
calls in a fresh process after ``errbound.warmup(codecs=[codec])`` filled another empty cache.
Every number is wall seconds of the first call pair, the import excluded. errbound's public API
only, so ``PYTHONPATH=<old checkout>`` measures an older version (whose ``warmup`` column
reads "-": it had none).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

CHILD = r"""
import json, sys, time
import numpy as np
import errbound
codec, warm = sys.argv[1], sys.argv[2] == "1"
if warm:
    if not hasattr(errbound, "warmup"):
        print(json.dumps(None)); sys.exit()
    errbound.warmup([codec])
    print(json.dumps("warmed")); sys.exit()
rng = np.random.default_rng(0)
x3 = rng.standard_normal((64, 64, 64)).cumsum(0).cumsum(1).astype(np.float32)
x1 = np.sin(np.linspace(0, 300, 1 << 20)) + 1e-3 * rng.standard_normal(1 << 20)
out = []
for x in (x3, x1):
    t = time.perf_counter()
    y = errbound.decompress(errbound.compress(x, codec, rel=1e-3))
    out.append(time.perf_counter() - t)
    assert np.max(np.abs(y.astype(np.float64) - x)) <= 1e-3 * (float(x.max()) - float(x.min()))
print(json.dumps(out))
"""


def child(codec: str, cache: str, warm: bool):
    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "ERRBOUND_PROGRESS": "0"}
    res = subprocess.run(
        [sys.executable, "-c", CHILD, codec, "1" if warm else "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tempfile.gettempdir(),
        timeout=1800,
    )
    if res.returncode:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codecs", default="sz,fz,sperr,hlr,zfp")
    args = ap.parse_args(argv)
    print(f"# load average {os.getloadavg()[0]:.2f}; seconds of the first compress+decompress in a fresh process")
    print("| codec | cold 64^3 f32 | cold 1-D f64 | after warmup 64^3 f32 | after warmup 1-D f64 |")
    print("|---|---|---|---|---|")
    for codec in args.codecs.split(","):
        with tempfile.TemporaryDirectory() as cold, tempfile.TemporaryDirectory() as warm:
            c3, c1 = child(codec, cold, False)
            warmed = child(codec, warm, True)
            w3, w1 = child(codec, warm, False) if warmed else (None, None)
        print(f"| {codec} | {c3:.2f} | {c1:.2f} | {_seconds(w3)} | {_seconds(w1)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
