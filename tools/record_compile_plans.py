"""Record which kernels each codec path compiles, in the order it compiles them, into
``errbound/compile_plans.json`` (read by ``errbound.compile_helper``).

    .venv/bin/python tools/record_compile_plans.py [--codecs sz,fz,sperr,hlr,zfp]

For every codec, dtype and number of dimensions, a fresh process with an empty numba cache
compresses a field of that kind (the encode path), and another fresh process with an empty
cache decompresses the stream (the decode path). Each records the top-level kernel compiles
(kernel, signature, seconds) as numba announces them. Rerun it after a change to the kernels
or to the policy's choices: a stale plan costs nothing but the helper's gain
(``tests/test_compile_helper.py`` checks one path against a fresh recording).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "errbound" / "compile_plans.json"

RECORD = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import numpy as np
from numba.core import event
import errbound

codec, dtype, ndim, blob_path, direction = sys.argv[2], sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
plan, depth, starts = [], [0], []

class Recorder(event.Listener):
    def on_start(self, ev):
        if depth[0] == 0:
            starts.append(time.perf_counter())
            f = ev.data["dispatcher"].py_func
            plan.append([f.__module__, f.__qualname__, str(tuple(ev.data["args"])), 0.0])
        depth[0] += 1

    def on_end(self, ev):
        depth[0] -= 1
        if depth[0] == 0:
            plan[-1][3] = round(time.perf_counter() - starts.pop(), 2)

def field(ndim, dtype):
    rng = np.random.default_rng(0)
    if ndim == 1:  # a smooth series with noise (cold_start.py's)
        x = np.sin(np.linspace(0, 300, 1 << 18)) + 1e-3 * rng.standard_normal(1 << 18)
    else:
        shape = {2: (512, 512), 3: (64, 64, 64), 4: (16, 16, 16, 16)}[ndim]
        x = rng.standard_normal(shape).cumsum(0).cumsum(1)
    return x.astype(dtype)

event.register("numba:compile", Recorder())
if direction == "encode":
    blob = errbound.compress(field(ndim, dtype), codec, rel=1e-3)
    open(blob_path, "wb").write(blob)
else:
    errbound.decompress(open(blob_path, "rb").read())
plan = [p for p in plan if p[0].startswith("errbound.")]
print(json.dumps(plan))
"""


def record(codec: str, dtype: str, ndim: int, blob: Path, direction: str) -> list:
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache, "ERRBOUND_PROGRESS": "0", "ERRBOUND_COMPILE_HELPER": "0"}
        res = subprocess.run(
            [sys.executable, "-c", RECORD, str(ROOT), codec, dtype, str(ndim), str(blob), direction],
            capture_output=True,
            text=True,
            env=env,
            cwd=tempfile.gettempdir(),
            timeout=1800,
        )
    if res.returncode != 0:
        raise SystemExit(f"{codec} {dtype} {ndim}-D {direction} failed:\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codecs", default="sz,fz,sperr,hlr,zfp")
    args = parser.parse_args()
    import numba

    plans = {}
    for codec in args.codecs.split(","):
        for dtype, char in (("float32", "f"), ("float64", "d")):
            for ndim in (1, 2, 3, 4):
                t0 = time.perf_counter()
                with tempfile.TemporaryDirectory() as folder:
                    blob = Path(folder) / "stream.eb"
                    for direction in ("encode", "decode"):
                        plans[f"{direction} {codec} {char} {ndim}"] = record(codec, dtype, ndim, blob, direction)
                seconds = sum(p[3] for p in plans[f"encode {codec} {char} {ndim}"])
                print(f"{codec} {dtype} {ndim}-D: encode compiles {seconds:.1f} s ({time.perf_counter() - t0:.0f} s)")
    document = {
        "about": "kernels each codec path compiles, in order: written by tools/record_compile_plans.py, "
        "read by errbound.compile_helper",
        "numba": numba.__version__,
        "plans": plans,
    }
    OUT.write_text(json.dumps(document, indent=0, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
