"""Where compiled kernels go when the package folder cannot be written, and the first-use
lock's behaviour that a user never sees until it goes wrong: odd environments (no home
folder, a relative path, a temporary folder another user made, nothing writable at all), a
fork from a thread, and what a waiting process is told."""

from __future__ import annotations

import fcntl
import logging
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from errbound import compiling


@pytest.fixture
def unwritable_package(tmp_path):
    """A 'package folder' whose __pycache__ cannot be made, for root too (its parent is a file)."""
    blocker = tmp_path / "site-file"
    blocker.write_bytes(b"")
    return blocker / "errbound"


@pytest.fixture
def private_tmp(tmp_path, monkeypatch):
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def test_a_relative_numba_cache_dir_is_made_absolute():
    folder, caching = compiling.choose_cache_dir({"NUMBA_CACHE_DIR": "rel/cache"})
    assert caching and folder == Path(os.getcwd()) / "rel" / "cache"


def test_a_read_only_package_caches_in_the_users_cache_folder(tmp_path, unwritable_package, private_tmp, monkeypatch):
    monkeypatch.setattr(Path, "home", staticmethod(lambda: tmp_path / "home"))
    environ = {"XDG_CACHE_HOME": str(tmp_path / "xdg")}
    assert compiling.choose_cache_dir(environ, unwritable_package) == (tmp_path / "xdg" / "errbound" / "numba", True)
    # a relative XDG_CACHE_HOME is not a cache folder (the XDG specification): ~/.cache is
    environ = {"XDG_CACHE_HOME": "xdg"}
    folder, caching = compiling.choose_cache_dir(environ, unwritable_package)
    assert caching and folder == tmp_path / "home" / ".cache" / "errbound" / "numba"


def test_without_a_home_folder_the_cache_is_a_private_temporary_folder(unwritable_package, private_tmp, monkeypatch):
    def no_home():
        raise RuntimeError("Could not determine home directory.")  # HOME unset, uid not in passwd

    monkeypatch.setattr(Path, "home", staticmethod(no_home))
    folder, caching = compiling.choose_cache_dir({}, unwritable_package)
    assert caching and folder == private_tmp / f"errbound-numba-{os.getuid()}"
    assert folder.stat().st_mode & 0o777 == 0o700


def test_a_temporary_folder_another_user_could_write_is_refused(unwritable_package, private_tmp, monkeypatch):
    monkeypatch.setattr(Path, "home", staticmethod(lambda: Path("/proc/no-such-home")))
    planted = private_tmp / f"errbound-numba-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)  # as another user would leave it for us, with their pickled kernels
    assert compiling.choose_cache_dir({}, unwritable_package) == (None, False)
    planted.chmod(0o700)
    assert compiling.choose_cache_dir({}, unwritable_package) == (planted, True)


NOTHING_WRITABLE = r"""
import sys, tempfile, pathlib
tempfile.tempdir = "/proc/no-such-tmp"
pathlib.Path.home = staticmethod(lambda: pathlib.Path("/proc/no-such-home"))
import errbound.compiling as compiling
compiling.choose_cache_dir  # the real one, run at import
import numpy as np, errbound
x = np.linspace(0, 1, 3000).reshape(30, 100)
y = errbound.decompress(errbound.compress(x, "sz", abs=1e-3))
print(compiling.CACHING, compiling.cache_location(), float(np.max(np.abs(y - x))) <= 1e-3)
"""


def test_with_no_writable_folder_at_all_kernels_compile_uncached_and_work(tmp_path):
    """A read-only install where the home and temporary folders cannot be written either:
    numba refuses ``cache=True`` with nowhere to write (at import, before any call), so the
    kernels are made uncached, and the process says so once."""
    from test_cold_start import _read_only_copy, fresh_env

    root = _read_only_copy(tmp_path)
    if root is None:
        pytest.skip("cannot make a read-only copy here (not root with mount, nor a user that file modes bind)")
    try:
        env = fresh_env(tmp_path, PYTHONPATH=str(root))
        res = subprocess.run(
            [sys.executable, "-c", NOTHING_WRITABLE],
            capture_output=True,
            text=True,
            env=env,
            cwd=env["HOME"],
            timeout=600,
        )
        assert res.returncode == 0, res.stderr[-3000:]
        assert res.stdout.split()[0] == "False" and res.stdout.split()[-1] == "True", res.stdout
        assert "nowhere" in res.stdout
        assert "no writable folder for compiled kernels" in res.stderr
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(root)], capture_output=True)


def test_a_bad_notice_setting_is_ignored_not_an_import_error(monkeypatch, caplog):
    monkeypatch.setenv("ERRBOUND_COMPILE_NOTICE_S", "soon")
    with caplog.at_level(logging.WARNING, logger="errbound"):
        assert compiling._seconds_from_environment("ERRBOUND_COMPILE_NOTICE_S", 1.0) == 1.0
    assert "ERRBOUND_COMPILE_NOTICE_S" in caplog.text
    monkeypatch.setenv("ERRBOUND_COMPILE_NOTICE_S", "2.5")
    assert compiling._seconds_from_environment("ERRBOUND_COMPILE_NOTICE_S", 1.0) == 2.5


def test_a_short_wait_does_not_claim_a_stopped_process(tmp_path, caplog):
    path = tmp_path / "path.lock"
    with open(path, "a+b") as holder:  # another open file: flock makes it a rival holder
        fcntl.flock(holder, fcntl.LOCK_EX)
        with caplog.at_level(logging.WARNING, logger="errbound"):
            assert compiling._lock(path, timeout=0.05, waiting="for a test", say_after=0.0) is None
    assert "waiting for a test" in caplog.text and "so far" not in caplog.text


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is POSIX")
def test_a_child_forked_during_a_first_use_can_make_its_own(tmp_path):
    """Another thread is inside a first use (its lock held) when this one forks: the child has
    no such thread, and its own first use must not wait for it forever."""
    inside, leave = threading.Event(), threading.Event()

    def first_use_in_a_thread():
        with compiling._first_lock:
            inside.set()
            leave.wait(30)

    thread = threading.Thread(target=first_use_in_a_thread)
    thread.start()
    try:
        assert inside.wait(30)
        pid = os.fork()
        if pid == 0:  # the child: exit status says whether the lock was free
            got = compiling._first_lock.acquire(timeout=5)
            os._exit(0 if got else 1)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
    finally:
        leave.set()
        thread.join()


def test_the_stamp_is_there_before_the_path_lock_is_let_go(tmp_path, monkeypatch):
    """A process that takes a path's lock after its first user sees the stamp and loads,
    instead of running its own first call under the lock."""
    monkeypatch.setattr(compiling, "STATE_DIR", tmp_path / "state")
    monkeypatch.setenv("ERRBOUND_COMPILE_HELPER", "0")
    key = ("encode", "test-path", "f", 1)
    stamp = compiling.stamp_file(key)
    seen = []
    unlock = compiling._unlock

    def recording_unlock(handle):
        if handle.name.endswith(".lock") and Path(handle.name).name.startswith("encode-test-path"):
            seen.append(stamp.exists())
        unlock(handle)

    monkeypatch.setattr(compiling, "_unlock", recording_unlock)
    with compiling.first_use(key, "test path"):
        pass
    assert seen == [True] and stamp.exists()
