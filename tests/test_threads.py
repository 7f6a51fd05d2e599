"""errbound called from several threads at once (issue 18, item 7).

Where neither OpenMP nor TBB is available numba falls back to its ``workqueue`` threading
layer, which aborts the whole process (exit 134) when two threads run ``parallel=True``
kernels at the same time. errbound has no such kernel: its parallel work runs as serial
``nogil`` kernels over independent tasks on Python threads (``errbound.jit.run_tasks``). The
test forces the layer with NUMBA_THREADING_LAYER and runs every codec from four threads (the
same calls aborted the process before the change, measured on numba 0.68), and checks that no
numba parallel kernel has come back."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = r"""
import sys, threading, numpy as np, errbound
x = np.random.default_rng(0).standard_normal((48, 48, 48)).cumsum(0).astype(np.float32)
codecs = ("fz", "hlr", "sperr", "sz", "zfp")
for codec in codecs:
    errbound.decompress(errbound.compress(x, codec, rel=1e-3))  # compiled before the threads start
errors = []
def work():
    try:
        for _ in range(6):
            for codec in codecs:
                y = errbound.decompress(errbound.compress(x, codec, rel=1e-3))
                assert np.max(np.abs(y.astype(np.float64) - x)) <= 1e-3 * (float(x.max()) - float(x.min()))
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=work) for _ in range(4)]
for t in threads: t.start()
for t in threads: t.join()
print(len(errors), errors[:1])
"""


def run(code: str, layer: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "NUMBA_THREADING_LAYER": layer}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600)


@pytest.mark.parametrize("layer", ["workqueue", "default"])
def test_every_codec_from_many_threads(layer):
    res = run(SCRIPT, layer)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[0] == "0", res.stdout


def test_errbound_has_no_numba_parallel_kernel():
    root = Path(__file__).resolve().parents[1] / "errbound"
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            assert not (isinstance(node, ast.keyword) and node.arg == "parallel"), f"{path}: parallel= kernel"
            assert not (isinstance(node, ast.Name) and node.id == "prange"), f"{path}: prange"


def test_sz_streams_from_threads_are_the_one_thread_streams():
    # sz reuses per-thread buffers for its temporaries: threads must never see each other's
    import concurrent.futures

    import numpy as np

    import errbound

    rng = np.random.default_rng(3)
    arrays = [
        np.cumsum(rng.standard_normal(shape), axis=-1).astype(dtype)
        for shape, dtype in [
            ((300,), np.float64),
            ((40, 50), np.float32),
            ((12, 20, 30), np.float32),
            ((5000,), np.float32),
        ]
    ]
    serial = [errbound.compress(a, "sz", rel=1e-3) for a in arrays]
    decoded = [errbound.decompress(b).tobytes() for b in serial]
    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        streams = list(pool.map(lambda a: errbound.compress(a, "sz", rel=1e-3), arrays * 6))
        values = list(pool.map(lambda b: errbound.decompress(b).tobytes(), serial * 6))
    assert streams == serial * 6
    assert values == decoded * 6


def test_release_frees_the_buffers_a_thread_kept():
    # the README's promise: sz keeps its temporaries per thread, and release() lets them go
    import numpy as np

    import errbound
    from errbound import scratch

    x = np.cumsum(np.random.default_rng(4).standard_normal((64, 64, 64)), axis=0).astype(np.float32)
    scratch.release()  # only this thread's buffers of these calls count
    blob = errbound.compress(x, "sz", rel=1e-3)
    errbound.decompress(blob)
    kept = scratch._local.__dict__.get("buffers", {})
    assert {"predictor-work", "predictor-codes", "sz-codes"} <= set(kept)
    assert sum(buf.nbytes for buf in kept.values()) >= 3 * x.nbytes
    scratch.release()
    assert not scratch._local.__dict__.get("buffers")
    assert np.array_equal(errbound.decompress(blob), errbound.decompress(errbound.compress(x, "sz", rel=1e-3)))
