#!/usr/bin/env python3
"""Reading errbound-compressed HDF5 with every client: speed, start-up, and the bound.

    python benchmarks/hdf5_clients.py                  # real fields of ../shared/data, rel 1e-3
    python benchmarks/hdf5_clients.py --repeat 7 --rel 1e-4

A netCDF-4 file holding real fields (``../shared/data``; a synthetic field where it is missing)
is compressed with ``errbound h5 compress --codec sz --rel R``. Then, each client in a fresh process:

* ``h5py in-process``: h5py after ``import errbound`` (the ctypes filter in h5py's HDF5);
* ``h5py plugin``, ``netCDF4 plugin``, ``xarray (netcdf4) plugin``: no ``import errbound``,
  only ``HDF5_PLUGIN_PATH`` (the plugin runs the filter in the client's Python);
* ``h5dump plugin`` (Debian's hdf5-tools, when installed): a program without Python, where the
  plugin starts an interpreter: each run is a new process, so its time includes that start.

Read MB/s = decoded bytes of all compressed datasets / median wall time of one full read (file
reopened every time: no chunk cache carries over), after one untimed warm-up read in the same
process (h5dump: every run counted). ``max err/bound`` is the worst over the datasets of each
client's values against the originals, in float64; ``within`` says whether it is <= 1.

Start-up: wall time of ``h5dump`` printing one value of an errbound dataset (one chunk decoded)
with the numba cache warm, and cold (``NUMBA_CACHE_DIR`` an empty folder: the kernels compile),
beside ``h5dump`` printing one value of the same dataset stored plain (the program's own start).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
FIELDS = [  # (file, variable name, group)
    ("echam5_temperature_17x96x192.f32", "T", "atm"),
    ("cam-csm1.2_u_18x64x128.f32", "u", "atm"),
    ("sperr-turb_wmag_91x91x91.f32", "wmag", "turb"),
    ("rcm-eur011_hsurf_438x450.f32", "hsurf", "land"),
]

CLIENT = r"""
import json, statistics, sys, time
import numpy as np
client, path, folder, repeat = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
variables = json.loads(sys.argv[5])
if client == "h5py in-process":
    import errbound  # noqa: F401 - registers the in-process filter with h5py
assert (client == "h5py in-process") == ("errbound" in sys.modules)

def read_all():
    out = {}
    if client.startswith("h5py"):
        import h5py
        with h5py.File(path, "r") as f:
            for group, name in variables:
                out[f"/{group}/{name}"] = f[group][name][...]
    elif client.startswith("netCDF4"):
        import netCDF4
        with netCDF4.Dataset(path) as d:
            for group, name in variables:
                out[f"/{group}/{name}"] = np.ma.getdata(d[group][name][:])
    else:
        import xarray as xr
        for group in dict.fromkeys(g for g, _ in variables):
            with xr.open_dataset(path, group=group, engine="netcdf4", mask_and_scale=False) as ds:
                for g, name in variables:
                    if g == group:
                        out[f"/{group}/{name}"] = ds[name].values
    return out

t0 = time.perf_counter()
values = read_all()
first = time.perf_counter() - t0
times = []
for _ in range(repeat):
    t0 = time.perf_counter()
    read_all()
    times.append(time.perf_counter() - t0)
errors = {}
for key, got in values.items():
    original = np.load(f"{folder}/{key.strip('/').replace('/', '.')}.npy")
    errors[key] = float(np.abs(got.astype(np.float64) - original.astype(np.float64)).max())
print(json.dumps({"first": first, "median": statistics.median(times), "errors": errors,
                  "bytes": sum(v.nbytes for v in values.values())}))
"""


def make_files(folder: Path, rel: float) -> tuple[Path, Path, list, dict]:
    """The source netCDF-4 file, its errbound copy, the variables and their absolute bounds."""
    import netCDF4

    from errbound.cli.main import main as cli
    from errbound.integrations.hdf5 import files

    src, out = folder / "in.nc", folder / "out.nc"
    variables = []
    with netCDF4.Dataset(src, "w") as d:
        for name, var, group in FIELDS:
            shape = tuple(int(n) for n in name.rsplit("_", 1)[1].split(".")[0].split("x"))
            path = DATA / name
            if path.exists():
                values = np.fromfile(path, "<f4").reshape(shape)
            else:  # a smooth synthetic stand-in of the same shape
                grids = np.meshgrid(*[np.linspace(0, 4, n) for n in shape], indexing="ij")
                values = sum(np.sin(g * (1 + i)) for i, g in enumerate(grids)).astype(np.float32)
            dims = []
            for i, n in enumerate(shape):
                dim = f"{var}_d{i}"
                d.createDimension(dim, n)
                dims.append(dim)
            g = d.groups.get(group) or d.createGroup(group)
            chunks = [min(n, c) for n, c in zip(shape, (16, 96, 192)[-len(shape) :], strict=True)]
            g.createVariable(var, "f4", dims, chunksizes=chunks)[:] = values
            np.save(folder / f"{group}.{var}.npy", values)
            variables.append((group, var))
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            assert cli(["h5", "compress", str(src), str(out), "--codec", "sz", "--rel", str(rel)]) == 0
        finally:
            sys.stdout = stdout
    import h5py

    with h5py.File(out, "r") as f:
        bounds = {f"/{g}/{v}": files.errbound_params(f[g][v]).abs_bound for g, v in variables}
    return src, out, variables, bounds


def client_env(plugin_dir: str, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HDF5_PLUGIN", "ERRBOUND_"))}
    env.update(HDF5_PLUGIN_PATH=plugin_dir, **extra)
    return env


def python_client(name, out, folder, variables, repeat, env) -> dict:
    args = [sys.executable, "-c", CLIENT, name, str(out), str(folder), str(repeat), json.dumps(variables)]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"{name}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def h5dump_client(out, folder, variables, repeat, env) -> dict:
    times, errors, total = [], {}, 0
    for run in range(repeat):
        t0 = time.perf_counter()
        for group, name in variables:
            raw = folder / "dump.bin"
            done = subprocess.run(
                ["h5dump", "-d", f"/{group}/{name}", "-b", "LE", "-o", str(raw), str(out)],
                env=env,
                capture_output=True,
                text=True,
                timeout=1800,
            )
            if done.returncode:
                raise RuntimeError(f"h5dump: {done.stderr.strip()[-2000:]}")
            if run == 0:
                original = np.load(folder / f"{group}.{name}.npy")
                got = np.fromfile(raw, "<f4").reshape(original.shape)
                errors[f"/{group}/{name}"] = float(np.abs(got.astype(np.float64) - original).max())
                total += original.nbytes
        times.append(time.perf_counter() - t0)
    return {"first": times[0], "median": statistics.median(times), "errors": errors, "bytes": total}


def h5dump_one_value(path: Path, dataset: str, rank: int, env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(
        ["h5dump", "-d", dataset, "-s", ",".join("0" * rank), "-c", ",".join("1" * rank), str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.perf_counter() - t0
    if done.returncode or "DATA {" not in done.stdout:
        raise RuntimeError(f"h5dump: {done.stderr.strip()[-2000:]}")
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rel", type=float, default=1e-3, help="relative bound of every dataset (default 1e-3)")
    parser.add_argument("--repeat", type=int, default=5, help="timed full reads per client (default 5)")
    args = parser.parse_args()

    from errbound.integrations.hdf5 import plugin

    plugin_dir = str(plugin.library().parent)
    with tempfile.TemporaryDirectory(prefix="eb-h5clients-") as tmp:
        folder = Path(tmp)
        src, out, variables, bounds = make_files(folder, args.rel)
        load0 = os.getloadavg()[0]
        env = client_env(plugin_dir)
        results = {
            "h5py in-process": python_client("h5py in-process", out, folder, variables, args.repeat, env),
            "h5py plugin": python_client("h5py plugin", out, folder, variables, args.repeat, env),
            "netCDF4 plugin": python_client("netCDF4 plugin", out, folder, variables, args.repeat, env),
            "xarray (netcdf4) plugin": python_client("xarray plugin", out, folder, variables, args.repeat, env),
        }
        have_h5dump = shutil.which("h5dump") is not None
        if have_h5dump:
            results["h5dump plugin (new process per read)"] = h5dump_client(out, folder, variables, args.repeat, env)
        mb = next(iter(results.values()))["bytes"] / 1e6
        print(
            f"# {len(variables)} float32 datasets, {mb:.1f} MB decoded, errbound h5 compress --codec sz --rel {args.rel:g}; "
            f"{os.path.getsize(src) / 1e6:.1f} MB -> {os.path.getsize(out) / 1e6:.2f} MB; median of {args.repeat} "
            f"full reads after a warm-up; load average {load0:.2f}"
        )
        head = f"{'client':40s} {'first read s':>12s} {'read s':>8s} {'MB/s':>8s} {'max err/bound':>14s}  within"
        print(head)
        print("-" * len(head))
        for name, r in results.items():
            worst = max(r["errors"][k] / bounds[k] for k in r["errors"])
            print(
                f"{name:40s} {r['first']:12.3f} {r['median']:8.3f} {r['bytes'] / 1e6 / r['median']:8.1f} "
                f"{worst:14.4f}  {'yes' if worst <= 1 and len(r['errors']) == len(variables) else 'NO'}"
            )
        if not have_h5dump:
            print("# h5dump: not installed (apt install hdf5-tools)")
            return 0
        plain = folder / "plain.h5"
        subprocess.run(["h5repack", "-f", "NONE", str(out), str(plain)], env=env, check=True)
        first = f"/{variables[0][0]}/{variables[0][1]}"
        rank = np.load(folder / f"{variables[0][0]}.{variables[0][1]}.npy", mmap_mode="r").ndim
        warm = [h5dump_one_value(out, first, rank, env) for _ in range(3)]
        with tempfile.TemporaryDirectory(prefix="eb-numba-") as cache:
            cold = h5dump_one_value(out, first, rank, client_env(plugin_dir, NUMBA_CACHE_DIR=cache))
            rewarmed = h5dump_one_value(out, first, rank, client_env(plugin_dir, NUMBA_CACHE_DIR=cache))
        base = [h5dump_one_value(plain, first, rank, env) for _ in range(3)]
        print(f"\n# h5dump printing one value of {first} (one chunk decoded); load average {os.getloadavg()[0]:.2f}")
        print(f"{'case':58s} {'seconds':>8s}")
        print(f"{'stored plain (no filter: the program alone)':58s} {statistics.median(base):8.3f}")
        print(f"{'errbound plugin, numba cache warm (median of 3)':58s} {statistics.median(warm):8.3f}")
        print(f"{'errbound plugin, numba cache cold (kernels compile)':58s} {cold:8.3f}")
        print(f"{'errbound plugin, that cache warm again':58s} {rewarmed:8.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
