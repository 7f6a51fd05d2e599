"""``errbound tune``: the codec and bound per variable that meet a target."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import measure
from .common import (
    CLIError,
    add_input_format,
    atomic_write,
    check_not_input,
    load_array,
    mb,
    names_arg,
    positive_int,
    table,
)


def add_parser(sub) -> None:
    lossy = measure.lossy_codecs()
    p = sub.add_parser(
        "tune",
        help="pick codec and bound per variable for a target",
        description="For every float dataset of an HDF5 file (or one .npy/.f32/.f64 array), the codec "
        "and bound that meet the target with the highest ratio, from a sample.",
    )
    p.add_argument("input", metavar="IN", help="an HDF5 file, or .npy / raw .f32/.f64")
    p.add_argument("--target", required=True, metavar="T", help="psnr=DB, ratio=R or max-rel=E")
    p.add_argument("-o", "--output", metavar="TOML", help="write the bounds file for errbound h5 compress")
    p.add_argument(
        "--verify", action="store_true", help="compress the file with the chosen bounds and show the real results"
    )
    p.add_argument(
        "--codecs",
        type=names_arg(lossy),
        metavar="LIST",
        default=None,
        help="candidates (default auto,sz,zfp,fz,sperr; hlr only when named)",
    )
    p.add_argument(
        "--sample", type=positive_int, default=1 << 16, metavar="N", help="sample values per variable (default 65536)"
    )
    add_input_format(p)
    p.set_defaults(run=cmd_tune)


def cmd_tune(args: argparse.Namespace) -> int:
    from ..integrations.hdf5.config import parse_config
    from ..integrations.tune import bounds_toml, tune, tune_file, verify_file

    inp = Path(args.input)
    if args.output:
        check_not_input(inp, Path(args.output))
    if inp.suffix in (".npy", ".f32", ".f64") or args.shape or args.dtype:
        if args.output or args.verify:
            raise CLIError(
                "-o and --verify are for HDF5 files (a bounds file per variable); for one array the "
                "choice is printed: check it with errbound compress"
            )
        r = tune(load_array(inp, args.shape, args.dtype), args.target, args.codecs, args.sample)
        print(
            f"{inp}: codec {r.codec}, {r.mode} = {r.value:g} (abs {r.abs_bound:.6g}); predicted ratio "
            f"{r.predicted_ratio:.2f}, PSNR {r.predicted_psnr:.2f} dB; sample {r.sample_values} of {r.total_values} values"
            + ("" if r.met else f"; TARGET {args.target} NOT MET on the sample (the closest choice)")
        )
        return 0
    choices = tune_file(inp, args.target, args.codecs, args.sample)
    text = bounds_toml(choices, args.target, str(inp))
    if args.output:
        atomic_write(Path(args.output), lambda f: f.write(text.encode()))
    totals = verify_file(inp, parse_config(text, "tuned bounds"), choices) if args.verify else None
    head = ["variable", "codec", "bound", "sample", "pred ratio", "pred PSNR", "pred max-rel"]
    if totals:
        head += ["ratio", "PSNR", "max-rel"]
    rows = []
    for c in choices:
        r = c.result
        bound = f"{r.mode}={r.value:.4g}" + (f" (abs {r.abs_bound:.4g})" if r.mode == "psnr" else "")
        line = [
            c.path,
            r.codec,
            bound + ("" if r.met else " !"),
            f"{100 * r.sample_values / r.total_values:.0f}%",
            f"{r.predicted_ratio:.2f}",
            f"{r.predicted_psnr:.2f}",
            f"{r.predicted_max_rel:.2e}",
        ]
        if totals:
            line += [f"{c.actual['ratio']:.2f}", f"{c.actual['psnr']:.2f}", f"{c.actual['max_rel']:.2e}"]
        rows.append(line)
    print(table(rows, head))
    failures = {c["codec"]: c["error"] for ch in choices for c in ch.result.candidates if "error" in c}
    for codec, error in failures.items():
        print(f"# codec {codec} skipped: it failed on a sample ({error[:120]})")
    print(
        f"# target {args.target}; sample: up to {args.sample} values per variable (2 blocks); '!' = target not met "
        f"on the sample" + (f"; bounds written to {args.output}" if args.output else "")
    )
    if totals:
        errors = [abs(c.result.predicted_ratio / c.actual["ratio"] - 1) for c in choices if c.actual.get("ratio")]
        print(
            f"# verified: file {mb(totals['original_bytes'])} -> {mb(totals['compressed_bytes'])}, ratio "
            f"{totals['original_bytes'] / totals['compressed_bytes']:.2f}; predicted ratio off by "
            f"{100 * sum(errors) / max(len(errors), 1):.1f}% on average, {100 * max(errors, default=0):.1f}% at most"
        )
    return 0
