"""How the ``errbound`` command writes its outputs (issue 18, items 5 and 6): atomically, keeping
an existing file's mode, never replacing a device or a pipe with a regular file, cleaning up
after a killed run, and with a clear error (no traceback) for hostile inputs."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from errbound.integrations import atomic


def run(*args, timeout=120) -> subprocess.CompletedProcess:
    env = {**os.environ, "ERRBOUND_PROGRESS": "0"}
    return subprocess.run(
        [sys.executable, "-m", "errbound.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def clean_failure(res: subprocess.CompletedProcess, text: str) -> None:
    assert res.returncode == 1, res.stderr
    assert "Traceback" not in res.stderr, res.stderr
    assert text in res.stderr, res.stderr


@pytest.fixture()
def field(tmp_path) -> Path:
    x = np.sin(np.linspace(0, 30, 64 * 64)).reshape(64, 64).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    return tmp_path / "x.npy"


def test_an_existing_output_keeps_its_mode(field, tmp_path):
    out = tmp_path / "x.eb"
    out.write_bytes(b"old")
    out.chmod(0o600)
    assert run("compress", field, "-o", out, "--rel", "1e-3").returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600 and out.read_bytes() != b"old"
    out.chmod(0o640)
    assert run("decompress", out, "-o", tmp_path / "back.npy").returncode == 0
    assert run("compress", field, "-o", out, "--rel", "1e-2").returncode == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o640


def test_a_new_output_gets_the_umask_mode(field, tmp_path):
    old = os.umask(0o027)
    try:
        assert run("compress", field, "-o", tmp_path / "new.eb", "--rel", "1e-3").returncode == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "new.eb").stat().st_mode) == 0o640


def test_a_fifo_is_written_through_not_replaced(field, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    received = []

    def reader():
        with open(fifo, "rb") as f:
            received.append(f.read())

    thread = threading.Thread(target=reader)
    thread.start()
    res = run("compress", field, "-o", fifo, "--rel", "1e-3")
    thread.join(timeout=60)
    assert res.returncode == 0, res.stderr
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert received and received[0][:4] == b"ERRB"


def test_dev_null_stays_a_device(field):
    before = os.stat("/dev/null")
    assert run("compress", field, "-o", "/dev/null", "--rel", "1e-3").returncode == 0
    after = os.stat("/dev/null")
    assert stat.S_ISCHR(after.st_mode) and after.st_rdev == before.st_rdev and after.st_ino == before.st_ino


def test_a_directory_is_refused(field, tmp_path):
    (tmp_path / "d").mkdir()
    clean_failure(run("compress", field, "-o", tmp_path / "d", "--rel", "1e-3"), "a directory")


def test_a_symlinked_output_replaces_its_target_and_keeps_the_link(field, tmp_path):
    target = tmp_path / "real.eb"
    target.write_bytes(b"old")
    link = tmp_path / "link.eb"
    link.symlink_to(target)
    assert run("compress", field, "-o", link, "--rel", "1e-3").returncode == 0
    assert link.is_symlink() and target.read_bytes()[:4] == b"ERRB"


def test_temporaries_of_dead_processes_are_removed_by_the_next_write(field, tmp_path):
    out = tmp_path / "x.eb"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = atomic.temporary_name(out, pid=dead.pid)
    stale.write_bytes(b"x" * 1000)
    live = atomic.temporary_name(out, pid=os.getpid())  # a run still writing: left alone
    live.write_bytes(b"y")
    foreign = out.with_name(f".x.eb.otherhost.{dead.pid}.abcd.errbound-tmp")  # another host's: left alone
    foreign.write_bytes(b"z")
    assert run("compress", field, "-o", out, "--rel", "1e-3").returncode == 0
    assert not stale.exists() and live.exists() and foreign.exists()
    assert socket.gethostname()


def test_sigkill_during_h5_compress_leaves_a_temporary_that_the_next_run_removes(tmp_path):
    h5py = pytest.importorskip("h5py")
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        for i in range(6):
            f.create_dataset(f"v{i}", data=rng.standard_normal((64, 256, 256)).astype(np.float32))
    out = tmp_path / "out.h5"
    env = {**os.environ, "ERRBOUND_PROGRESS": "0"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "errbound.cli",
            "h5",
            "compress",
            tmp_path / "in.h5",
            out,
            "--codec",
            "sz",
            "--rel",
            "1e-5",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    temporaries = []
    while time.monotonic() < deadline and proc.poll() is None:
        temporaries = list(tmp_path.glob(".out.h5.*errbound-tmp"))
        if temporaries and temporaries[0].stat().st_size > 0:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run ended before it could be killed: give it more work"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert temporaries and all(t.exists() for t in temporaries) and not out.exists()
    res = run("h5", "compress", tmp_path / "in.h5", out, "--codec", "fz", "--rel", "1e-2", timeout=600)
    assert res.returncode == 0, res.stderr
    assert out.exists() and not list(tmp_path.glob(".out.h5.*errbound-tmp"))


def test_a_npy_header_claiming_a_terabyte_is_a_clean_error(tmp_path):
    np.save(tmp_path / "small.npy", np.zeros(10, np.float32))
    forged = (tmp_path / "small.npy").read_bytes().replace(b"(10,)", b"(1000000000000,)")
    (tmp_path / "big.npy").write_bytes(forged)
    clean_failure(
        run("compress", tmp_path / "big.npy", "-o", tmp_path / "x.eb", "--rel", "1e-3"),
        "header declares (1000000000000,) float32",
    )


def test_hostile_bounds_files_are_clean_errors_or_work(tmp_path):
    h5py = pytest.importorskip("h5py")
    x = np.random.default_rng(1).standard_normal((64, 64))
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["x"] = x
    (tmp_path / "deep.toml").write_text("a = " + "[" * 100000 + "]" * 100000 + "\n")
    clean_failure(
        run("h5", "compress", tmp_path / "in.h5", tmp_path / "o.h5", "--config", tmp_path / "deep.toml"),
        "nested too deeply",
    )
    (tmp_path / "tiny.toml").write_text("[default]\npw_rel = 5e-324\n")
    res = run("h5", "compress", tmp_path / "in.h5", tmp_path / "o.h5", "--config", tmp_path / "tiny.toml")
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "o.h5") as f:
        np.testing.assert_array_equal(f["x"][...], x)  # no relative error allowed: stored exactly


def test_the_temporary_file_is_private_while_it_is_written(tmp_path):
    out = tmp_path / "secret.eb"
    out.write_bytes(b"old")
    out.chmod(0o600)
    with atomic.atomic_output(out) as tmp:
        assert stat.S_IMODE(tmp.stat().st_mode) == 0o600
        tmp.write_bytes(b"new")
    assert out.read_bytes() == b"new" and stat.S_IMODE(out.stat().st_mode) == 0o600
