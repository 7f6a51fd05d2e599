"""The compile helper (errbound.compile_helper): a second process that compiles a cold first
use's kernels from the other end of its plan. Fresh processes on empty caches of their own;
numba's compile events are counted, nothing is timed."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from numba.core import registry, types
from test_cold_start import _read_only_copy, fresh_env, result, run  # tests/ is on sys.path (pytest's rootdir import)

from errbound import compile_helper, compiling

ROOT = Path(__file__).resolve().parents[1]

# sz on a float32 3-D array: compress, then wait for the helper, then decompress. Prints the
# kernels this process compiled in each step, and whether the round trip kept the bound.
ROUND_TRIP = r"""
import json, sys, numpy as np
from numba.core import event
import errbound
from errbound import compile_helper, compiling
def ours(rec):
    return [e.data["dispatcher"].py_func.__name__ for _, e in rec.buffer
            if e.is_start and e.data["dispatcher"].py_func.__module__.startswith("errbound")]
x = np.random.default_rng(0).standard_normal((32, 32, 32)).cumsum(0).cumsum(1).astype(np.float32)
with event.install_recorder("numba:compile") as enc:
    blob = errbound.compress(x, "sz", rel=1e-3)
status = compile_helper.wait(timeout=600)
with event.install_recorder("numba:compile") as dec:
    y = errbound.decompress(blob)
ok = bool(np.max(np.abs(y.astype(np.float64) - x)) <= 1e-3 * (float(x.max()) - float(x.min())))
print(json.dumps({"encode": ours(enc), "decode": ours(dec), "helper": status, "ok": ok, "blob": blob.hex(),
                  "cache": compiling.cache_location(), "package": errbound.__file__}))
"""


def test_every_plan_names_a_kernel_and_a_signature_numba_reads():
    plans = compile_helper._plans()
    assert plans, "errbound/compile_plans.json is missing or empty"
    for codec in ("sz", "fz", "sperr", "hlr"):  # the codecs whose cold start a helper shortens
        for char in "fd":
            for ndim in (1, 2, 3, 4):
                assert plans.get(f"encode {codec} {char} {ndim}") and plans.get(f"decode {codec} {char} {ndim}")
    names = {name: getattr(types, name) for name in dir(types) if not name.startswith("_")}
    for path, plan in plans.items():
        for module, qualname, signature, seconds in plan:
            kernel = __import__(module, fromlist=["_"])
            for part in qualname.split("."):
                kernel = getattr(kernel, part)
            assert isinstance(kernel, registry.CPUDispatcher), (path, module, qualname)
            args = eval(signature, {"__builtins__": {}}, names)
            assert isinstance(args, tuple) and all(isinstance(a, types.Type) for a in args), (path, signature)
            assert seconds >= 0


def test_an_encode_plan_goes_on_into_the_decoder_and_runs_backwards_after_one_kernel():
    key = ("encode", "sz", "f", 3)
    plans = compile_helper._plans()
    order = [tuple(e[:3]) for e in compile_helper.helper_order(key)]
    encode = [tuple(e[:3]) for e in plans["encode sz f 3"]]
    decode_only = [tuple(e[:3]) for e in plans["decode sz f 3"] if tuple(e[:3]) not in set(encode)]
    path = encode + decode_only
    assert decode_only and sorted(order) == sorted(path)
    # backwards from the decoder's end, but for the one kernel the helper may take first
    rest = order[1:] if order != path[::-1] else order
    assert rest == [kernel for kernel in path[::-1] if kernel in rest]
    assert compile_helper.helper_order(("encode", "nosuch", "f", 3)) == []


def _plan(*seconds):
    return [["m", f"k{i}", "()", s] for i, s in enumerate(seconds)]


def test_the_helper_does_not_meet_the_first_use_inside_a_long_kernel(monkeypatch):
    """Backwards, the helper would reach the long kernel just after the first use took it,
    and then had nothing left to do while the first use compiled it: the helper takes one
    kernel out of turn so that the long one ends sooner."""
    ends = compile_helper._first_use_ends
    long_one = _plan(0.5, 0.5, 0.5, 0.5, 3.0, 0.5, 0.5, 0.5)
    monkeypatch.setattr(compile_helper, "_plans", lambda: {"decode x f 3": long_one})
    order = compile_helper.helper_order(("decode", "x", "f", 3))
    assert order != long_one[::-1] and order[1:] == [e for e in long_one[::-1] if e is not order[0]]
    assert ends(long_one, order) < ends(long_one, long_one[::-1]) - 0.4
    # kernels of one size: plain backwards, meeting in the middle
    even = _plan(*[0.5] * 8)
    monkeypatch.setattr(compile_helper, "_plans", lambda: {"decode x f 3": even})
    assert compile_helper.helper_order(("decode", "x", "f", 3)) == even[::-1]
    assert ends(even, even[::-1]) < 0.7 * sum(e[3] for e in even)


def test_a_cold_round_trip_with_the_helper_compiles_each_kernel_once_and_the_same_bytes(tmp_path):
    """The helper compiled the decoder while this process compressed: after waiting for it the
    decompress compiles nothing, the encode compiled no more kernels than alone, and the stream
    is the one a process without a helper writes. A second process compiles nothing and
    starts no helper (its paths are warm)."""
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"), ERRBOUND_COMPILE_HELPER="1")
    helped = result(run(ROUND_TRIP, env))
    alone = result(run(ROUND_TRIP, fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "alone"))))
    assert alone["helper"] is None and alone["decode"], alone  # fresh_env turns the helper off
    assert helped["helper"] == 0 and helped["ok"] and alone["ok"]
    assert helped["decode"] == [], helped["decode"]
    assert "decode_coded" in alone["decode"]
    # how many of the encoder's kernels the helper took first depends on the two processes'
    # pace; never more work here than alone
    assert len(helped["encode"]) <= len(alone["encode"]) and set(helped["encode"]) <= set(alone["encode"])
    assert helped["blob"] == alone["blob"]
    again = result(run(ROUND_TRIP, env))
    assert again["helper"] is None and again["encode"] == [] and again["decode"] == []


def test_the_helper_of_a_read_only_install_compiles_into_the_users_cache(tmp_path):
    """The helper runs the same (read-only) package and compiles into the cache its parent
    chose (the user's, as numba's default beside the sources cannot be written)."""
    root = _read_only_copy(tmp_path)
    if root is None:
        pytest.skip("cannot make a read-only copy here (not root with mount, nor a user that file modes bind)")
    try:
        env = fresh_env(tmp_path, PYTHONPATH=str(root), ERRBOUND_COMPILE_HELPER="1")
        first = result(run(ROUND_TRIP, env))
        assert first["package"].startswith(str(root)) and first["helper"] == 0 and first["ok"]
        assert first["cache"] == str(tmp_path / "home" / ".cache" / "errbound" / "numba")
        assert first["decode"] == []  # the helper's compiles went there too
        second = result(run(ROUND_TRIP, env))
        assert second["encode"] == [] and second["decode"] == [] and second["helper"] is None
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(root)], capture_output=True)


STARTS = r"""
import json, sys, time
from errbound import compile_helper, compiling
started = compile_helper.start_for(("encode", "sz", "f", 3), compiling.stamp_file, compiling.CACHE_DIR)
pid = compile_helper._helper.pid if started else None
time.sleep(float(sys.argv[1]))
alive = started and compile_helper._helper.poll() is None
print(json.dumps({"started": started, "pid": pid, "alive_at_exit": alive}))
"""


def _gone(pid: int, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        with open(f"/proc/{pid}/stat") as f:  # a zombie: ended, not yet reaped
            if f.read().split(") ")[-1].startswith("Z"):
                return True
        time.sleep(0.05)
    return False


def test_the_helper_ends_with_the_process_that_started_it(tmp_path):
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"), ERRBOUND_COMPILE_HELPER="1")
    got = result(run(STARTS, env, "1.0"))  # exits a second in: the plan takes several
    assert got["started"] and got["alive_at_exit"], got
    assert _gone(got["pid"], within=5.0)


def test_no_helper_when_turned_off_or_without_a_plan_or_already_helped(tmp_path):
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))  # ERRBOUND_COMPILE_HELPER=0
    assert result(run(STARTS, env, "0"))["started"] is False
    env["ERRBOUND_COMPILE_HELPER"] = "1"
    no_plan = STARTS.replace('("encode", "sz", "f", 3)', '("encode", "raw", "f", 3)')
    assert result(run(no_plan, env, "0"))["started"] is False
    quick = STARTS.replace('("encode", "sz", "f", 3)', '("encode", "zfp", "f", 1)')
    assert result(run(quick, env, "0"))["started"] is False  # zfp compiles in well under a second
    stamp = compile_helper_stamp(tmp_path / "cache", ("helped", "encode", "sz", "f", 3))
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.touch()
    assert result(run(STARTS, env, "0"))["started"] is False


def compile_helper_stamp(cache: Path, key: tuple) -> Path:
    """The stamp a process using ``cache`` looks for (named as errbound.compiling.stamp_file names it)."""
    return cache / "errbound-jit" / compiling.stamp_file(key).name


def test_the_default_follows_the_usable_cores(monkeypatch):
    monkeypatch.delenv("ERRBOUND_COMPILE_HELPER", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert not compile_helper.enabled()
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert compile_helper.enabled()
    monkeypatch.setenv("ERRBOUND_COMPILE_HELPER", "0")
    assert not compile_helper.enabled()
    monkeypatch.setenv("ERRBOUND_COMPILE_HELPER", "1")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert compile_helper.enabled()
    for word, on in (("false", False), ("Off", False), ("no", False), ("true", True), (" ON ", True)):
        monkeypatch.setenv("ERRBOUND_COMPILE_HELPER", word)
        assert compile_helper.enabled() is on, word
    monkeypatch.setenv("ERRBOUND_COMPILE_HELPER", "maybe")  # not a setting: the default (one core here)
    assert not compile_helper.enabled()


def test_the_stored_plan_is_what_a_cold_process_compiles_now(tmp_path):
    """One path recorded afresh (``tools/record_compile_plans.py`` records them all): where this
    fails, the kernels or the policy changed; rerun the tool."""
    spec = importlib.util.spec_from_file_location("record_compile_plans", ROOT / "tools" / "record_compile_plans.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    fresh = tool.record("sz", "float32", 1, tmp_path / "stream.eb", "encode")
    stored = compile_helper._plans()["encode sz f 1"]
    assert [entry[:3] for entry in fresh] == [entry[:3] for entry in stored]


def test_a_helper_that_cannot_start_never_fails_the_call(tmp_path, monkeypatch):
    """A plan the helper cannot read (a damaged install) or a failing start costs the gain only."""
    monkeypatch.setattr(compiling, "STATE_DIR", tmp_path)  # a cold path of its own
    monkeypatch.setenv("ERRBOUND_COMPILE_HELPER", "1")

    asked = []

    def broken(key):
        asked.append(key)
        raise TypeError("a damaged plan")

    monkeypatch.setattr(compile_helper, "helper_order", broken)
    ran = []
    with compiling.first_use(("encode", "test-only", "f", 3), "test path"):
        ran.append(True)
    assert asked == [("encode", "test-only", "f", 3)]  # the start was tried, and failed
    assert ran == [True] and compiling.stamp_file(("encode", "test-only", "f", 3)).exists()


def test_the_helper_runs_with_the_flags_that_decide_what_its_parent_imports(tmp_path):
    """A parent run with -E -s (or -I) must not get a helper that reads PYTHONPATH or the
    user's site: it could import another numba and fill the cache with kernels the parent
    cannot load."""
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"), ERRBOUND_COMPILE_HELPER="1")
    code = STARTS.replace("time.sleep(", "argv = open(f'/proc/{pid}/cmdline').read().split(chr(0)); time.sleep(")
    code = code.replace('"alive_at_exit": alive', '"alive_at_exit": alive, "argv": argv')
    res = subprocess.run(
        [sys.executable, "-E", "-s", "-c", code, "0"], capture_output=True, text=True, env=env, cwd=env["HOME"]
    )
    got = result(res)
    assert got["started"], got
    argv = got["argv"]
    assert argv[1:3] == ["-E", "-s"] and argv[3] == "-c", argv  # before the code, as the parent had them
    assert _gone(got["pid"], within=5.0)


# a stand-in helper (its parent is the process that started it) waiting for a compile lock
# another process holds, and that parent, which reports the helper's pid and then sleeps
WAITING_HELPER = r"""
import os, sys
from pathlib import Path
from errbound import compile_helper, compiling
compile_helper._helped_pid = os.getppid()
print("waiting", flush=True)
compiling._lock(Path(sys.argv[1]))
print("took the lock", flush=True)
"""
HELPERS_PARENT = r"""
import subprocess, sys, time
helper = subprocess.Popen([sys.executable, "-c", sys.argv[1], sys.argv[2]], stdout=subprocess.PIPE, text=True)
print(helper.pid, helper.stdout.readline().strip(), flush=True)
time.sleep(600)
"""


def test_a_helper_waiting_for_a_lock_ends_when_its_parent_is_killed(tmp_path):
    lock_file = tmp_path / "kernel.lock"
    env = fresh_env(tmp_path, NUMBA_CACHE_DIR=str(tmp_path / "cache"))
    with open(lock_file, "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # the compile of a third process, which never ends
        parent = subprocess.Popen(
            [sys.executable, "-c", HELPERS_PARENT, WAITING_HELPER, str(lock_file)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
            cwd=env["HOME"],
        )
        try:
            pid, state = parent.stdout.readline().split()
            assert state == "waiting"
            time.sleep(0.3)  # inside the wait
            assert not _gone(int(pid), within=0.2)  # it waits while its parent lives
        finally:
            parent.kill()
            parent.wait()
        assert _gone(int(pid), within=5.0)  # and ends, without the lock, once the parent is gone


def test_only_a_helper_asks_after_its_parent():
    assert compile_helper.parent_gone() is False  # not a helper: a lock wait never ends early
