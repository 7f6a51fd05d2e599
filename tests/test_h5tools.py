"""``errbound h5`` (errbound.h5tools) on a multi-group file: bounds per rule, everything else
unchanged, the config file's errors, atomic output, and MPI output equal to serial output."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")

from errbound.integrations.hdf5 import engine, files  # noqa: E402
from errbound.integrations.hdf5.config import ConfigError, parse_config  # noqa: E402

CONFIG = """\
min_bytes = 1000

[default]
codec = "sz"
rel = 1e-3

[[rule]]
match = "/ocean/*"
codec = "zfp"
abs = 0.01

[[rule]]
match = "Q"
psnr = 55

[[rule]]
match = "keep_*"
copy = true
"""


def field(shape, dtype=np.float32, seed=0):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.linspace(0, 3, n) for n in shape), indexing="ij")
    return (np.sin(grids[0]) * np.cos(grids[-1]) * 10 + 0.05 * rng.standard_normal(shape)).astype(dtype)


def make_input(path: Path) -> dict:
    data = {"T": field((20, 48, 64)), "Q": field((20, 48, 64), np.float64, 1), "sst": field((30, 90), seed=2)}
    data["sst"][0, :10] = np.nan
    with h5py.File(path, "w") as f:
        f.attrs["title"] = "multi-group test"
        f.attrs["version"] = np.int32(3)
        time = f.create_dataset("time", data=np.arange(20.0))
        time.make_scale("time")
        atm = f.create_group("atm")
        atm.attrs["model"] = "toy"
        t = atm.create_dataset("T", data=data["T"], chunks=(5, 48, 64))
        t.attrs["units"] = "K"
        t.dims[0].attach_scale(time)
        t.dims[0].label = "t"
        atm.create_dataset("Q", data=data["Q"], fillvalue=np.nan)
        atm.create_dataset("keep_T", data=data["T"][:2])
        ocean = f.create_group("ocean/surface")
        ocean.create_dataset("sst", data=data["sst"].astype(">f4"), fillvalue=np.float32(-999), chunks=(10, 90))
        f.create_dataset("ocean/mask", data=(data["sst"] > 0).astype(np.int8), compression="gzip")
        f.create_dataset("ocean/names", data=np.array([b"a", b"bb"]))
        f.create_dataset("tiny", data=np.ones(4, np.float32))
        f["alias"] = h5py.SoftLink("/atm/T")
    return data


def run_cli(*args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "ERRBOUND_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "errbound.cli", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        **kwargs,
    )


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def compressed(tmp_path_factory):
    folder = tmp_path_factory.mktemp("h5")
    data = make_input(folder / "in.h5")
    (folder / "bounds.toml").write_text(CONFIG)
    before = digest(folder / "in.h5")
    res = run_cli("h5", "compress", folder / "in.h5", folder / "out.h5", "--config", folder / "bounds.toml")
    assert res.returncode == 0, res.stderr
    assert digest(folder / "in.h5") == before, "the input changed"
    return folder, data, res


def test_each_dataset_gets_its_rules_bound(compressed):
    folder, data, _ = compressed
    with h5py.File(folder / "out.h5") as f:
        t = f["atm/T"][...]
        assert np.abs(t.astype(np.float64) - data["T"]).max() <= 1e-3 * float(data["T"].max() - data["T"].min())
        q = f["atm/Q"][...]
        value_range = float(data["Q"].max() - data["Q"].min())
        assert 20 * np.log10(value_range) - 10 * np.log10(np.mean((q - data["Q"]) ** 2)) >= 55
        sst = f["ocean/surface/sst"]
        assert sst.dtype == np.dtype(">f4")
        finite = np.isfinite(data["sst"])
        assert np.array_equal(np.isnan(sst[...]), ~finite)
        assert np.abs(sst[...][finite].astype(np.float64) - data["sst"][finite]).max() <= 0.01
        assert files.errbound_params(f["atm/T"]).codec == "sz"
        assert files.errbound_params(f["ocean/surface/sst"]).codec == "zfp"
        assert files.errbound_params(f["atm/Q"]).codec == "auto"  # its rule names no codec
        assert files.errbound_params(f["atm/keep_T"]) is None  # copy = true
        assert files.errbound_params(f["tiny"]) is None  # under min_bytes


def test_groups_attributes_other_datasets_fill_values_links_and_scales_are_kept(compressed):
    folder, data, _ = compressed
    with h5py.File(folder / "in.h5") as src, h5py.File(folder / "out.h5") as out:
        assert dict(out.attrs) == dict(src.attrs) and out.attrs["version"].dtype == np.int32
        assert out["atm"].attrs["model"] == "toy" and out["atm/T"].attrs["units"] == "K"
        for name in ("ocean/mask", "ocean/names", "tiny", "atm/keep_T", "time"):
            np.testing.assert_array_equal(out[name][...], src[name][...])
            assert out[name].dtype == src[name].dtype
        assert out["ocean/mask"].compression == "gzip"
        assert np.isnan(out["atm/Q"].fillvalue) and out["ocean/surface/sst"].fillvalue == -999
        assert out.get("alias", getlink=True).path == "/atm/T"
        assert out["atm/T"].dims[0].label == "t"
        assert [s.name for s in out["atm/T"].dims[0].values()] == ["/time"]
        assert h5py.h5ds.is_scale(out["time"].id)


def test_info_check_reports_errors_within_bounds(compressed):
    folder, _, compress_res = compressed
    assert "file ratio" in compress_res.stdout
    res = run_cli("h5", "info", folder / "out.h5", "--check", folder / "in.h5")
    assert res.returncode == 0, res.stderr + res.stdout
    assert "/atm/T" in res.stdout and "err/bound" in res.stdout
    rows = {r["path"]: r for r in files.file_info(folder / "out.h5", check=folder / "in.h5")}
    assert rows["/atm/T"]["err_over_bound"] <= 1 and rows["/ocean/surface/sst"]["err_over_bound"] <= 1
    assert rows["/atm/Q"]["psnr"] >= 55 and rows["/atm/T"]["ratio"] > 2


def test_without_a_codec_h5_compress_picks_per_chunk_with_auto(tmp_path):
    data = make_input(tmp_path / "in.h5")
    res = run_cli("h5", "compress", tmp_path / "in.h5", tmp_path / "out.h5", "--rel", "1e-3")
    assert res.returncode == 0, res.stderr
    rows = {r["path"]: r for r in files.file_info(tmp_path / "out.h5", check=tmp_path / "in.h5")}
    for name in ("/atm/T", "/atm/Q", "/ocean/surface/sst"):
        assert rows[name]["codec"] == "auto" and rows[name]["err_over_bound"] <= 1, rows[name]
    with h5py.File(tmp_path / "out.h5") as f:
        t = f["atm/T"][...].astype(np.float64)
    assert np.abs(t - data["T"]).max() <= 1e-3 * float(data["T"].max() - data["T"].min())


def test_decompress_restores_plain_datasets(compressed, tmp_path):
    folder, data, _ = compressed
    res = run_cli("h5", "decompress", folder / "out.h5", tmp_path / "plain.h5")
    assert res.returncode == 0, res.stderr
    with h5py.File(folder / "out.h5") as c, h5py.File(tmp_path / "plain.h5") as p:
        for name in ("atm/T", "atm/Q", "ocean/surface/sst"):
            assert files.errbound_params(p[name]) is None and not p[name].id.get_create_plist().get_nfilters()
            np.testing.assert_array_equal(p[name][...], c[name][...])
        assert p["atm/T"].attrs["units"] == "K" and p["atm/T"].dims[0].label == "t"


def test_refuses_to_overwrite_the_input_and_leaves_no_temporary_files(tmp_path):
    make_input(tmp_path / "in.h5")
    before = digest(tmp_path / "in.h5")
    res = run_cli("h5", "compress", tmp_path / "in.h5", tmp_path / "in.h5", "--rel", "1e-3")
    assert res.returncode == 1 and "refusing to overwrite" in res.stderr
    res = run_cli("h5", "compress", tmp_path / "in.h5", tmp_path / "out.h5", "--config", tmp_path / "missing.toml")
    assert res.returncode == 1 and "missing.toml" in res.stderr and "Traceback" not in res.stderr
    assert digest(tmp_path / "in.h5") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5"]


@pytest.mark.parametrize(
    "text, line, words",
    [
        ('[default]\nrel = 1e-3\n\n[[rule]]\nmatch = "T"\nrell = 1e-3\n', 6, "unknown key 'rell'"),
        ('[default]\ncodec = "sz"\nrel = -1\n', 3, "bad bound rel = -1"),
        ('[default]\nabs = "small"\n', 2, "must be a number"),
        ("[default]\nrel = 1e-3\nabs = 1\n", 3, "exactly one bound"),
        ('[[rule]]\ncodec = "sz"\nabs = 1\n', 1, "no 'match'"),
        ('[[rule]]\nmatch = "x"\ncodec = "nope"\nabs = 1\n', 3, "unknown codec 'nope'"),
        ('[[rule]]\nmatch = "x"\ncopy = true\nabs = 1\n', 3, "copy = true takes no"),
        ('[[rule]]\nmatch = "x"\nabs = 1\nstart_abs = 2\n', 4, "start_abs only goes with a psnr"),
        ("min_bytes = 10\ncolour = 1\n", 2, "unknown key 'colour'"),
    ],
)
def test_config_mistakes_name_the_line(text, line, words):
    with pytest.raises(ConfigError) as info:
        parse_config(text, "bounds.toml")
    assert f"bounds.toml:{line}:" in str(info.value) and words in str(info.value)


def test_config_syntax_errors_and_the_cli_message(tmp_path):
    with pytest.raises(ConfigError, match=r"bounds.toml: not valid TOML: .*line 2"):
        parse_config("[default]\nrel = = 1\n", "bounds.toml")
    (tmp_path / "b.toml").write_text("[default]\nrel = 1e-3\nbogus = 2\n")
    make_input(tmp_path / "in.h5")
    res = run_cli("h5", "compress", tmp_path / "in.h5", tmp_path / "out.h5", "--config", tmp_path / "b.toml")
    assert res.returncode == 1 and "b.toml:3: unknown key 'bogus'" in res.stderr
    assert not (tmp_path / "out.h5").exists()


def test_rules_match_paths_and_names_first_match_wins():
    config = parse_config(CONFIG)
    assert config.rule_for("/ocean/surface/sst").codec == "zfp"
    assert config.rule_for("/atm/Q").mode == "psnr"
    assert config.rule_for("/atm/keep_T").mode is None
    assert config.rule_for("/elsewhere/x").mode == "rel"
    assert parse_config('[[rule]]\nmatch = "/a/*"\nabs = 1\n').rule_for("/b/c") is None


def test_a_large_dataset_is_processed_chunk_by_chunk(tmp_path):
    x = field((64, 100, 100))
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("big", data=x, chunks=(4, 100, 100))  # 160 kB chunks: merged to <= 4 MiB ones
    reports = engine.compress_file(tmp_path / "in.h5", tmp_path / "out.h5", parse_config("[default]\nabs = 0.01\n"))
    with h5py.File(tmp_path / "out.h5") as f:
        assert f["big"].chunks[1:] == (100, 100) and np.prod(f["big"].chunks) * 4 <= files.TARGET_CHUNK_BYTES
        assert np.abs(f["big"][...] - x).max() <= 0.01
    assert reports[0].action == "compressed" and reports[0].ratio > 2


def test_mpi_two_ranks_write_the_same_file_as_one_process(tmp_path):
    pytest.importorskip("mpi4py")
    mpiexec = Path(sys.executable).parent / "mpiexec"
    if not mpiexec.exists():
        mpiexec = shutil.which("mpiexec")
    if mpiexec is None:
        pytest.skip("no mpiexec beside mpi4py")
    make_input(tmp_path / "in.h5")
    (tmp_path / "bounds.toml").write_text(CONFIG)
    serial = run_cli("h5", "compress", tmp_path / "in.h5", tmp_path / "serial.h5", "--config", tmp_path / "bounds.toml")
    assert serial.returncode == 0, serial.stderr
    env = {**os.environ, "ERRBOUND_PROGRESS": "0", "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    res = subprocess.run(
        [
            str(mpiexec),
            "-n",
            "2",
            sys.executable,
            "-m",
            "errbound.cli",
            "h5",
            "compress",
            str(tmp_path / "in.h5"),
            str(tmp_path / "mpi.h5"),
            "--config",
            str(tmp_path / "bounds.toml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr + res.stdout
    assert "2 process(es)" in res.stdout
    assert digest(tmp_path / "mpi.h5") == digest(tmp_path / "serial.h5")


def test_a_psnr_start_bound_that_misses_is_tightened_before_anything_is_written(tmp_path):
    x = field((40, 50, 60), np.float64, seed=5)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("v", data=x)
    value_range = float(x.max() - x.min())
    sizes = {}
    for name, start in (("good", None), ("bad", value_range / 10)):
        text = "[default]\npsnr = 50\n" + (f"start_abs = {start}\n" if start else "")
        reports = engine.compress_file(tmp_path / "in.h5", tmp_path / f"{name}.h5", parse_config(text))
        assert reports[0].psnr >= 50 and (reports[0].tries > 1) == (name == "bad")
        with h5py.File(tmp_path / f"{name}.h5") as f:
            y = f["v"][...]
        assert 20 * np.log10(value_range) - 10 * np.log10(np.mean((y - x) ** 2)) >= 50
        sizes[name] = (tmp_path / f"{name}.h5").stat().st_size
    assert sizes["bad"] < 1.2 * sizes["good"]  # no chunks of the missed tries left behind in the file


@pytest.mark.parametrize("rule", ["rel = 1e-3", "psnr = 60"])
def test_a_growable_datasets_range_is_its_values_not_its_padded_chunks_fill(tmp_path, rule):
    """The last chunk of a growable dataset is padded with its fill value (0 here, beside
    values near 100): counted in the range, it made the rel bound 100x too loose."""
    x = 100 + np.random.default_rng(0).random(50_000)
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("x", data=x, chunks=(40_000,), maxshape=(None,))
    reports = engine.compress_file(tmp_path / "in.h5", tmp_path / "out.h5", parse_config(f"[default]\n{rule}\n"))
    with h5py.File(tmp_path / "out.h5") as f:
        y = f["x"][...]
    value_range = float(x.max() - x.min())
    if rule.startswith("rel"):
        assert reports[0].abs_bound == pytest.approx(1e-3 * value_range)
        assert np.abs(y - x).max() <= 1e-3 * value_range
    else:
        assert 20 * np.log10(value_range) - 10 * np.log10(np.mean((y - x) ** 2)) >= 60
    (row,) = files.file_info(tmp_path / "out.h5", check=tmp_path / "in.h5")
    assert row["err_over_bound"] <= 1


def test_filter_parameters_edited_to_another_chunk_shape_are_refused_before_reading(tmp_path):
    """HDF5 trusts the size a filter returns, and the filter never sees the dataset: a file
    whose parameters (and chunk) were edited to 10 of the dataset's 50 rows made HDF5 read
    past the decoded values (a crash, or memory as numbers). errbound's tools compare them
    with the dataset first."""
    import struct

    import errbound
    from errbound.integrations.hdf5 import chunks as chunk_codec

    x = np.linspace(0, 1, 50_000, dtype=np.float32).reshape(50, 1000)
    path = tmp_path / "forged.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("a", shape=x.shape, dtype="f4", chunks=x.shape, **chunk_codec.filter("sz", abs=1e-3))
        words = list(ds.id.get_create_plist().get_filter_by_id(chunk_codec.FILTER_ID)[1])
        params = chunk_codec.parse_cd_values(words)
        small = chunk_codec.FilterParams(
            params.codec, params.mode, params.value, params.abs_bound, params.dtype, (10, 1000)
        )
        ds.id.write_direct_chunk((0, 0), chunk_codec.encode_chunk(x[:10], small), filter_mask=0)
    raw = path.read_bytes()
    stored = struct.pack(f"<{len(words)}I", *words)
    assert raw.count(stored) == 1
    forged = words[:10] + [10] + words[11:]
    path.write_bytes(raw.replace(stored, struct.pack(f"<{len(forged)}I", *forged)))
    with pytest.raises(
        errbound.CorruptStreamError, match=r"/a: .* describe \[10, 1000\] float32 chunks, the dataset has \[50, 1000\]"
    ):
        files.file_info(path)
    with pytest.raises(errbound.CorruptStreamError, match="describe"):
        files.decompress_file(path, tmp_path / "plain.h5")
    assert not (tmp_path / "plain.h5").exists()


def test_a_chunk_over_hdf5s_limit_on_a_growable_axis_is_refused_before_it_is_padded(tmp_path):
    """A growable axis keeps the chunk length a rule asks for: 10^9 values (8 GB, over HDF5's
    4 GiB chunk limit) took 20 GiB of memory padding an 80 kB dataset's chunk."""
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("x", data=np.arange(10_000.0), chunks=(1000,), maxshape=(None,))
    config = parse_config("[default]\nabs = 1e-3\nchunks = [1000000000]\n")
    with pytest.raises(files.H5ToolError, match=r"/x: chunks \[1000000000\] would hold 8000000000 bytes"):
        engine.compress_file(tmp_path / "in.h5", tmp_path / "out.h5", config)
    assert not (tmp_path / "out.h5").exists()
    config = parse_config("[default]\nabs = 1e-3\nchunks = [4096]\n")  # longer than the data: fine
    engine.compress_file(tmp_path / "in.h5", tmp_path / "out.h5", config)
    with h5py.File(tmp_path / "out.h5") as f:
        assert f["x"].chunks == (4096,) and np.abs(f["x"][...] - np.arange(10_000.0)).max() <= 1e-3


@pytest.mark.parametrize("rule", ["rel = 1e-3", "psnr = 60"])
def test_a_range_beyond_float64_is_stored_exactly_as_compress_does(tmp_path, rule):
    """Values near +-1e308: their range overflows to inf and so did rel * range (the filter
    refused the infinite bound and the file was not written). compress() stores such an
    array exactly; so does h5 compress."""
    x = np.concatenate(([1e308, -1e308], np.random.default_rng(0).random(1000)))
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["x"] = x
    engine.compress_file(tmp_path / "in.h5", tmp_path / "out.h5", parse_config(f"[default]\n{rule}\n"))
    with h5py.File(tmp_path / "out.h5") as f:
        assert np.array_equal(f["x"][...], x)
