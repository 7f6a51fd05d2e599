#!/usr/bin/env python3
"""``errbound h5 compress`` and ``errbound tune`` on a file of real fields, per codec.

    python benchmarks/h5_compress.py                       # rel 1e-2, 1e-3, 1e-4; psnr=60 and max-rel=1e-3
    python benchmarks/h5_compress.py --codecs sz,auto --rel 1e-3 --targets psnr=60

An HDF5 file holds every field of ``../shared/data`` (a synthetic field where it is missing), one
dataset each, in its own dtype and shape. Then, in this process, after one untimed pass of
every codec:

* **compress**: the file through ``errbound h5 compress``'s engine with one ``rel`` bound for all
  datasets, per codec (the chunk grid is the engine's own choice: chunks of about 1 MiB). Printed:
  the ratio per dataset (its float bytes over its stored chunk bytes), the whole file's ratio
  (input file size over output file size), the wall time and max error / bound over all datasets.
* **tune**: ``errbound tune`` on the file per target with two candidate lists, the old default
  (sz, zfp, fz, sperr) and the current :data:`errbound.integrations.tune.DEFAULT_CODECS`. Printed:
  the time of the tuning, what it picked per dataset, and the whole file's ratio when compressed
  with the bounds it wrote (``--verify``), with whether every dataset met the target.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import tempfile
import time
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
OLD_TUNE_CODECS = ("sz", "zfp", "fz", "sperr")


def shared_fields() -> dict[str, np.ndarray]:
    fields = {}
    for path in sorted(DATA.glob("*.f32")) + sorted(DATA.glob("*.f64")):
        match = re.search(r"_(\d+(?:x\d+)*)\.f(32|64)$", path.name)
        if not match:
            continue
        shape = tuple(int(n) for n in match.group(1).split("x"))
        dtype = np.float32 if match.group(2) == "32" else np.float64
        name = re.sub(r"\W", "_", path.name[: match.start()])
        fields[name] = np.fromfile(path, dtype=dtype).reshape(shape)
    if not fields:  # no ../shared: one smooth synthetic field, so the script still runs
        z, y, x = np.meshgrid(*(np.linspace(0, 3, n) for n in (32, 96, 96)), indexing="ij")
        fields["synthetic"] = (np.sin(x * y) + np.cos(z * x)).astype(np.float32)
    return fields


def write_input(path: Path, fields: dict[str, np.ndarray]) -> None:
    import h5py

    with h5py.File(path, "w") as f:
        for name, data in fields.items():
            f.create_dataset(name, data=data)


def compress_rows(src: Path, folder: Path, codecs: list[str], rels: list[float], names: list[str]) -> None:
    from errbound.integrations.hdf5 import engine, files
    from errbound.integrations.hdf5.config import Config

    for codec in codecs:  # untimed: loads (or compiles) the kernels, so the first row is not slower
        engine.compress_file(src, folder / "warm.h5", Config.uniform(codec, rel=rels[0]), progress=False)
        (folder / "warm.h5").unlink()
    for rel in rels:
        print(f"\n## errbound h5 compress --rel {rel:g}\n")
        header = ["codec", *names, "file ratio", "seconds", "max err/bound"]
        print("| " + " | ".join(header) + " |")
        print("|" + "---|" * len(header))
        for codec in codecs:
            out = folder / f"{codec}-{rel:g}.h5"
            t0 = time.perf_counter()
            engine.compress_file(src, out, Config.uniform(codec, rel=rel), progress=False)
            seconds = time.perf_counter() - t0
            rows = {r["path"].lstrip("/"): r for r in files.file_info(out, check=src)}
            worst = max(r["max_err"] / r["abs_bound"] for r in rows.values() if r.get("abs_bound"))
            ratios = [f"{rows[n]['ratio']:.2f}" for n in names]
            file_ratio = os.path.getsize(src) / os.path.getsize(out)
            print(f"| {codec} | " + " | ".join(ratios) + f" | {file_ratio:.2f} | {seconds:.2f} | {worst:.4f} |")
            out.unlink()


def tune_rows(src: Path, targets: list[str]) -> None:
    from errbound.integrations import tune as tuner
    from errbound.integrations.hdf5.config import parse_config

    print("\n## errbound tune (--verify)\n")
    print("| target | candidates | seconds | picks | file ratio | all met |")
    print("|---|---|---|---|---|---|")
    for target in targets:
        for label, codecs in (("old default", OLD_TUNE_CODECS), ("default", tuner.DEFAULT_CODECS)):
            t0 = time.perf_counter()
            choices = tuner.tune_file(src, target, list(codecs), progress=False)
            seconds = time.perf_counter() - t0
            config = parse_config(tuner.bounds_toml(choices, target), "tuned bounds")
            sizes = tuner.verify_file(src, config, choices)
            met = all(_meets(c, target) for c in choices)
            picks = {}
            for c in choices:
                picks[c.result.codec] = picks.get(c.result.codec, 0) + 1
            pick_text = ", ".join(f"{k} {v}" for k, v in sorted(picks.items()))
            ratio = sizes["original_bytes"] / sizes["compressed_bytes"]
            print(
                f"| {target} | {label}: {','.join(codecs)} | {seconds:.1f} | {pick_text} | {ratio:.2f} | "
                f"{'yes' if met else 'NO'} |"
            )


def _meets(choice, target: str) -> bool:
    kind, goal = target.split("=")
    goal = float(goal)
    actual = choice.actual
    if kind == "psnr":
        return actual["psnr"] is None or actual["psnr"] >= goal or math.isinf(actual["psnr"])
    if kind == "max-rel":
        return actual["max_rel"] <= goal * (1 + 1e-12)
    return True  # ratio targets are predictions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--codecs", default="sz,auto,sperr,fz,zfp")
    ap.add_argument("--rel", default="1e-2,1e-3,1e-4")
    ap.add_argument("--targets", default="psnr=60,max-rel=1e-3")
    ap.add_argument("--skip-tune", action="store_true")
    args = ap.parse_args()
    fields = shared_fields()
    names = list(fields)
    with tempfile.TemporaryDirectory(prefix="errbound-h5bench-") as tmp:
        folder = Path(tmp)
        src = folder / "fields.h5"
        write_input(src, fields)
        print(f"input: {len(fields)} datasets, {os.path.getsize(src) / 1e6:.1f} MB ({', '.join(names)})")
        compress_rows(src, folder, args.codecs.split(","), [float(r) for r in args.rel.split(",")], names)
        if not args.skip_tune:
            tune_rows(src, args.targets.split(","))


if __name__ == "__main__":
    main()
