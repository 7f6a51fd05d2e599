"""``errbound h5``: compress, decompress and inspect whole HDF5 files (serial, or under mpiexec)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import measure
from .common import BOUND_FLAGS, CLIError, bound_arg, mb, table, timed, timing_text


def add_parser(sub, codecs: list[str]) -> None:
    """The ``h5`` subcommand and its actions, on the ``errbound`` parser's subparsers."""
    p = sub.add_parser(
        "h5",
        help="compress, decompress or inspect whole HDF5 files",
        description="Every float dataset of an HDF5 file through the errbound filter.",
    )
    h5 = p.add_subparsers(dest="h5_command", metavar="ACTION", required=True)
    p = h5.add_parser(
        "compress",
        help="rewrite an HDF5 file with its float datasets compressed",
        description="Bounds per dataset from --config (see errbound.h5config), or one bound for all. "
        "Under mpiexec, ranks share the chunks and rank 0 writes the file.",
    )
    p.add_argument("input", metavar="IN.h5")
    p.add_argument("output", metavar="OUT.h5")
    p.add_argument("--config", metavar="TOML", help="bounds file (errbound tune writes one)")
    p.add_argument(
        "--codec",
        default=None,
        choices=codecs,
        help="codec with a bound flag (default auto: per chunk the codec with the best ratio); a --config names its own",
    )
    group = p.add_mutually_exclusive_group()
    group.add_argument("--abs", type=bound_arg("abs"), metavar="X", help="|x - x'| <= X")
    group.add_argument("--rel", type=bound_arg("rel"), metavar="X", help="|x - x'| <= X * (max - min) of each dataset")
    group.add_argument("--pw-rel", type=bound_arg("pw_rel"), metavar="X", help="|x - x'| <= X * |x|")
    group.add_argument("--psnr", type=bound_arg("psnr"), metavar="DB", help="PSNR of each dataset >= DB")
    p.set_defaults(run=cmd_h5_compress)
    p = h5.add_parser("decompress", help="restore plain (unfiltered) datasets")
    p.add_argument("input", metavar="IN.h5")
    p.add_argument("output", metavar="OUT.h5")
    p.set_defaults(run=cmd_h5_decompress)
    p = h5.add_parser("info", help="codec, bound and ratio per dataset")
    p.add_argument("input", metavar="FILE.h5")
    p.add_argument("--check", metavar="ORIGINAL.h5", help="also max error / bound and PSNR against the original")
    p.add_argument("--json", action="store_true", help="print the rows as JSON")
    p.add_argument(
        "--plot",
        metavar="DIR",
        help="with --check: per dataset, a PNG of a slice of the original, the reconstruction and the error map",
    )
    p.set_defaults(run=cmd_h5_info)
    p = h5.add_parser(
        "plugin-path",
        help="print the folder to put in HDF5_PLUGIN_PATH (h5dump, netCDF4, xarray, ... read errbound data)",
        description="The folder holding errbound's HDF5 plugin library: export HDF5_PLUGIN_PATH=$(errbound h5 "
        "plugin-path) and every HDF5 program reads (and h5repack writes) errbound-compressed datasets.",
    )
    p.set_defaults(run=cmd_h5_plugin_path)
    p = h5.add_parser(
        "ud",
        help="print h5repack's -f UD=... argument for a codec and bound",
        description='h5repack -f "$(errbound h5 ud --codec sz --abs 0.01)" -l CHUNK=16x96x192 in.h5 out.h5 '
        "(with HDF5_PLUGIN_PATH set). rel and psnr take each chunk's range (h5repack shows the filter one "
        "chunk at a time); errbound h5 compress takes the dataset's.",
    )
    p.add_argument("--codec", default="auto", choices=codecs, help="codec (default auto, as for errbound h5 compress)")
    group = p.add_mutually_exclusive_group(required=True)
    for mode, flag in BOUND_FLAGS:
        group.add_argument(flag, dest=mode, type=bound_arg(mode), metavar="X")
    p.set_defaults(run=cmd_h5_ud)


def _mpi_comm():
    """COMM_WORLD when started by mpiexec with more than one rank (mpi4py is imported only then)."""
    size = next(
        (os.environ[v] for v in ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MPI_LOCALNRANKS") if v in os.environ), "1"
    )
    if int(size or 1) <= 1:
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        raise CLIError("started by mpiexec with several ranks, but mpi4py is not installed") from None
    return MPI.COMM_WORLD if MPI.COMM_WORLD.size > 1 else None


def _h5_config(args: argparse.Namespace):
    from ..integrations.hdf5.config import Config, load_config

    bound = {mode: getattr(args, mode) for mode, _ in BOUND_FLAGS if getattr(args, mode) is not None}
    if args.config and bound:
        raise CLIError("give either --config or a bound (--abs/--rel/--pw-rel/--psnr), not both")
    if args.config and args.codec is not None:
        raise CLIError("--codec goes with a bound flag; a --config file names the codec of each rule")
    if args.config:
        return load_config(args.config)
    if not bound:
        raise CLIError("h5 compress needs --config bounds.toml or a bound for every float dataset (e.g. --rel 1e-3)")
    return Config.uniform(args.codec or "auto", **bound)


def cmd_h5_compress(args: argparse.Namespace) -> int:
    from ..integrations.hdf5 import engine

    config = _h5_config(args)
    comm = _mpi_comm()
    try:
        reports, (seconds, setup, compiled) = timed(
            lambda: engine.compress_file(args.input, args.output, config, comm=comm)
        )
    except Exception as exc:
        if comm is None:
            raise
        print(f"errbound: error: rank {comm.rank}: {exc}", file=sys.stderr, flush=True)
        comm.Abort(1)  # the other ranks wait in a collective: end them all
        return 1
    if comm is not None and comm.rank != 0:
        return 0
    rows = [
        [
            r.path,
            r.action,
            r.rule or "-",
            "-" if r.abs_bound is None else f"{r.abs_bound:.4g}",
            mb(r.original_bytes),
            mb(r.stored_bytes),
            f"{r.ratio:.2f}",
            "-" if r.psnr is None else f"{r.psnr:.2f}",
        ]
        for r in reports
    ]
    print(table(rows, ["dataset", "action", "rule", "abs bound", "original", "stored", "ratio", "PSNR"]))
    size_in, size_out = os.path.getsize(args.input), os.path.getsize(args.output)
    floats = sum(r.original_bytes for r in reports if r.action == "compressed")
    print(
        f"{args.input} -> {args.output}: {mb(size_in)} -> {mb(size_out)}, file ratio {size_in / size_out:.2f}; "
        f"{timing_text(floats, seconds, setup, compiled, 'compressing', 'of compressed datasets')}, "
        f"{size_in / 1e6 / max(seconds - setup, 1e-9):.1f} MB/s of file, {comm.size if comm else 1} process(es)"
    )
    if floats:
        print(_readers_note())
    return 0


def _readers_note() -> str:
    """Where the readers of an errbound-compressed file find the filter."""
    from ..integrations.hdf5 import plugin

    try:
        folder = plugin.library().parent
    except plugin.PluginNotBuiltError as exc:
        return f"# only Python with `import errbound` reads these datasets: {exc}"
    return (
        f"# to read it with h5dump, netCDF4, xarray, ParaView or any HDF5 program: export HDF5_PLUGIN_PATH={folder}"
        " (Python that imports errbound needs nothing)"
    )


def cmd_h5_plugin_path(args: argparse.Namespace) -> int:
    from ..integrations.hdf5 import plugin

    print(plugin.library().parent)
    return 0


def cmd_h5_ud(args: argparse.Namespace) -> int:
    from ..integrations.hdf5 import plugin

    bound = {mode: getattr(args, mode) for mode, _ in BOUND_FLAGS if getattr(args, mode) is not None}
    print(plugin.repack_filter(args.codec, **bound))
    return 0


def cmd_h5_decompress(args: argparse.Namespace) -> int:
    from ..integrations.hdf5 import files

    t0 = time.perf_counter()
    reports = files.decompress_file(args.input, args.output)
    done = [r for r in reports if r.action == "decompressed"]
    print(
        f"{args.input} -> {args.output}: {len(done)} dataset(s) decompressed, {len(reports) - len(done)} copied, "
        f"{time.perf_counter() - t0:.2f} s"
    )
    return 0


def cmd_h5_info(args: argparse.Namespace) -> int:
    from ..integrations.hdf5 import files

    if args.plot and not args.check:
        raise CLIError("--plot draws the error against the original: give it with --check ORIGINAL.h5")
    rows = files.file_info(args.input, check=args.check)
    if args.plot:
        from . import plots

        pictures = plots.h5_error_maps(args.input, args.check, rows, args.plot)
    if args.json:
        print(json.dumps(measure.jsonable(rows), indent=1, default=str))
        return 0
    head = ["dataset", "shape", "dtype", "codec", "bound", "stored", "ratio"]
    if args.check:
        head += ["max err", "err/bound", "PSNR"]

    def cell(row, key, fmt):
        return fmt.format(row[key]) if isinstance(row.get(key), (int, float)) else "-"

    lines = []
    for r in rows:
        line = [
            r["path"],
            "x".join(map(str, r["shape"])) or "scalar",
            r["dtype"],
            r["codec"],
            r["bound"],
            mb(r["stored_bytes"]),
            f"{r['ratio']:.2f}",
        ]
        if args.check:
            line += [cell(r, "max_err", "{:.4g}"), cell(r, "err_over_bound", "{:.4f}"), cell(r, "psnr", "{:.2f}")]
        lines.append(line)
    print(table(lines, head))
    if any(r["codec"] != "-" for r in rows):
        print(_readers_note())
    if args.plot:
        print(f"# {len(pictures)} picture(s) in {args.plot}: original, reconstruction and error map per dataset")
    bad = [r["path"] for r in rows if r.get("err_over_bound", 0) > 1 or r.get("nonfinite_exact") is False]
    if bad:
        print(f"errbound: error: bound exceeded in {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0
