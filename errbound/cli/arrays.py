"""``errbound compress``, ``decompress`` and ``info``: one array, one stream."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from pathlib import Path

import numpy as np

from ..api import compress, decompress, info
from ..codec import get_codec
from ..errors import ErrboundError
from ..stream import peek_header
from .common import (
    BOUND_FLAGS,
    RAW_DTYPES,
    CLIError,
    add_input_format,
    atomic_write,
    bound_arg,
    check_not_input,
    load_array,
    mb,
    timed,
    timing_text,
)


def add_parsers(sub, codecs: list[str]) -> None:
    p = sub.add_parser(
        "compress",
        help="compress a .npy or raw .f32/.f64 array",
        description="Compress an array so every value comes back within the bound.",
    )
    p.add_argument("input", metavar="IN", help=".npy, or raw little-endian C-order .f32/.f64")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="the compressed stream")
    p.add_argument("--codec", default="sz", choices=codecs)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--abs", type=bound_arg("abs"), metavar="X", help="|x - x'| <= X")
    group.add_argument("--rel", type=bound_arg("rel"), metavar="X", help="|x - x'| <= X * (max - min)")
    group.add_argument("--pw-rel", type=bound_arg("pw_rel"), metavar="X", help="|x - x'| <= X * |x|")
    group.add_argument("--psnr", type=bound_arg("psnr"), metavar="DB", help="PSNR of the result >= DB")
    add_input_format(p)
    p.set_defaults(run=cmd_compress)

    p = sub.add_parser("decompress", help="decompress to .npy or raw .f32/.f64")
    p.add_argument("input", metavar="IN", help="a stream written by errbound compress")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help=".npy, or raw .f32/.f64 (little-endian)")
    p.set_defaults(run=cmd_decompress)

    p = sub.add_parser("info", help="show a stream's header, stages, sizes and bound")
    p.add_argument("input", metavar="IN", help="a stream written by errbound compress")
    p.add_argument("--json", action="store_true", help="print the header as JSON")
    p.set_defaults(run=cmd_info)


def cmd_compress(args: argparse.Namespace) -> int:
    inp, out = Path(args.input), Path(args.output)
    check_not_input(inp, out)
    array = load_array(inp, args.shape, args.dtype)
    bound = {mode: getattr(args, mode) for mode, _ in BOUND_FLAGS}
    with contextlib.suppress(Exception):  # the codec's modules load before the clock starts
        get_codec(args.codec)
    blob, timing = timed(lambda: compress(array, codec=args.codec, **bound))
    atomic_write(out, lambda f: f.write(blob))
    meta = info(blob)
    mode, flag = next((m, f) for m, f in BOUND_FLAGS if bound[m] is not None)
    given = f"{flag} {bound[mode]:g}"
    if mode in ("rel", "psnr") and meta["abs_bound"]:
        given += f" (abs {meta['abs_bound']:.6g})"
    stored = meta["codec"] if meta["codec"] == args.codec else f"{meta['codec']} (fallback from {args.codec})"
    print(
        f"{inp} -> {out}: {mb(array.nbytes)} -> {mb(len(blob))}, ratio {meta['ratio']:.2f}, "
        f"{8 * len(blob) / max(array.size, 1):.3f} bits/value"
    )
    print(f"codec {stored}, bound {given}, {timing_text(array.nbytes, *timing, 'compressing')}")
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    inp, out = Path(args.input), Path(args.output)
    check_not_input(inp, out)
    blob = inp.read_bytes()
    # the codec's modules load before the clock starts, from a peek at the header: decompress
    # verifies the checksum, and a second pass here cost 0.5-9 % of a 256 MiB decode (the
    # more, the less the stream had compressed)
    with contextlib.suppress(Exception):
        header = peek_header(blob)
        for stage in header.stages:  # auto's stream: the codec it chose
            if stage.get("name") == "auto":
                get_codec(stage["params"]["codec"])
        get_codec(header.codec)
    try:
        array, timing = timed(lambda: decompress(blob))
    except ErrboundError as exc:
        raise CLIError(f"{inp}: {exc}") from None
    if out.suffix == ".npy":
        atomic_write(out, lambda f: np.save(f, array, allow_pickle=False))
    elif out.suffix in (".f32", ".f64"):
        want = RAW_DTYPES[out.suffix[1:]]
        if array.dtype.itemsize != want.itemsize:
            raise CLIError(f"{inp} holds {array.dtype}; write it as .f{8 * array.dtype.itemsize} or .npy")
        # raw files are little-endian C order, like the inputs `compress` reads
        atomic_write(out, lambda f: f.write(np.ascontiguousarray(array, dtype=want).tobytes()))
    else:
        raise CLIError(f"{out}: unknown output type; use .npy, .f32 or .f64")
    print(
        f"{inp} -> {out}: {array.dtype} {'x'.join(map(str, array.shape)) or 'scalar'}, "
        f"{mb(array.nbytes)}, {timing_text(array.nbytes, *timing, 'decompressing')}"
    )
    return 0


def _auto_choice(stages: list, values: int) -> list[str]:
    """What codec="auto" picked and why: the ratios each candidate reached on its sample."""
    if not any(isinstance(s, dict) and s.get("name") == "auto" for s in stages):
        return []
    from ..codecs.auto import AutoChoice

    choice = AutoChoice.load(stages)  # checked as decoding checks it: a forged table is refused
    sampled = ", ".join(f"{codec} {ratio:.4g}" for codec, ratio in choice.sampled.items())
    n = choice.sample_values
    where = "the whole array" if n == values else f"a sample of {n} of the {values} values"
    if any(isinstance(s, dict) and s.get("name") == "pw_rel" for s in stages):
        # what auto compared: the float64 log-magnitudes, without the signs and zeros sections
        which = f"all {values} values" if n == values else f"a sample of {n} of the {values} values"
        where = f"the float64 log-magnitudes that pw_rel codes ({which})"
    line = f"picked          {choice.codec}: ratios on {where}: {sampled}"
    full = choice.full
    if full:
        line += "; the closest then coded the whole array: " + ", ".join(
            f"{codec} {ratio:.4g}" for codec, ratio in full.items()
        )
    return [line]


def cmd_info(args: argparse.Namespace) -> int:
    inp = Path(args.input)
    try:
        meta = info(inp.read_bytes())
    except ErrboundError as exc:
        raise CLIError(f"{inp}: {exc}") from None
    if args.json:
        print(json.dumps(meta, indent=1))
        return 0
    bound = meta["bound"] or {}
    values = math.prod(meta["shape"])
    lines = [
        f"file            {inp}",
        f"format          errbound stream {meta['format_version']}",
        f"codec           {meta['codec']} v{meta['codec_version']}",
        f"array           {meta['dtype']} shape {tuple(meta['shape'])} order {meta['order']} ({values} values)",
        f"bound           {bound.get('mode', '?')} {bound.get('value', '?')}"
        + (f" -> abs {meta['abs_bound']:.6g}" if meta["abs_bound"] is not None else ""),
        f"size            {meta['original_bytes']} -> {meta['compressed_bytes']} bytes, "
        f"ratio {meta['ratio']:.3f}, {8 * meta['compressed_bytes'] / max(values, 1):.3f} bits/value",
        "stages",
    ]
    for stage in meta["stages"]:
        params = ", ".join(f"{k}={v}" for k, v in (stage.get("params") or {}).items())
        lines.append(f"  {stage.get('name')} v{stage.get('version')}" + (f": {params}" if params else ""))
    try:
        lines += _auto_choice(meta["stages"], values)
    except ErrboundError as exc:
        raise CLIError(f"{inp}: {exc}") from None
    lines.append("sections")
    lines += [f"  {name:14s}{size:>12d} bytes" for name, size in meta["sections"].items()]
    print("\n".join(lines))
    return 0
