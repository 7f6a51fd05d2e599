"""The ``errbound`` command: compress, decompress, inspect and benchmark arrays from the shell.

    errbound compress field_100x500x500.f32 -o field.eb --rel 1e-3
    errbound decompress field.eb -o field.npy
    errbound info field.eb
    errbound bench field_100x500x500.f32 --rel 1e-2,1e-3 --peers sz3,zfp,sperr

Exit status: 0 on success, 2 for bad arguments (argparse's message), 1 for everything else
(missing files, damaged streams, bounds errbound rejects), reported as ``errbound: error: ...``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

import errbound

from . import measure
from .bounds import finite_range, parse_bound
from .errors import BoundError, ErrboundError

RAW_DTYPES = {"f32": np.dtype("<f4"), "f64": np.dtype("<f8")}
BOUND_FLAGS = (("abs", "--abs"), ("rel", "--rel"), ("pw_rel", "--pw-rel"), ("psnr", "--psnr"))
# the shared data files carry their shape in the name: name_AxBxC.f32
_SHAPE_IN_NAME = re.compile(r"_(\d+(?:x\d+)*)\.(?:f32|f64)$")


class CLIError(Exception):
    """A user-facing failure: printed as ``errbound: error: <message>``, exit status 1."""


# ---------------------------------------------------------------------------------------------
# argument types (raise ArgumentTypeError, so argparse exits 2 with its usual message)

def _shape(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: expected e.g. 100,500,500") from None
    if not shape or any(n < 0 for n in shape):
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: sizes must be >= 0")
    return shape


def _bound(mode: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            return parse_bound(**{mode: float(text)}).value
        except ValueError as exc:  # float() or BoundError: both mean the argument is bad
            msg = str(exc) if isinstance(exc, BoundError) else f"not a number: {text!r}"
            raise argparse.ArgumentTypeError(msg) from None
    parse.__name__ = f"{mode} bound"
    return parse


def _bound_list(text: str) -> list[float]:
    values = []
    for item in text.split(","):
        try:
            value = float(item)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {item!r}") from None
        if not (value > 0 and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"bounds must be finite and > 0, got {item!r}")
        values.append(value)
    return values


def _names(known: list[str]) -> Callable[[str], list[str]]:
    def parse(text: str) -> list[str]:
        names = [] if text.strip().lower() in ("", "none") else [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {','.join(known)}")
        return names
    parse.__name__ = "list"
    return parse


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


# ---------------------------------------------------------------------------------------------
# files

def load_array(path: Path, shape: tuple[int, ...] | None = None, dtype: str | None = None) -> np.ndarray:
    """Read ``.npy`` or raw little-endian C-order ``.f32``/``.f64`` (shape from ``shape`` or the name)."""
    if path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise CLIError(f"{path}: not a readable .npy file ({exc})") from None
        if shape is not None:
            if math.prod(shape) != array.size:
                raise CLIError(f"{path}: holds {array.size} values, --shape {shape} needs {math.prod(shape)}")
            array = array.reshape(shape)
        return array
    kind = dtype or path.suffix.lstrip(".")
    if kind not in RAW_DTYPES:
        raise CLIError(f"{path}: unknown file type; use .npy, .f32 or .f64 (or give --dtype and --shape)")
    if shape is None:
        match = _SHAPE_IN_NAME.search(path.name)
        if not match:
            raise CLIError(f"{path}: raw input needs --shape (or a name ending in _AxBxC.{kind})")
        shape = tuple(int(n) for n in match.group(1).split("x"))
    item = RAW_DTYPES[kind]
    size = path.stat().st_size
    if size != math.prod(shape) * item.itemsize:
        raise CLIError(f"{path}: {size} bytes, but shape {shape} of {kind} needs {math.prod(shape) * item.itemsize}")
    return np.fromfile(path, dtype=item).reshape(shape)


def _check_not_input(inp: Path, out: Path) -> None:
    if out.resolve() == inp.resolve() or (out.exists() and os.path.samefile(inp, out)):
        raise CLIError(f"refusing to overwrite the input file {inp}")


def atomic_write(path: Path, write: Callable) -> None:
    """Write through ``write(fileobj)`` to a temporary file beside ``path``, then rename it over.

    A crash or error leaves either the old file or none, never a half-written one.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _mb(n: float) -> str:
    return f"{n / 1e6:.3f} MB" if n < 1e9 else f"{n / 1e9:.3f} GB"


# ---------------------------------------------------------------------------------------------
# commands

def cmd_compress(args: argparse.Namespace) -> int:
    inp, out = Path(args.input), Path(args.output)
    _check_not_input(inp, out)
    array = load_array(inp, args.shape, args.dtype)
    bound = {mode: getattr(args, mode) for mode, _ in BOUND_FLAGS}
    t0 = time.perf_counter()
    blob = errbound.compress(array, codec=args.codec, **bound)
    seconds = time.perf_counter() - t0
    atomic_write(out, lambda f: f.write(blob))
    meta = errbound.info(blob)
    mode, flag = next((m, f) for m, f in BOUND_FLAGS if bound[m] is not None)
    given = f"{flag} {bound[mode]:g}"
    if mode in ("rel", "psnr") and meta["abs_bound"]:
        given += f" (abs {meta['abs_bound']:.6g})"
    stored = meta["codec"] if meta["codec"] == args.codec else f"{meta['codec']} (fallback from {args.codec})"
    print(f"{inp} -> {out}: {_mb(array.nbytes)} -> {_mb(len(blob))}, ratio {meta['ratio']:.2f}, "
          f"{8 * len(blob) / max(array.size, 1):.3f} bits/value")
    print(f"codec {stored}, bound {given}, "
          f"{seconds:.3f} s ({array.nbytes / 1e6 / seconds if seconds > 0 else math.inf:.1f} MB/s)")
    return 0


def cmd_decompress(args: argparse.Namespace) -> int:
    inp, out = Path(args.input), Path(args.output)
    _check_not_input(inp, out)
    blob = inp.read_bytes()
    t0 = time.perf_counter()
    try:
        array = errbound.decompress(blob)
    except ErrboundError as exc:
        raise CLIError(f"{inp}: {exc}") from None
    seconds = time.perf_counter() - t0
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
    print(f"{inp} -> {out}: {array.dtype} {'x'.join(map(str, array.shape)) or 'scalar'}, "
          f"{_mb(array.nbytes)}, {seconds:.3f} s")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    inp = Path(args.input)
    try:
        meta = errbound.info(inp.read_bytes())
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
    lines.append("sections")
    lines += [f"  {name:14s}{size:>12d} bytes" for name, size in meta["sections"].items()]
    print("\n".join(lines))
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from .progress import Progress

    threads = measure.pin_threads(args.threads)
    inp = Path(args.input)
    data = np.ascontiguousarray(load_array(inp, args.shape, args.dtype))
    mode, bounds = ("abs", args.abs) if args.abs is not None else ("rel", args.rel or [1e-2, 1e-3, 1e-4])
    cands = measure.candidates(args.codecs, args.peers)
    load0 = os.getloadavg()
    print(f"# {inp.name}: {data.dtype} {data.shape}, {_mb(data.nbytes)}, range {finite_range(data):.6g}; "
          f"{mode} bounds {', '.join(f'{b:g}' for b in bounds)}; repeat {args.repeat}, median; "
          f"{threads} thread(s); load average {load0[0]:.2f}")
    with Progress(len(cands) * len(bounds), "bench") as bar:
        rows, skipped = measure.run_cases(cands, data, bounds, mode, args.repeat, args.min_time,
                                          field=inp.name, bar=bar)
    print(measure.format_table(rows))
    print(f"# MB/s = 1e6 bytes of uncompressed data per second (wall; cpuMB/s from CPU time); "
          f"viol = values with |x-x'| > eb_abs; load average at end {os.getloadavg()[0]:.2f}")
    for label, version in measure.versions(cands).items():
        note = f"NOT RUN: {skipped[label]}" if label in skipped else ""
        print(f"#   {label:16s} {version or '-':10s} {note}".rstrip())
    if args.json:
        doc = measure.jsonable({"file": str(inp), "shape": list(data.shape), "dtype": str(data.dtype), "mode": mode,
                                "bounds": bounds, "threads": threads, "skipped": skipped, "rows": rows})
        atomic_write(Path(args.json), lambda f: f.write(json.dumps(doc, indent=1, default=str).encode()))
    failed = sorted({r["codec"] for r in rows if r.get("error") and r["kind"] == "ours"})
    if failed:
        print(f"errbound: error: {', '.join(failed)} failed on {inp} (see the table)", file=sys.stderr)
    return 1 if failed else 0


def _table(rows: list[list[str]], head: list[str]) -> str:
    """Fixed-width columns: the first left-aligned, the rest right-aligned."""
    lines = [head] + rows
    widths = [max(len(line[j]) for line in lines) for j in range(len(head))]
    text = ["  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(line)).rstrip()
            for line in lines]
    return "\n".join([text[0], "-" * max(len(t) for t in text)] + text[1:])


def cmd_tune(args: argparse.Namespace) -> int:
    from .h5config import parse_config
    from .tune import bounds_toml, tune, tune_file, verify_file

    inp = Path(args.input)
    if inp.suffix in (".npy", ".f32", ".f64"):
        r = tune(load_array(inp), args.target, args.codecs, args.sample)
        print(f"{inp}: codec {r.codec}, {r.mode} = {r.value:g} (abs {r.abs_bound:.6g}); predicted ratio "
              f"{r.predicted_ratio:.2f}, PSNR {r.predicted_psnr:.2f} dB; sample {r.sample_values} of {r.total_values} values")
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
        line = [c.path, r.codec, bound + ("" if r.met else " !"), f"{100 * r.sample_values / r.total_values:.0f}%",
                f"{r.predicted_ratio:.2f}", f"{r.predicted_psnr:.2f}", f"{r.predicted_max_rel:.2e}"]
        if totals:
            line += [f"{c.actual['ratio']:.2f}", f"{c.actual['psnr']:.2f}", f"{c.actual['max_rel']:.2e}"]
        rows.append(line)
    print(_table(rows, head))
    failures = {c["codec"]: c["error"] for ch in choices for c in ch.result.candidates if "error" in c}
    for codec, error in failures.items():
        print(f"# codec {codec} skipped: it failed on a sample ({error[:120]})")
    print(f"# target {args.target}; sample: up to {args.sample} values per variable (2 blocks); '!' = target not met "
          f"on the sample" + (f"; bounds written to {args.output}" if args.output else ""))
    if totals:
        errors = [abs(c.result.predicted_ratio / c.actual["ratio"] - 1) for c in choices if c.actual.get("ratio")]
        print(f"# verified: file {_mb(totals['original_bytes'])} -> {_mb(totals['compressed_bytes'])}, ratio "
              f"{totals['original_bytes'] / totals['compressed_bytes']:.2f}; predicted ratio off by "
              f"{100 * sum(errors) / max(len(errors), 1):.1f}% on average, {100 * max(errors, default=0):.1f}% at most")
    return 0


# ---------------------------------------------------------------------------------------------

def _add_input_format(p: argparse.ArgumentParser) -> None:
    p.add_argument("--shape", type=_shape, help="shape of a raw input, C order, e.g. 100,500,500 "
                   "(default: from a name ending in _AxBxC.f32)")
    p.add_argument("--dtype", choices=sorted(RAW_DTYPES), help="dtype of a raw input (default: its extension)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of the ``errbound`` command."""
    codecs = sorted(errbound.codecs())
    parser = argparse.ArgumentParser(prog="errbound", description="Error-bounded lossy compression of float arrays.")
    parser.add_argument("--version", action="version", version=f"errbound {errbound.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("compress", help="compress a .npy or raw .f32/.f64 array",
                       description="Compress an array so every value comes back within the bound.")
    p.add_argument("input", metavar="IN", help=".npy, or raw little-endian C-order .f32/.f64")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help="the compressed stream")
    p.add_argument("--codec", default="sz", choices=codecs)
    group = p.add_mutually_exclusive_group(required=True)
    group.add_argument("--abs", type=_bound("abs"), metavar="X", help="|x - x'| <= X")
    group.add_argument("--rel", type=_bound("rel"), metavar="X", help="|x - x'| <= X * (max - min)")
    group.add_argument("--pw-rel", type=_bound("pw_rel"), metavar="X", help="|x - x'| <= X * |x|")
    group.add_argument("--psnr", type=_bound("psnr"), metavar="DB", help="PSNR of the result >= DB")
    _add_input_format(p)
    p.set_defaults(run=cmd_compress)

    p = sub.add_parser("decompress", help="decompress to .npy or raw .f32/.f64")
    p.add_argument("input", metavar="IN", help="a stream written by errbound compress")
    p.add_argument("-o", "--output", metavar="OUT", required=True, help=".npy, or raw .f32/.f64 (little-endian)")
    p.set_defaults(run=cmd_decompress)

    p = sub.add_parser("info", help="show a stream's header, stages, sizes and bound")
    p.add_argument("input", metavar="IN", help="a stream written by errbound compress")
    p.add_argument("--json", action="store_true", help="print the header as JSON")
    p.set_defaults(run=cmd_info)

    p = sub.add_parser("bench", help="measure our codecs beside SZ3, ZFP and SPERR",
                       description="Ratio, PSNR, max error / bound, violations and single-thread speed of "
                                   "errbound's codecs beside the peers, on the same absolute bounds.")
    p.add_argument("input", metavar="IN", help=".npy, or raw little-endian C-order .f32/.f64")
    _add_input_format(p)
    group = p.add_mutually_exclusive_group()
    group.add_argument("--rel", type=_bound_list, metavar="LIST", help="relative bounds (default 1e-2,1e-3,1e-4)")
    group.add_argument("--abs", type=_bound_list, metavar="LIST", help="absolute bounds")
    lossy = measure.lossy_codecs()
    p.add_argument("--codecs", type=_names(lossy), metavar="LIST", default=None,
                   help=f"our codecs (default: every lossy one: {','.join(lossy)})")
    p.add_argument("--peers", type=_names(list(measure.PEER_NAMES)), metavar="LIST", default=list(measure.PEER_NAMES),
                   help="peers among sz3,zfp,sperr, or none (default all three)")
    p.add_argument("--repeat", type=_positive_int, default=3, metavar="N", help="timed runs; the median is shown (default 3)")
    p.add_argument("--min-time", type=float, default=0.05, metavar="S", help="each timed run loops until this many seconds")
    p.add_argument("--threads", type=_positive_int, default=1, metavar="N", help="numba/OpenMP threads (default 1)")
    p.add_argument("--json", metavar="FILE", help="also save every row as JSON")
    p.set_defaults(run=cmd_bench)

    from . import cli_h5  # it imports this module's helpers

    cli_h5.add_parser(sub, codecs)

    p = sub.add_parser("tune", help="pick codec and bound per variable for a target",
                       description="For every float dataset of an HDF5 file (or one .npy/.f32/.f64 array), the codec "
                                   "and bound that meet the target with the highest ratio, from a sample.")
    p.add_argument("input", metavar="IN", help="an HDF5 file, or .npy / raw .f32/.f64")
    p.add_argument("--target", required=True, metavar="T", help="psnr=DB, ratio=R or max-rel=E")
    p.add_argument("-o", "--output", metavar="TOML", help="write the bounds file for errbound h5 compress")
    p.add_argument("--verify", action="store_true", help="compress the file with the chosen bounds and show the real results")
    p.add_argument("--codecs", type=_names(lossy), metavar="LIST", default=None, help="candidates (default every lossy codec)")
    p.add_argument("--sample", type=_positive_int, default=1 << 16, metavar="N", help="sample values per variable (default 65536)")
    p.set_defaults(run=cmd_tune)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``errbound`` command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except (CLIError, ErrboundError) as exc:
        msg = str(exc)
    except FileNotFoundError as exc:
        msg = f"{exc.filename}: no such file or directory"
    except OSError as exc:
        msg = f"{exc.filename or ''}: {exc.strerror or exc}".lstrip(": ")
    except KeyboardInterrupt:
        return 130
    print(f"errbound: error: {msg}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
