"""The first call of every codec in a fresh process: with an empty numba cache, and after
``errbound warmup`` (issue 14).

    .venv/bin/python benchmarks/cold_start.py [--codecs sz,fz,sperr,hlr,zfp] [--ranks 2,4]

For each codec, a new process with an empty cache times compress + decompress of a 64^3
float32 field, then (same process) of a 1-D float64 series of 2^20 values; then the same two
calls in a fresh process after ``errbound.warmup(codecs=[codec])`` filled another empty cache.
Every number is wall seconds of the first call pair, the import excluded. errbound's public API
only, so ``PYTHONPATH=<old checkout>`` measures an older version (whose ``warmup`` column
reads "-": it had none).

``--ranks 2,4`` (needs the mpich and mpi4py wheels): processes starting together on one empty
cache, in wall seconds from the common start to the last one done, import included, with the
kernels each compiled: N MPI ranks making a ``CompressedComm`` (the collectives' warm-up);
N processes on one codec path (`sz`, 64^3 float32); and two processes on different paths
(`sz` float32 3-D beside `fz` float64 2-D). ``--codecs ''`` skips the single-process table.
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


RANK = r"""
import json, sys, time
from numba.core import event
start = float(sys.argv[1])
while time.time() < start:
    time.sleep(0.002)
with event.install_recorder("numba:compile") as rec:
    if sys.argv[2] == "comm":
        from mpi4py import MPI
        from mpi_collectives import CompressedComm
        comm = CompressedComm(MPI.COMM_WORLD, rel=1e-3, adapt=False)
    else:
        import numpy as np, errbound
        codec, dtype, ndim = sys.argv[2], sys.argv[3], int(sys.argv[4])
        x = np.random.default_rng(0).standard_normal((64,) * ndim).cumsum(0).astype(dtype)
        errbound.decompress(errbound.compress(x, codec, rel=1e-3))
done = time.time() - start
ours = sum(1 for _, e in rec.buffer if e.is_start
           and e.data["dispatcher"].py_func.__module__.startswith(("errbound", "mpi_collectives")))
if sys.argv[2] == "comm":
    every = MPI.COMM_WORLD.gather((done, ours))
    comm.Free()
    if MPI.COMM_WORLD.Get_rank() == 0:
        print(json.dumps(every))
else:
    print(json.dumps([(done, ours)]))
"""


def together(runs: list[tuple[list[str], list[str]]], cache: str) -> list[tuple[float, int]]:
    """Start the (launcher prefix, arguments) runs at one moment (each process waits for a
    common start time after its imports); (seconds from the start to done, kernels
    compiled) per process."""
    import time

    env = {**os.environ, "NUMBA_CACHE_DIR": cache, "ERRBOUND_PROGRESS": "0"}
    start = str(time.time() + 6.0)
    with tempfile.TemporaryDirectory() as folder:
        script = os.path.join(folder, "rank.py")
        with open(script, "w") as f:
            f.write(RANK)
        procs = [
            subprocess.Popen(
                [*prefix, sys.executable, script, start, *args],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
                cwd=tempfile.gettempdir(),
            )
            for prefix, args in runs
        ]
        results = []
        for proc in procs:
            out, err = proc.communicate(timeout=1800)
            if proc.returncode or "Traceback" in err:
                raise RuntimeError(err[-2000:])
            results += json.loads(out.strip().splitlines()[-1])
    return results


def _ranks_table(counts: list[int]) -> None:
    mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
    print(
        "\n| processes starting together on an empty cache | seconds to the last one done | kernels compiled, per process |"
    )
    print("|---|---|---|")
    sz3d = ([], ["sz", "float32", "3"])
    cases = []
    for n in counts:
        if os.path.exists(mpiexec):
            cases.append((f"{n} MPI ranks: CompressedComm", [([mpiexec, "-n", str(n)], ["comm"])]))
        cases.append((f"{n} processes: sz 64^3 float32", [sz3d] * n))
    cases.append(("2 processes: sz float32 3-D, fz float64 2-D", [sz3d, ([], ["fz", "float64", "2"])]))
    for label, runs in cases:
        with tempfile.TemporaryDirectory() as cache:
            got = together(runs, cache)
        print(f"| {label} | {max(s for s, _ in got):.2f} | {', '.join(str(k) for _, k in got)} |", flush=True)


def _seconds(value) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codecs", default="sz,fz,sperr,hlr,zfp")
    ap.add_argument("--ranks", default="", help="process counts for the table of processes starting together")
    args = ap.parse_args(argv)
    print(f"# load average {os.getloadavg()[0]:.2f}; {os.cpu_count()} cpus")
    if args.codecs:
        print("# seconds of the first compress+decompress in a fresh process")
        print("| codec | cold 64^3 f32 | cold 1-D f64 | after warmup 64^3 f32 | after warmup 1-D f64 |")
        print("|---|---|---|---|---|")
    for codec in [c for c in args.codecs.split(",") if c]:
        with tempfile.TemporaryDirectory() as cold, tempfile.TemporaryDirectory() as warm:
            c3, c1 = child(codec, cold, False)
            warmed = child(codec, warm, True)
            w3, w1 = child(codec, warm, False) if warmed else (None, None)
        print(f"| {codec} | {c3:.2f} | {c1:.2f} | {_seconds(w3)} | {_seconds(w1)} |", flush=True)
    if args.ranks:
        _ranks_table([int(n) for n in args.ranks.split(",")])
    return 0


if __name__ == "__main__":
    sys.exit(main())
