"""The HDF5 plugin (libh5errbound.so) with real clients that nobody here wrote.

A netCDF-4 file (groups, dimensions, attributes, a fill value, an integer mask) is compressed by
``errbound h5 compress``; then, each in a process of its own with only ``HDF5_PLUGIN_PATH``
set and no ``import errbound``: h5py, xarray's h5netcdf engine, netCDF4-python and xarray's
default (netcdf4) engine -- h5py's and netCDF4's wheels each bring their own HDF5 -- and, where
Debian's hdf5-tools are installed, h5dump and h5repack (programs without Python). The same reads
in a process that imports errbound first. Every value must come back within its bound. Files
written through the plugin (h5py without errbound, h5repack) must be byte-identical, chunk by
chunk, to those the in-process filter writes, and a damaged chunk must fail cleanly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import textwrap
from pathlib import Path

import numpy as np
import pytest

h5py = pytest.importorskip("h5py")
netCDF4 = pytest.importorskip("netCDF4")

import errbound  # noqa: E402
from errbound.cli.main import main as cli  # noqa: E402
from errbound.integrations.hdf5 import chunks as chunk_codec  # noqa: E402
from errbound.integrations.hdf5 import files, plugin  # noqa: E402

COMPRESSED = ("/atm/T", "/atm/u", "/ocn/sst")
BOUNDS_TOML = """
[default]
rel = 1e-3

[[rule]]
match = "/ocn/*"
codec = "fz"
abs = 0.01

[[rule]]
match = "/atm/u"
codec = "sperr"
abs = 0.05
"""
HDF5_TOOLS = shutil.which("h5dump") and shutil.which("h5repack")
needs_hdf5_tools = pytest.mark.skipif(not HDF5_TOOLS, reason="h5dump/h5repack not installed (apt install hdf5-tools)")


def smooth_field(shape, seed, scale=1.0, offset=0.0):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    field = sum(np.sin(g * (1.3 + i) + seed) for i, g in enumerate(grids))
    return (offset + scale * (field + 0.05 * rng.standard_normal(shape))).astype(np.float64)


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """(folder, source file, compressed file, {path: original values}, {path: absolute bound})."""
    folder = tmp_path_factory.mktemp("plugin")
    src, out = folder / "in.nc", folder / "out.nc"
    with netCDF4.Dataset(src, "w") as d:
        d.title = "errbound plugin test"
        for name, n in (("lev", 10), ("lat", 40), ("lon", 70)):
            d.createDimension(name, n)
        lat = d.createVariable("lat", "f8", ("lat",))
        lat[:], lat.units = np.linspace(-90, 90, 40), "degrees_north"
        atm, ocn = d.createGroup("atm"), d.createGroup("ocn")
        atm.history = "made by tests/test_hdf5_plugin.py"
        t = atm.createVariable("T", "f4", ("lev", "lat", "lon"), chunksizes=(4, 16, 32))  # edge chunks
        t[:], t.units = smooth_field((10, 40, 70), 1, 10.0, 250.0), "K"
        u = atm.createVariable("u", "f4", ("lev", "lat", "lon"))
        u[:], u.units = smooth_field((10, 40, 70), 2, 8.0), "m/s"
        sst = ocn.createVariable("sst", "f8", ("lat", "lon"), fill_value=-999.0)
        sst[:], sst.long_name = smooth_field((40, 70), 3, 3.0, 290.0), "sea surface temperature"
        ocn.createVariable("mask", "i1", ("lat", "lon"))[:] = smooth_field((40, 70), 4) > 0
    (folder / "bounds.toml").write_text(BOUNDS_TOML)
    assert cli(["h5", "compress", str(src), str(out), "--config", str(folder / "bounds.toml")]) == 0
    with h5py.File(out) as f:  # the default rule names no codec: auto, as errbound h5 compress writes by default
        assert (
            chunk_codec.parse_cd_values(
                f["atm/T"].id.get_create_plist().get_filter_by_id(chunk_codec.FILTER_ID)[1]
            ).codec
            == "auto"
        )
    originals, bounds = {}, {}
    with h5py.File(src, "r") as fin, h5py.File(out, "r") as fout:
        for path in COMPRESSED:
            params = files.errbound_params(fout[path])
            assert params is not None, path
            originals[path] = fin[path][...]
            bounds[path] = params.abs_bound or params.value
    return folder, src, out, originals, bounds


def build_prerequisites_missing() -> str:
    """Why this machine cannot compile the plugin at all ("" when it can), checked here, not taken from the build."""
    compiler = (sysconfig.get_config_var("CC") or "cc").split()
    if not shutil.which(compiler[0]):
        return f"no C compiler ({compiler[0]} not found)"
    include = sysconfig.get_paths()["include"]
    if not os.path.isfile(os.path.join(include, "Python.h")):
        return f"no Python headers ({include}/Python.h missing)"
    return ""


def plugin_library() -> Path:
    """The built plugin; a skip where this machine cannot build it, a failure where the build should have worked."""
    try:
        return plugin.library()
    except plugin.PluginNotBuiltError as exc:
        missing = build_prerequisites_missing()
        if missing:
            pytest.skip(f"errbound's HDF5 plugin cannot be built on this machine: {missing}")
        pytest.fail(f"a C compiler and the Python headers are here, yet the plugin was not built: {exc}", pytrace=False)


def client_env(**extra) -> dict:
    """The environment of a client: this one's, with HDF5_PLUGIN_PATH and nothing of errbound's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HDF5_PLUGIN", "ERRBOUND_"))}
    env["HDF5_PLUGIN_PATH"] = str(plugin_library().parent)
    env.update(extra)
    return env


def run_client(script: str, *args, python: str = sys.executable, **env) -> subprocess.CompletedProcess:
    done = subprocess.run(
        [python, "-c", textwrap.dedent(script), *map(str, args)],
        env=client_env(**env),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def check_reads(folder: Path, case, clients: list[str]) -> None:
    """Every client's copy of every compressed dataset (``<client>__<path>.npy``) is within its bound."""
    _, _, _, originals, bounds = case
    for client in clients:
        for path, original in originals.items():
            got = np.load(folder / f"{client}__{path.strip('/').replace('/', '.')}.npy")
            assert got.shape == original.shape and got.dtype == original.dtype, (client, path)
            err = np.abs(got.astype(np.float64) - original.astype(np.float64)).max()
            assert err <= bounds[path], f"{client} read {path} with max error {err} > bound {bounds[path]}"
            assert err > 0, f"{client} read {path} exactly: not the lossy data?"


READERS = """
import sys
from pathlib import Path
import numpy as np
if not IMPORT_ERRBOUND:
    assert "errbound" not in sys.modules
else:
    import errbound
out, folder = sys.argv[1], Path(sys.argv[2])
paths = ["/atm/T", "/atm/u", "/ocn/sst"]

def save(client, path, values):
    np.save(folder / f"{client}__{path.strip('/').replace('/', '.')}.npy", np.ma.getdata(values))

def read_h5py():
    import h5py
    with h5py.File(out, "r") as f:
        for p in paths:
            save("h5py", p, f[p][...])
            save("h5py-partial", p, np.concatenate([f[p][:3], f[p][3:]]))

def read_netcdf4():
    import netCDF4
    with netCDF4.Dataset(out) as d:
        for p in paths:
            group, name = p.strip("/").split("/")
            save("netcdf4", p, d[group][name][:])

def read_xarray(engine):
    import xarray as xr
    for p in paths:
        group, name = p.strip("/").split("/")
        with xr.open_dataset(out, group=group, engine=engine, mask_and_scale=False) as ds:
            save(f"xarray-{engine}", p, ds[name].values)
"""


def test_plugin_library_is_built_and_named_for_hdf5():
    path = plugin_library()
    assert path.name.startswith("lib") and ".so" in path.name  # the only files HDF5 tries
    assert [p.name for p in plugin.directory().iterdir() if p.name.startswith("lib")] == [path.name]
    assert (plugin.directory() / plugin.BRIDGE_NAME).is_file() and not plugin.not_built_reason()


def test_a_missing_plugin_says_why_the_install_could_not_build_it(tmp_path, monkeypatch):
    (tmp_path / plugin.NOT_BUILT).write_text("no C compiler (gcc not found)\n")
    monkeypatch.setattr(plugin, "directory", lambda: tmp_path)
    with pytest.raises(plugin.PluginNotBuiltError, match=r"h5errbound_python.so\): no C compiler \(gcc not found\)"):
        plugin.library()


def test_h5py_and_h5netcdf_read_through_the_plugin_without_errbound(case, tmp_path):
    folder, _, out, _, _ = case
    run_client(
        "IMPORT_ERRBOUND = False\n" + READERS + "read_h5py()\nread_xarray('h5netcdf')\n",
        out,
        tmp_path,
    )
    check_reads(tmp_path, case, ["h5py", "h5py-partial", "xarray-h5netcdf"])


def test_netcdf4_and_xarray_default_engine_read_through_the_plugin_without_errbound(case, tmp_path):
    _, _, out, _, _ = case
    run_client("IMPORT_ERRBOUND = False\n" + READERS + "read_netcdf4()\nread_xarray('netcdf4')\n", out, tmp_path)
    check_reads(tmp_path, case, ["netcdf4", "xarray-netcdf4"])


def test_every_client_reads_in_a_process_that_imported_errbound(case, tmp_path):
    _, _, out, _, _ = case
    run_client(
        "IMPORT_ERRBOUND = True\n" + READERS + "read_h5py()\nread_netcdf4()\nread_xarray('h5netcdf')\n"
        "read_xarray('netcdf4')\n",
        out,
        tmp_path,
    )
    check_reads(tmp_path, case, ["h5py", "netcdf4", "xarray-h5netcdf", "xarray-netcdf4"])


STATIC_PYTHON_PROBE = """
import sys
import h5py, numba, numpy, zstandard  # what reading the test file with errbound's code needs
maps = open("/proc/self/maps").read()
print("%d.%d" % sys.version_info[:2], "libpython" in maps)
"""


def static_python() -> str:
    """A python whose runtime is linked into its executable, not a libpython (Debian's /usr/bin/python3, or the
    venv python ERRBOUND_TEST_STATIC_PYTHON names), with h5py and errbound's dependencies; else a skip."""
    python = os.environ.get("ERRBOUND_TEST_STATIC_PYTHON") or shutil.which("python3", path="/usr/bin")
    if not python:
        pytest.skip("no /usr/bin/python3 (set ERRBOUND_TEST_STATIC_PYTHON to a python without libpython)")
    probe = subprocess.run([python, "-c", STATIC_PYTHON_PROBE], capture_output=True, text=True, timeout=120)
    if probe.returncode:
        pytest.skip(
            f"{python} lacks h5py or errbound's dependencies: {(probe.stderr.strip().splitlines() or ['?'])[-1]}"
        )
    version, shared = probe.stdout.split()
    if version != f"{sys.version_info.major}.{sys.version_info.minor}" or shared == "True":
        pytest.skip(f"{python} is Python {version}{' with a shared libpython' if shared == 'True' else ''}")
    return python


def test_a_python_with_its_runtime_in_the_executable_reads_through_the_plugin(case, tmp_path):
    """Debian's python3 has no libpython: the plugin must use the runtime in the executable, not load one."""
    _, _, out, _, _ = case
    script = "IMPORT_ERRBOUND = False\n" + READERS + "read_h5py()\n"
    script += "assert 'errbound' in sys.modules and 'libpython' not in open('/proc/self/maps').read()\n"
    run_client(script, out, tmp_path, python=static_python())
    check_reads(tmp_path, case, ["h5py", "h5py-partial"])


WRITER = """
import sys
import numpy as np, h5py
assert "errbound" not in sys.modules
data, words, out = np.load(sys.argv[1]), [int(w) for w in sys.argv[2].split(",")], sys.argv[3]
with h5py.File(out, "w") as f:
    f.create_dataset("T", data=data, chunks=(4, 16, 32), compression=60160, compression_opts=tuple(words))
"""


def assert_same_chunks(a: h5py.Dataset, b: h5py.Dataset) -> None:
    (a_id, _, a_values, a_name), (b_id, _, b_values, b_name) = (
        ds.id.get_create_plist().get_filter(0) for ds in (a, b)
    )  # the flags may differ: h5repack's UD=...,0 makes the filter mandatory, h5py's optional
    assert (a_id, a_values, a_name) == (b_id, b_values, b_name)
    for index in range(a.id.get_num_chunks()):
        offset = a.id.get_chunk_info(index).chunk_offset
        assert a.id.read_direct_chunk(offset) == b.id.read_direct_chunk(offset), offset


def test_files_written_through_the_plugin_equal_the_in_process_filters(case, tmp_path):
    _, _, _, originals, _ = case
    data = originals["/atm/T"]
    np.save(tmp_path / "T.npy", data)
    options = chunk_codec.filter("sz", abs=0.02)
    words = ",".join(map(str, options["compression_opts"]))
    run_client(WRITER, tmp_path / "T.npy", words, tmp_path / "plugin.h5")
    with h5py.File(tmp_path / "inprocess.h5", "w") as f:
        f.create_dataset("T", data=data, chunks=(4, 16, 32), **options)
    with h5py.File(tmp_path / "plugin.h5", "r") as a, h5py.File(tmp_path / "inprocess.h5", "r") as b:
        assert_same_chunks(a["T"], b["T"])
        assert np.abs(a["T"][...].astype(np.float64) - data).max() <= 0.02


@needs_hdf5_tools
def test_h5dump_reads_every_value_within_its_bound(case, tmp_path):
    _, _, out, originals, _ = case
    for path, original in originals.items():
        target = tmp_path / f"h5dump__{path.strip('/').replace('/', '.')}.npy"
        raw = tmp_path / "dump.bin"
        done = subprocess.run(
            ["h5dump", "-d", path, "-b", "LE", "-o", str(raw), str(out)],
            env=client_env(),
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0 and "errbound HDF5 filter" not in done.stderr, done.stderr
        values = np.fromfile(raw, original.dtype.newbyteorder("<")).reshape(original.shape)
        np.save(target, values)
    check_reads(tmp_path, case, ["h5dump"])


@needs_hdf5_tools
def test_h5dump_and_netcdf4_read_zfp_chunks_of_two_levels(tmp_path):
    # each (2, 40, 70) chunk is coded as 80 x 70, without padding its thin axis (zfp v2)
    data = smooth_field((6, 40, 70), 5, 0.004, 0.01).astype(np.float32)
    path, raw = tmp_path / "q.h5", tmp_path / "q.bin"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("q", data=data, chunks=(2, 40, 70), **chunk_codec.filter("zfp", abs=0.002))
        assert errbound.info(ds.id.read_direct_chunk((0, 0, 0))[1])["codec_version"] == 2
    done = subprocess.run(
        ["h5dump", "-d", "/q", "-b", "LE", "-o", str(raw), str(path)],
        env=client_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0 and "errbound HDF5 filter" not in done.stderr, done.stderr
    netcdf = "import sys, numpy as np, netCDF4\nnp.save(sys.argv[2], np.ma.getdata(netCDF4.Dataset(sys.argv[1])['q'][...]))\n"
    run_client(netcdf, path, tmp_path / "netcdf4.npy")
    for got in (np.fromfile(raw, "<f4").reshape(data.shape), np.load(tmp_path / "netcdf4.npy")):
        err = np.abs(got.astype(np.float64) - data).max()
        assert 0 < err <= 0.002, err


@needs_hdf5_tools
def test_h5repack_decodes_and_encodes_through_the_plugin(case, tmp_path):
    _, src, out, originals, bounds = case
    plain = tmp_path / "plain.h5"
    subprocess.run(["h5repack", "-f", "NONE", str(out), str(plain)], env=client_env(), check=True, timeout=300)
    with h5py.File(plain, "r") as f:
        for path, original in originals.items():
            assert files.errbound_params(f[path]) is None  # stored plain now
            assert np.abs(f[path][...].astype(np.float64) - original).max() <= bounds[path]
    # encoding, in a program without Python: the words `errbound h5 ud` prints
    ud = plugin.repack_filter("sz", abs=0.02)
    repacked = tmp_path / "repacked.h5"
    command = ["h5repack", "-f", f"/atm/T:{ud}", "-l", "/atm/T:CHUNK=4x16x32", str(src), str(repacked)]
    subprocess.run(command, env=client_env(), check=True, timeout=300)
    with h5py.File(repacked, "r") as f, h5py.File(tmp_path / "inprocess.h5", "w") as g:
        options = chunk_codec.filter("sz", abs=0.02)  # the pad value is the source's fill value (netCDF's)
        g.create_dataset("T", data=originals["/atm/T"], chunks=(4, 16, 32), fillvalue=f["/atm/T"].fillvalue, **options)
        assert np.abs(f["/atm/T"][...].astype(np.float64) - originals["/atm/T"]).max() <= 0.02
        assert_same_chunks(f["/atm/T"], g["T"])


DAMAGED_READER = """
import sys
import numpy as np, h5py
try:
    h5py.File(sys.argv[1], "r")["T"][...]
except OSError as exc:
    print("read failed:", exc)
try:
    with h5py.File(sys.argv[2], "w") as f:
        f.create_dataset("i", data=np.arange(100), chunks=(10,), compression=60160,
                         compression_opts=(1, 31347, 0, 1, 0, 0, 0, 0))
except (OSError, ValueError) as exc:
    print("create failed:", exc)
"""


def test_a_damaged_chunk_or_a_non_float_dataset_fails_cleanly(tmp_path):
    damaged = tmp_path / "damaged.h5"
    with h5py.File(damaged, "w") as f:
        ds = f.create_dataset("T", shape=(8, 8), dtype="f4", chunks=(8, 8), **chunk_codec.filter("sz", abs=0.1))
        ds.id.write_direct_chunk((0, 0), b"not an errbound stream")
    done = run_client(DAMAGED_READER, damaged, tmp_path / "ints.h5")
    assert "read failed" in done.stdout and "create failed" in done.stdout, done.stdout
    assert "errbound HDF5 filter: CorruptStreamError" in done.stderr
    assert "float32/float64 datasets only" in done.stderr
    if HDF5_TOOLS:  # a program without Python: an error message and a failure status, no crash
        dump = subprocess.run(["h5dump", "-d", "/T", str(damaged)], env=client_env(), capture_output=True, text=True)
        assert dump.returncode > 0 and "errbound HDF5 filter: CorruptStreamError" in dump.stderr, dump.stderr


def test_cli_names_the_plugin_path_and_h5repack_words(case, capsys):
    plugin_library()
    assert cli(["h5", "plugin-path"]) == 0
    assert capsys.readouterr().out.strip() == str(plugin.directory())
    assert cli(["h5", "ud", "--codec", "sz", "--abs", "0.02"]) == 0
    words = capsys.readouterr().out.strip()
    assert words == "UD=60160,0,8," + ",".join(map(str, chunk_codec.filter("sz", abs=0.02)["compression_opts"]))
    assert cli(["h5", "ud", "--abs", "0.02"]) == 0  # the default codec is auto, as for h5 compress
    words = capsys.readouterr().out.strip()
    assert words == "UD=60160,0,8," + ",".join(map(str, chunk_codec.filter("auto", abs=0.02)["compression_opts"]))
    assert cli(["h5", "info", str(case[2])]) == 0
    assert f"HDF5_PLUGIN_PATH={plugin.directory()}" in capsys.readouterr().out
    with h5py.File(case[2], "r") as f:  # what a reader without errbound is told to install
        assert f["/atm/T"].id.get_create_plist().get_filter(0)[3] == chunk_codec.FILTER_NAME
