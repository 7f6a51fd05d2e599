"""errbound called from several threads at once (issue 18, item 7).

Where neither OpenMP nor TBB is available numba falls back to its ``workqueue`` threading
layer, which aborts the whole process (exit 134) when two threads run parallel kernels at
the same time. errbound's parallel kernels (``errbound.jit.kernel(parallel=True)``) run one at
a time under that layer. The test forces the layer with NUMBA_THREADING_LAYER and shows both
sides: without the guard the process aborts, with it every thread's results hold the bound."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

SCRIPT = r"""
import sys, threading, numpy as np, errbound, errbound.jit as jit
if sys.argv[1] == "unguarded":
    jit._serialize_parallel, jit._layer_checked = False, True
x = np.random.default_rng(0).standard_normal((48, 48, 48)).cumsum(0).astype(np.float32)
for codec in ("fz", "hlr", "sperr"):
    errbound.decompress(errbound.compress(x, codec, rel=1e-3))  # compiled before the threads start
errors = []
def work():
    try:
        for _ in range(8):
            for codec in ("fz", "hlr", "sperr"):
                y = errbound.decompress(errbound.compress(x, codec, rel=1e-3))
                assert np.max(np.abs(y.astype(np.float64) - x)) <= 1e-3 * (float(x.max()) - float(x.min()))
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
import numba
print(numba.threading_layer(), len(errors), errors[:1])
"""


def run(layer: str, mode: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
    return subprocess.run([sys.executable, "-c", SCRIPT, mode], capture_output=True, text=True, env=env, timeout=600)


def test_parallel_kernels_from_many_threads_under_workqueue():
    res = run("workqueue", "guarded")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[:2] == ["workqueue", "0"], res.stdout


def test_without_the_guard_workqueue_aborts():
    """The failure the guard prevents is real on this machine (not a hypothetical one)."""
    res = run("workqueue", "unguarded")
    assert res.returncode != 0 and "Concurrent access has been detected" in res.stderr


@pytest.mark.parametrize("layer", ["default"])
def test_parallel_kernels_from_many_threads_under_the_default_layer(layer):
    res = run(layer, "guarded")
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[1] == "0", res.stdout
