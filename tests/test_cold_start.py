"""The first call on a fresh machine (issue 14): what compiles, where the cache goes, what the
user is told, and what many processes starting together do.

Every test runs fresh processes against an empty numba cache of its own, and counts numba's
compile events (``numba.core.event``) rather than timing anything."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

import errbound

PACKAGE = Path(errbound.__file__).resolve().parent

# compress + decompress with fz (float32 3-D) in a fresh process; prints the number of kernel
# compilations and where the cache went
USE = r"""
import json, sys, numpy as np
from numba.core import event
import errbound, errbound.compiling as compiling
def ours(rec):  # errbound's kernels (numba's own helpers recompile in every process that compiles)
    return sum(1 for _, e in rec.buffer if e.is_start and e.data["dispatcher"].py_func.__module__.startswith("errbound"))
x = np.random.default_rng(0).standard_normal((24, 24, 24)).cumsum(0).astype(np.float32)
with event.install_recorder("numba:compile") as rec:
    for kwargs in (dict(rel=1e-3), dict(abs=1e-2)):
        errbound.decompress(errbound.compress(x, "fz", **kwargs))
print(json.dumps({"compiled": ours(rec), "cache": compiling.cache_location()}))
"""


def run(code: str, env: dict, *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    # from the home folder: `python -c` puts the working directory first on sys.path, and the
    # project root holds a package named errbound
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=env["HOME"]
    )


def fresh_env(tmp_path: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    # these tests count what each process compiles: no compile helper takes a share
    env.update(HOME=str(tmp_path / "home"), ERRBOUND_COMPILE_HELPER="0")
    env.update(extra)
    (tmp_path / "home").mkdir(exist_ok=True)
    return env


def result(res: subprocess.CompletedProcess) -> dict:
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(res.stdout.strip().splitlines()[-1])


def test_second_process_loads_every_kernel_from_the_cache(tmp_path):
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    first = result(run(USE, env))
    second = result(run(USE, env))
    assert first["compiled"] > 0 and second["compiled"] == 0
    assert first["cache"] == str(tmp_path / "cache")


def test_the_first_use_says_it_compiles_once_and_can_be_silenced(tmp_path):
    # a notice as soon as anything compiles: the test must not depend on how long that takes
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"), ERRBOUND_COMPILE_NOTICE_S="0")
    res = run(USE, env)
    assert res.returncode == 0, res.stderr
    lines = [line for line in res.stderr.splitlines() if line.startswith("errbound: compiling")]
    assert any("fz encoder (3-D float32)" in line for line in lines), res.stderr
    assert len(lines) == len(set(lines)), "a notice was repeated"
    assert "errbound warmup" in lines[0]
    quiet = "import logging; logging.getLogger('errbound').setLevel(logging.ERROR)\n" + USE
    res = run(quiet, fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache2"), ERRBOUND_COMPILE_NOTICE_S="0"))
    assert res.returncode == 0 and "errbound: compiling" not in res.stderr
    res = run(USE, env)  # warm: nothing to say
    assert res.returncode == 0 and "errbound: compiling" not in res.stderr


FAILED_FIRST = r"""
import json, numpy as np, errbound, errbound.api as api
blob = errbound.compress(np.linspace(0, 1, 5000, dtype=np.float32), "fz", abs=1e-3)
header, sections = errbound.stream.unpack(blob)
cut = [(name, data[: len(data) // 2]) for name, data in sections.items()]  # a valid container, cut codec data
try:
    errbound.decompress(errbound.stream.pack(header, cut))
except errbound.errors.CorruptStreamError:
    pass
after_failure = [list(k) for k in api._FIRST_USES_DONE if k[0] == "decode"]
errbound.decompress(blob)
after_success = [list(k) for k in api._FIRST_USES_DONE if k[0] == "decode"]
print(json.dumps({"failed": after_failure, "ok": after_success}))
"""


def test_a_first_use_that_failed_is_not_marked_warm(tmp_path):
    # the next call must still go through the compile lock (and its notice)
    got = result(run(FAILED_FIRST, fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))))
    assert got["failed"] == [] and got["ok"] == [["decode", "fz", "f", 1]]


def test_cli_warmup_compiles_ahead_so_nothing_compiles_later(tmp_path):
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"), ERRBOUND_PROGRESS="0")
    res = subprocess.run(
        [sys.executable, "-m", "errbound.cli", "warmup", "--codec", "fz", "--dtype", "float32", "--ndim", "3"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    assert "compiling 1 codec/dtype/dimension cases" in res.stdout
    assert result(run(USE, env))["compiled"] == 0


def test_cli_warmup_in_processes_compiles_each_kernel_once_and_marks_the_paths_warm(tmp_path):
    """``--jobs 2``: two processes split the cases; afterwards a process compiles nothing,
    and finds its codec paths stamped (so that many ranks starting later do not take the
    compile lock in turn to load them)."""
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"), ERRBOUND_PROGRESS="0")
    command = [sys.executable, "-m", "errbound.cli", "warmup", "--codec", "fz", "--dtype", "float32", "--ndim", "2,3"]
    res = subprocess.run([*command, "--jobs", "2"], capture_output=True, text=True, env=env, timeout=600)
    assert res.returncode == 0, res.stderr
    assert "compiling 2 codec/dtype/dimension cases" in res.stdout and "(2 processes)" in res.stdout
    assert "compiling the kernels" not in res.stderr  # a warm-up is meant to compile: no notice
    stamps = {p.name.split(".")[0] for p in (tmp_path / "cache" / "errbound-jit").glob("*.stamp")}
    assert {"encode-fz-f-3", "decode-fz-f-3", "encode-fz-f-2", "decode-fz-f-2"} <= stamps, stamps
    assert result(run(USE, env))["compiled"] == 0
    bad = subprocess.run([*command, "--jobs", "0"], capture_output=True, text=True, env=env, timeout=600)
    assert bad.returncode != 0 and "--jobs" in bad.stderr


HLR_AFTER_WARMUP = r"""
import json, sys, numpy as np
from numba.core import event
import errbound
if sys.argv[1] == "warm":
    errbound.warmup(["hlr"], dtypes=["float32"], ndims=[3])
    sys.exit()
# a field whose residual sz codes with Lorenzo: warmup must have compiled that path too
x = np.random.default_rng(0).standard_normal((40, 40, 40)).cumsum(0).cumsum(1).astype(np.float32)
with event.install_recorder("numba:compile") as rec:
    errbound.decompress(errbound.compress(x, "hlr", rel=1e-3))
print(json.dumps({"compiled": sorted({e.data["dispatcher"].py_func.__qualname__ for _, e in rec.buffer if e.is_start})}))
"""


def test_hlr_warmup_covers_the_residual_predictors(tmp_path):
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"), ERRBOUND_PROGRESS="0")
    assert run(HLR_AFTER_WARMUP, env, "warm").returncode == 0
    assert result(run(HLR_AFTER_WARMUP, env, "use"))["compiled"] == []


SZ_BEST_AFTER_WARMUP = r"""
import json, sys, numpy as np
from numba.core import event
import errbound
if sys.argv[1] == "warm":
    errbound.warmup(["sz"], dtypes=["float32"], ndims=[3])
    sys.exit()
# noise on part of a smooth field: entropy="best" keeps the rANS coder, in lanes
x = np.fromfunction(lambda i, j, k: np.sin(i / 5) * np.cos(j / 7) + k / 40, (40, 48, 56), dtype=np.float32)
x += np.random.default_rng(2).normal(0, 0.02, x.shape).astype(np.float32) * (x > 0.5)
with event.install_recorder("numba:compile") as rec:
    blob = errbound.compress(x, "sz", rel=1e-3, entropy="best")
    errbound.decompress(blob)
coder = [(s["name"], s["version"]) for s in errbound.info(blob)["stages"] if s["name"] in ("huffman", "rans")]
print(json.dumps({"coder": coder, "compiled": sorted({e.data["dispatcher"].py_func.__qualname__ for _, e in rec.buffer if e.is_start})}))
"""


def test_sz_warmup_covers_the_rans_coder(tmp_path):
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"), ERRBOUND_PROGRESS="0")
    assert run(SZ_BEST_AFTER_WARMUP, env, "warm").returncode == 0
    used = result(run(SZ_BEST_AFTER_WARMUP, env, "use"))
    assert used == {"coder": [["rans", 2]], "compiled": []}


def _read_only_copy(tmp_path: Path) -> Path | None:
    """errbound's package in a read-only folder (a read-only bind mount as root, file modes
    otherwise), or None where neither is possible."""
    root = tmp_path / "site"
    shutil.copytree(PACKAGE, root / "errbound", ignore=shutil.ignore_patterns("__pycache__", "*.nbi", "*.nbc"))
    if os.geteuid() != 0:
        for path in [root, *root.rglob("*")]:
            path.chmod(path.stat().st_mode & ~0o222)
        return root
    ok = subprocess.run(["mount", "--bind", str(root), str(root)], capture_output=True).returncode == 0
    ok = ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(root)], capture_output=True).returncode == 0
    return root if ok else None


def test_a_read_only_install_compiles_once_per_user(tmp_path):
    root = _read_only_copy(tmp_path)
    if root is None:
        pytest.skip("cannot make a read-only copy here (not root with mount, nor a user that file modes bind)")
    try:
        assert not os.access(root / "errbound", os.W_OK) or os.geteuid() == 0
        env = fresh_env(tmp_path, PYTHONPATH=str(root))
        first = result(run(USE, env))
        second = result(run(USE, env))
        assert first["cache"] == str(tmp_path / "home" / ".cache" / "errbound" / "numba")
        assert first["compiled"] > 0 and second["compiled"] == 0
        env = fresh_env(tmp_path, PYTHONPATH=str(root), XDG_CACHE_HOME=str(tmp_path / "xdg"))
        assert result(run(USE, env))["cache"] == str(tmp_path / "xdg" / "errbound" / "numba")
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(root)], capture_output=True)


RANK = r"""
import json, os, time, numpy as np
from mpi4py import MPI
from numba.core import event
def ours(rec):
    return sum(1 for _, e in rec.buffer if e.is_start and e.data["dispatcher"].py_func.__module__.startswith("errbound"))
comm = MPI.COMM_WORLD
comm.Barrier()
t0 = time.perf_counter()
import errbound
x = np.random.default_rng(comm.rank).standard_normal((24, 24, 24)).cumsum(0).astype(np.float32)
with event.install_recorder("numba:compile") as rec:
    y = errbound.decompress(errbound.compress(x, "fz", rel=1e-3))
ok = bool(np.max(np.abs(y - x)) <= 1e-3 * (x.max() - x.min()))
mine = {"compiled": ours(rec), "seconds": time.perf_counter() - t0, "ok": ok}
every = comm.gather(mine)
if comm.rank == 0:
    print(json.dumps(every))
"""


def test_ranks_starting_together_on_a_cold_node_compile_once(tmp_path):
    """Four ranks on one cold cache compile every kernel once between them (whichever rank
    gets the lock for a kernel path compiles it; the others load it), as many compilations
    as one process alone needs."""
    mpiexec = Path(sys.executable).with_name("mpiexec")
    if not mpiexec.exists():
        pytest.skip("mpiexec (the mpich wheel) is not installed")
    script = tmp_path / "rank.py"
    script.write_text(RANK)

    def ranks(n: int, cache: Path) -> list[dict]:
        env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(cache))
        res = subprocess.run(
            [str(mpiexec), "-n", str(n), sys.executable, str(script)],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            cwd=tmp_path,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        assert "Traceback" not in res.stderr
        return json.loads(res.stdout.strip().splitlines()[-1])

    alone = ranks(1, tmp_path / "cache1")[0]["compiled"]
    together = ranks(4, tmp_path / "cache4")
    assert all(r["ok"] for r in together)
    assert alone > 0 and sum(r["compiled"] for r in together) == alone, (alone, together)


# a kernel module outside errbound (its cache beside it is the test's own), compiled for the
# signatures given on the command line in that order, after a common start time; prints the
# signatures this process compiled and whether every result is right
SIGNATURES = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
from numba.core import event
import numpy as np
import shared_kernel
names = sys.argv[3].split(",")
while time.time() < float(sys.argv[2]):
    time.sleep(0.005)
with event.install_recorder("numba:compile") as rec:
    ok = all(shared_kernel.check(name) for name in names)
compiled = [str(e.data["args"]) for _, e in rec.buffer if e.is_start and e.data["dispatcher"].py_func.__name__ == "affine"]
print(json.dumps({"compiled": compiled, "ok": ok}))
"""

KERNEL_MODULE = r"""
import numpy as np
from errbound.jit import kernel

@kernel
def affine(x, a, out):
    for i in range(x.size):
        out[i] = x[i] * a + 1

@kernel
def needs_numbers(x):
    return x + 1

def make(inner):  # kernels from one factory share one cache index (qualname and line)
    @kernel
    def twice(x):
        return inner(x) * 2.0
    return twice

@kernel
def leaf(x):
    return x + 1.0

twice_leaf = make(leaf)
twice_twice = make(twice_leaf)

@kernel
def even(n):  # two kernels that call each other: their locks can be taken in either order
    if n == 0:
        return True
    return odd(n - 1)

@kernel
def odd(n):
    if n == 0:
        return False
    return even(n - 1)

TYPES = {"f4": np.float32, "f8": np.float64, "i4": np.int32, "i8": np.int64, "u2": np.uint16, "c16": np.complex128}

def check(name):
    x = np.arange(5).astype(TYPES[name])
    out = np.empty_like(x)
    affine(x, TYPES[name](3), out)
    return bool(np.array_equal(out, x * TYPES[name](3) + TYPES[name](1)))
"""


def test_processes_compiling_one_kernel_together_compile_each_signature_once(tmp_path):
    """Four processes compile six signatures of one kernel at once, each in its own order, on
    one cold cache: every signature compiles in exactly one of them (the others wait and
    load it), and the cache they leave holds all six, each with its own machine code (numba
    alone rewrites the kernel's index whole on every save, so that concurrent saves can
    drop entries or give two signatures one data file)."""
    folder = tmp_path / "module"
    folder.mkdir()
    (folder / "shared_kernel.py").write_text(KERNEL_MODULE)
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    names = ["f4", "f8", "i4", "i8", "u2", "c16"]
    start = time.time() + 8.0  # every process imported and waiting before anyone compiles
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", SIGNATURES, str(folder), str(start), ",".join(names[k:] + names[:k])],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=env["HOME"],
        )
        for k in (0, 2, 3, 5)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        reports.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["ok"] for r in reports), reports
    compiled = [sig for r in reports for sig in r["compiled"]]
    assert len(compiled) == len(names) == len(set(compiled)), reports
    assert sum(1 for r in reports if r["compiled"]) > 1, reports  # the work was split
    again = result(run(SIGNATURES, env, str(folder), "0", ",".join(names)))
    assert again == {"compiled": [], "ok": True}


PATH_AT = r"""
import json, sys, time
import numpy as np
from numba.core import event
import errbound
codec, dtype, ndim = sys.argv[2], sys.argv[3], int(sys.argv[4])
x = np.random.default_rng(0).standard_normal((24,) * ndim).cumsum(0).astype(dtype)
while time.time() < float(sys.argv[1]):
    time.sleep(0.005)
with event.install_recorder("numba:compile") as rec:
    y = errbound.decompress(errbound.compress(x, codec, rel=1e-3))
ok = bool(np.max(np.abs(y.astype(float) - x)) <= 1e-3 * float(x.max() - x.min()))
compiled = sorted({f"{e.data['dispatcher'].py_func.__qualname__}{e.data['args']}" for _, e in rec.buffer
                   if e.is_start and e.data["dispatcher"].py_func.__module__.startswith("errbound")})
print(json.dumps({"compiled": compiled, "ok": ok}))
"""


def test_processes_starting_different_codec_paths_compile_them_at_once(tmp_path):
    """Two processes on one cold cache, one starting `fz` on float32 3-D arrays and one `sz`
    on float64 2-D: each path has its own lock, so neither waits for the other's whole
    path (as under one lock for every path), and no kernel signature compiles in both."""
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"), ERRBOUND_COMPILE_NOTICE_S="0")
    start = str(time.time() + 8.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", PATH_AT, start, *path],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=env["HOME"],
        )
        for path in (("fz", "float32", "3"), ("sz", "float64", "2"))
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err[-3000:]
        assert "waiting for another process" not in err, err
        reports.append(json.loads(out.strip().splitlines()[-1]))
    fz, sz = reports
    assert fz["ok"] and sz["ok"] and fz["compiled"] and sz["compiled"], reports
    assert not set(fz["compiled"]) & set(sz["compiled"]), reports


NO_LOCKS = r"""
import errno, fcntl, json
def refuse(*args):  # as on a parallel file system mounted without flock
    raise OSError(errno.ENOLCK, "No locks available")
fcntl.flock = refuse
import numpy as np, errbound
x = np.random.default_rng(0).standard_normal((24, 24, 24)).cumsum(0).astype(np.float32)
y = errbound.decompress(errbound.compress(x, "fz", rel=1e-3))
print(json.dumps(bool(np.max(np.abs(y.astype(float) - x)) <= 1e-3 * float(x.max() - x.min()))))
"""


def test_a_cache_on_a_file_system_without_locks_still_works(tmp_path):
    """Where flock fails (Lustre or NFS mounted without it), kernels compile without
    coordination instead of the first call failing. Fault injection: flock raises ENOLCK."""
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert result(run(NO_LOCKS, env)) is True


def test_kernels_sharing_a_cache_index_compile_each_other(tmp_path):
    """Two kernels from one factory share numba's cache index; one calling the other with the
    same argument types must not wait on its own lock (a second open of a lock file that this
    process holds conflicts with it: that hung before)."""
    code = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import shared_kernel
print(json.dumps(shared_kernel.twice_twice(1.0)))
"""
    folder = tmp_path / "module"
    folder.mkdir()
    (folder / "shared_kernel.py").write_text(KERNEL_MODULE)
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert result(run(code, env, str(folder), timeout=120)) == 8.0


# the window between numba's index write and its data write, widened: the first process
# saves a new signature over a cache that holds an older build's data files
SLOW_SAVE = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import numba.core.caching as caching
save = caching.IndexDataCacheFile._save_data
def slow(self, name, data):
    open(sys.argv[2], "w").close()
    time.sleep(4)
    save(self, name, data)
caching.IndexDataCacheFile._save_data = slow
import shared_kernel
print(shared_kernel.leaf(1.5))
"""
LEAF = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import shared_kernel
print(json.dumps(shared_kernel.leaf(int(sys.argv[2])) if sys.argv[2:] else shared_kernel.leaf(1.5)))
"""


def test_a_load_during_another_process_save_never_gets_another_signatures_code(tmp_path):
    """numba writes a kernel's cache index before the data file. A process loading in
    between could read a data file left by an older build of the kernel (its numbering
    starts again when the source changes) holding another signature's machine code, and
    compute wrong numbers with it (an int64 kernel for a float64 call: 2.0 for 1.5 + 1.0).
    Loads now wait for saves of the same kernel, and a loaded result must be the signature
    asked for. Fault injection: the save is slowed down to widen the window."""
    folder = tmp_path / "module"
    folder.mkdir()
    module = folder / "shared_kernel.py"
    module.write_text(KERNEL_MODULE)
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert result(run(LEAF, env, str(folder), "3")) == 4  # int64 code in data file 1
    module.write_text(KERNEL_MODULE + "\n# edited: a new source stamp\n")
    flag = tmp_path / "saving"
    saver = subprocess.Popen(
        [sys.executable, "-c", SLOW_SAVE, str(folder), str(flag)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=env["HOME"],
    )
    deadline = time.time() + 120
    while not flag.exists() and saver.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert flag.exists(), saver.communicate()[1][-3000:]
    assert result(run(LEAF, env, str(folder))) == 2.5
    out, err = saver.communicate(timeout=120)
    assert saver.returncode == 0 and out.strip() == "2.5", err[-3000:]


# holds each signature lock it takes for a second (fault injection: widens the window in
# which another process takes the next lock), then calls the kernel named in argv
CROSSED = r"""
import json, sys, time
sys.path.insert(0, sys.argv[1])
import re
import errbound.compiling as compiling
compiling.NESTED_WAIT_S = 2.0
take = compiling._lock
def slow(path, *args, **kwargs):
    handle = take(path, *args, **kwargs)
    if handle is not None and re.search(r"\.[0-9a-f]{16}\.lock$", path.name):  # a signature's lock
        time.sleep(1.0)
    return handle
compiling._lock = slow
import shared_kernel
while time.time() < float(sys.argv[2]):
    time.sleep(0.005)
print(json.dumps(getattr(shared_kernel, sys.argv[3])(3)))
"""


def test_processes_compiling_kernels_that_call_each_other_do_not_wait_for_each_other(tmp_path):
    """One process compiles `even` (taking its lock, then `odd`'s as a callee), another `odd`
    (then `even`'s): they take the two locks in opposite orders. A callee's lock is waited
    for only NESTED_WAIT_S while a caller's is held, then compiled without it; both finished
    only when their test timed out before."""
    folder = tmp_path / "module"
    folder.mkdir()
    (folder / "shared_kernel.py").write_text(KERNEL_MODULE)
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    start = str(time.time() + 6.0)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CROSSED, str(folder), start, name],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=env["HOME"],
        )
        for name in ("even", "odd")
    ]
    outs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-3000:]
        outs.append(json.loads(out.strip().splitlines()[-1]))
    assert outs == [False, True]


def test_a_compile_that_fails_leaves_no_lock_behind(tmp_path):
    """A signature that fails to compile releases its lock at once: another process trying
    it meanwhile gets the same error, not a wait for a lock that is released only when the
    failed process exits."""
    code = r"""
import fcntl, json, sys
sys.path.insert(0, sys.argv[1])
import shared_kernel
from errbound import compiling
errors = []
for _ in range(2):
    try:
        shared_kernel.needs_numbers("text")
    except Exception as exc:
        errors.append(type(exc).__name__)
held = []
for path in sorted((compiling.STATE_DIR / "kernels").glob("*.lock")):
    with open(path, "a+b") as handle:  # a second open: blocked by a lock this process holds
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            held.append(path.name)
print(json.dumps({"errors": errors, "held": held}))
"""
    folder = tmp_path / "module"
    folder.mkdir()
    (folder / "shared_kernel.py").write_text(KERNEL_MODULE)
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    assert result(run(code, env, str(folder), timeout=120)) == {"errors": ["TypingError"] * 2, "held": []}
