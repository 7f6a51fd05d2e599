"""The ``errbound`` command, run as a real subprocess (``python -m errbound.cli``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest


def run(*args: str, cwd=None, module: str = "errbound.cli", env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "ERRBOUND_PROGRESS": "0", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", module, *map(str, args)], capture_output=True, text=True, cwd=cwd, env=env, timeout=120
    )


def field(shape=(12, 16, 20), dtype=np.float32) -> np.ndarray:
    rng = np.random.default_rng(7)
    grids = np.meshgrid(*(np.linspace(0, 3, n) for n in shape), indexing="ij")
    smooth = np.sin(grids[0]) * np.cos(grids[1]) + 0.5 * grids[-1]
    return (smooth + 0.01 * rng.standard_normal(shape)).astype(dtype)


def assert_clean_failure(res: subprocess.CompletedProcess, status: int) -> None:
    assert res.returncode == status, res.stderr
    assert "Traceback" not in res.stderr
    assert "error:" in res.stderr


def test_npy_round_trip_stays_within_rel_bound(tmp_path):
    x = field(dtype=np.float64)
    np.save(tmp_path / "x.npy", x)
    res = run("compress", tmp_path / "x.npy", "-o", tmp_path / "x.eb", "--rel", "1e-3")
    assert res.returncode == 0, res.stderr
    assert "ratio" in res.stdout
    res = run("decompress", tmp_path / "x.eb", "-o", tmp_path / "y.npy")
    assert res.returncode == 0, res.stderr
    y = np.load(tmp_path / "y.npy")
    assert y.dtype == x.dtype and y.shape == x.shape
    assert np.max(np.abs(x - y)) <= 1e-3 * (x.max() - x.min())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.eb", "x.npy", "y.npy"]  # no temp files left


def test_raw_round_trip_takes_shape_from_file_name(tmp_path):
    x = field()
    x.astype("<f4").tofile(tmp_path / "temp_12x16x20.f32")
    res = run("compress", "temp_12x16x20.f32", "-o", "t.eb", "--abs", "0.01", "--codec", "zfp", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    res = run("decompress", "t.eb", "-o", "back.f32", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    y = np.fromfile(tmp_path / "back.f32", "<f4").reshape(x.shape)
    assert np.max(np.abs(x.astype(np.float64) - y)) <= 0.01


def test_raw_input_with_explicit_shape_and_pw_rel(tmp_path):
    x = field() + 2.0
    x.tofile(tmp_path / "plain.f32")
    res = run("compress", "plain.f32", "-o", "p.eb", "--pw-rel", "1e-2", "--shape", "12,16,20", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert run("decompress", "p.eb", "-o", "p.npy", cwd=tmp_path).returncode == 0
    y = np.load(tmp_path / "p.npy")
    assert np.all(np.abs(x - y) <= 1e-2 * np.abs(x))


def test_info_shows_codec_shape_bound_stages_and_ratio(tmp_path):
    np.save(tmp_path / "x.npy", field())
    assert run("compress", "x.npy", "-o", "x.eb", "--rel", "1e-2", cwd=tmp_path).returncode == 0
    res = run("info", "x.eb", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    for text in ("codec           sz", "(12, 16, 20)", "float32", "rel 0.01", "ratio", "stages", "zstd"):
        assert text in res.stdout
    meta = json.loads(run("info", "x.eb", "--json", cwd=tmp_path).stdout)
    assert meta["codec"] == "sz" and meta["shape"] == [12, 16, 20]
    assert meta["compressed_bytes"] == (tmp_path / "x.eb").stat().st_size


def test_bench_prints_ours_beside_the_peer(tmp_path):
    np.save(tmp_path / "x.npy", field())
    res = run(
        "bench",
        "x.npy",
        "--rel",
        "1e-2,1e-3",
        "--codecs",
        "sz",
        "--peers",
        "zfp",
        "--repeat",
        "1",
        "--min-time",
        "0",
        "--json",
        "b.json",
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    for text in ("errbound-sz", "zfp", "ratio", "PSNR", "err/eb", "viol", "MB/s"):
        assert text in res.stdout
    rows = json.loads((tmp_path / "b.json").read_text())["rows"]
    assert {(r["codec"], r["eb"]) for r in rows} == {(c, e) for c in ("errbound-sz", "zfp") for e in (1e-2, 1e-3)}
    assert all(r["viol"] == 0 and r["err_over_eb"] <= 1 and r["ratio"] > 1 for r in rows)


def test_python_dash_m_errbound_and_version():
    res = run("--version", module="errbound")
    assert res.returncode == 0
    assert res.stdout.startswith("errbound ")


def test_missing_input_exits_1_with_message(tmp_path):
    res = run("compress", tmp_path / "nope.npy", "-o", tmp_path / "o.eb", "--rel", "1e-3")
    assert_clean_failure(res, 1)
    assert "nope.npy" in res.stderr and "no such file" in res.stderr
    assert not (tmp_path / "o.eb").exists()


@pytest.mark.parametrize("value", ["abc", "-1", "nan"])
def test_bad_rel_value_exits_2(tmp_path, value):
    res = run("compress", "x.npy", "-o", "x.eb", f"--rel={value}", cwd=tmp_path)
    assert_clean_failure(res, 2)
    assert "--rel" in res.stderr


def test_two_bounds_exit_2(tmp_path):
    res = run("compress", "x.npy", "-o", "x.eb", "--rel", "1e-3", "--abs", "1", cwd=tmp_path)
    assert_clean_failure(res, 2)
    assert "not allowed with" in res.stderr


def test_refuses_to_overwrite_the_input(tmp_path):
    x = field()
    np.save(tmp_path / "x.npy", x)
    before = (tmp_path / "x.npy").read_bytes()
    res = run("compress", "x.npy", "-o", "./x.npy", "--rel", "1e-3", cwd=tmp_path)
    assert_clean_failure(res, 1)
    assert "overwrite" in res.stderr
    assert (tmp_path / "x.npy").read_bytes() == before


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "x.npy", "--codecs", "fz", "--peers", "none", "--repeat", "1", "--json", "./x.npy"],
        ["bench", "x.npy", "--codecs", "fz", "--peers", "none", "--repeat", "1", "--plot", "x.npy"],
        ["tune", "x.npy", "--target", "psnr=40", "-o", "x.npy"],
    ],
)
def test_no_output_option_overwrites_the_input(tmp_path, args):
    """--json, --plot and tune's -o wrote over the input array."""
    np.save(tmp_path / "x.npy", field())
    before = (tmp_path / "x.npy").read_bytes()
    res = run(*args, cwd=tmp_path)
    assert_clean_failure(res, 1)
    assert "refusing to overwrite the input" in res.stderr
    assert (tmp_path / "x.npy").read_bytes() == before


@pytest.mark.parametrize(
    "args, says, status",
    [
        (["warmup", "--codec", "none"], "name at least one of", 2),
        (["tune", "x.npy", "--target", "psnr=40", "--codecs", "none"], "name at least one of", 2),
        (["bench", "x.npy", "--min-time", "nan"], "finite number", 2),
        (["tune", "x.npy", "--target", "psnr=40", "-o", "b.toml"], "-o and --verify are for HDF5 files", 1),
        (["tune", "x.npy", "--target", "psnr=40", "--verify"], "-o and --verify are for HDF5 files", 1),
        (["compress", "x.npy", "-o", "x.eb", "--rel", "1e-3", "--dtype", "f64"], "--dtype f64 is for raw inputs", 1),
        (["bench", "i.npy", "--peers", "none"], "holds int64 values", 1),
    ],
)
def test_options_that_were_ignored_or_crashed_give_one_clear_error(tmp_path, args, says, status):
    np.save(tmp_path / "x.npy", field())
    np.save(tmp_path / "i.npy", np.arange(100))
    res = run(*args, cwd=tmp_path)
    assert_clean_failure(res, status)
    assert says in res.stderr
    assert not (tmp_path / "b.toml").exists()


def test_tune_reads_a_raw_array_with_shape_and_says_when_a_target_is_missed(tmp_path):
    field().tofile(tmp_path / "raw.f32")
    res = run("tune", "raw.f32", "--shape", "12,16,20", "--target", "ratio=1e9", "--codecs", "sz", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    assert "TARGET ratio=1e9 NOT MET" in res.stdout


def test_a_closed_pipe_ends_quietly(tmp_path):
    np.save(tmp_path / "x.npy", field())
    assert run("compress", "x.npy", "-o", "x.eb", "--rel", "1e-3", cwd=tmp_path).returncode == 0
    cli = f"{sys.executable} -m errbound.cli info x.eb"
    res = subprocess.run(
        ["bash", "-c", f"set -o pipefail; {cli} | head -c 1 >/dev/null"], capture_output=True, text=True, cwd=tmp_path
    )
    assert "Broken pipe" not in res.stderr and "Traceback" not in res.stderr, res.stderr


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_stream_exits_1_and_writes_nothing(tmp_path, damage):
    np.save(tmp_path / "x.npy", field())
    assert run("compress", "x.npy", "-o", "x.eb", "--rel", "1e-3", cwd=tmp_path).returncode == 0
    blob = bytearray((tmp_path / "x.eb").read_bytes())
    if damage == "flip":
        blob[len(blob) // 2] ^= 0x40
    else:
        del blob[len(blob) // 2 :]
    (tmp_path / "x.eb").write_bytes(bytes(blob))
    res = run("decompress", "x.eb", "-o", "y.npy", cwd=tmp_path)
    assert_clean_failure(res, 1)
    assert "corrupt" in res.stderr.lower() or "checksum" in res.stderr.lower()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.eb", "x.npy"]


def test_raw_input_of_the_wrong_size_or_without_shape_exits_1(tmp_path):
    np.zeros(10, "<f4").tofile(tmp_path / "a_3x4.f32")
    np.zeros(10, "<f4").tofile(tmp_path / "noshape.f32")
    res = run("compress", "a_3x4.f32", "-o", "a.eb", "--rel", "1e-3", cwd=tmp_path)
    assert_clean_failure(res, 1)
    assert "40 bytes" in res.stderr
    res = run("compress", "noshape.f32", "-o", "a.eb", "--rel", "1e-3", cwd=tmp_path)
    assert_clean_failure(res, 1)
    assert "--shape" in res.stderr


def test_progress_bar_draws_only_when_forced_and_long_enough(monkeypatch):
    import io

    from errbound.integrations.progress import Progress, progress

    monkeypatch.delenv("ERRBOUND_PROGRESS", raising=False)
    quiet = io.StringIO()
    assert list(progress(range(5), label="x", stream=quiet)) == list(range(5))  # not a terminal: silent
    assert quiet.getvalue() == ""
    forced = io.StringIO()
    with Progress(4, "work", stream=forced, force=True, min_seconds=0) as bar:
        for i in range(4):
            bar.update(note=f"step {i}")
    assert "work [" in forced.getvalue() and "4/4" in forced.getvalue()
    assert forced.getvalue().endswith("\n")


def test_bench_compiles_on_a_cold_cache(tmp_path):
    # bench pins numba to one thread after numba has loaded; changing NUMBA_NUM_THREADS then
    # made the first compilation fail ("once the threads have been launched"), so a fresh
    # install's first `errbound bench` reported every errbound codec as failed
    np.save(tmp_path / "x.npy", field())
    res = run(
        "bench",
        "x.npy",
        "--rel",
        "1e-2",
        "--codecs",
        "fz",
        "--peers",
        "none",
        "--repeat",
        "1",
        "--min-time",
        "0",
        cwd=tmp_path,
        env={"NUMBA_CACHE_DIR": str(tmp_path / "cold-cache")},
    )
    assert res.returncode == 0, res.stderr
    assert "errbound-fz" in res.stdout and "ERROR" not in res.stdout


def test_compress_and_decompress_time_their_work_apart_from_the_kernels_set_up(tmp_path):
    """Every CLI call is a process's first use of its kernels: the speed printed is the
    codec's, with the one-time compile (empty cache) or load (warm cache) named apart."""
    np.save(tmp_path / "x.npy", field(shape=(64, 256), dtype=np.float64))
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "cold-cache")}
    lines = []
    for _ in range(2):
        res = run("compress", "x.npy", "-o", "x.eb", "--codec", "fz", "--rel", "1e-3", cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
        lines.append(res.stdout.splitlines()[-1])
    cold, warm = lines
    assert "compiling kernels (" in cold and "signatures; once per machine" in cold, cold
    assert "loading compiled kernels (once per process)" in warm, warm
    for line in lines:  # "T s: S s <what>, W s compressing (R MB/s)": T = S + W, R = bytes / W
        total = float(line.split("bound --rel 0.001 (abs ")[1].split("), ")[1].split(" s:")[0])
        setup = float(line.split(" s: ")[1].split(" s ")[0])
        own = float(line.split(", ")[-1].split(" s compressing")[0])
        rate = float(line.split("(")[-1].split(" MB/s")[0])
        assert abs(total - setup - own) <= 0.0016 and own > 0  # three roundings of 0.0005
        # ``own`` is printed to the millisecond, the rate from the unrounded seconds
        mb = 64 * 256 * 8 / 1e6
        assert mb / (own + 0.0005) - 0.05 <= rate <= mb / max(own - 0.0005, 1e-9) + 0.05, line
    for _ in range(2):  # the first compiles the decoder's kernels
        res = run("decompress", "x.eb", "-o", "y.npy", cwd=tmp_path, env=env)
        assert res.returncode == 0, res.stderr
    assert "loading compiled kernels (once per process)" in res.stdout and "s decompressing (" in res.stdout
    # raw compresses without kernels: nothing to name
    res = run("compress", "x.npy", "-o", "r.eb", "--codec", "raw", "--rel", "1e-3", cwd=tmp_path, env=env)
    assert res.returncode == 0 and "kernels" not in res.stdout and "MB/s)" in res.stdout, res.stdout


def test_h5_compress_refuses_a_codec_beside_a_config(tmp_path):
    """--codec was silently ignored with --config (the config's codecs were used)."""
    h5py = pytest.importorskip("h5py")
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("x", data=field())
    (tmp_path / "b.toml").write_text('[default]\ncodec = "sz"\nrel = 1e-3\n')
    res = run("h5", "compress", "in.h5", "out.h5", "--config", "b.toml", "--codec", "zfp", cwd=tmp_path)
    assert_clean_failure(res, 1)
    assert "--codec goes with a bound flag" in res.stderr and not (tmp_path / "out.h5").exists()
    assert run("h5", "compress", "in.h5", "out.h5", "--config", "b.toml", cwd=tmp_path).returncode == 0
