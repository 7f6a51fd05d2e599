"""What the ``errbound`` subcommands share: argument types, file reading and atomic writing,
table formatting, and the one error type they report."""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..bounds import parse_bound
from ..errors import BoundError
from ..integrations.atomic import atomic_write  # noqa: F401 - the subcommands write through it

RAW_DTYPES = {"f32": np.dtype("<f4"), "f64": np.dtype("<f8")}
BOUND_FLAGS = (("abs", "--abs"), ("rel", "--rel"), ("pw_rel", "--pw-rel"), ("psnr", "--psnr"))
# the shared data files carry their shape in the name: name_AxBxC.f32
_SHAPE_IN_NAME = re.compile(r"_(\d+(?:x\d+)*)\.(?:f32|f64)$")


class CLIError(Exception):
    """A user-facing failure: printed as ``errbound: error: <message>``, exit status 1."""


# ---------------------------------------------------------------------------------------------
# argument types (raise ArgumentTypeError, so argparse exits 2 with its usual message)


def shape_arg(text: str) -> tuple[int, ...]:
    try:
        shape = tuple(int(n) for n in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: expected e.g. 100,500,500") from None
    if not shape or any(n < 0 for n in shape):
        raise argparse.ArgumentTypeError(f"invalid shape {text!r}: sizes must be >= 0")
    return shape


def bound_arg(mode: str) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            return parse_bound(**{mode: float(text)}).value
        except ValueError as exc:  # float() or BoundError: both mean the argument is bad
            msg = str(exc) if isinstance(exc, BoundError) else f"not a number: {text!r}"
            raise argparse.ArgumentTypeError(msg) from None

    parse.__name__ = f"{mode} bound"
    return parse


def bound_list(text: str) -> list[float]:
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


def names_arg(known: list[str], allow_none: bool = False) -> Callable[[str], list[str]]:
    """A comma-separated list of names from ``known``; "none" (an empty list) only where
    ``allow_none`` (elsewhere an empty list would silently mean the default)."""

    def parse(text: str) -> list[str]:
        names = [] if text.strip().lower() in ("", "none") else [n.strip() for n in text.split(",") if n.strip()]
        unknown = [n for n in names if n not in known]
        if unknown:
            raise argparse.ArgumentTypeError(f"unknown {', '.join(unknown)}; choose from {','.join(known)}")
        if not names and not allow_none:
            raise argparse.ArgumentTypeError(f"name at least one of {','.join(known)}")
        return names

    parse.__name__ = "list"
    return parse


def seconds_arg(text: str) -> float:
    """A finite number of seconds >= 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"seconds must be a finite number >= 0, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}")
    return value


def add_input_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--shape",
        type=shape_arg,
        help="shape of a raw input, C order, e.g. 100,500,500 (default: from a name ending in _AxBxC.f32)",
    )
    p.add_argument("--dtype", choices=sorted(RAW_DTYPES), help="dtype of a raw input (default: its extension)")


# ---------------------------------------------------------------------------------------------
# files


def load_array(path: Path, shape: tuple[int, ...] | None = None, dtype: str | None = None) -> np.ndarray:
    """Read ``.npy`` or raw little-endian C-order ``.f32``/``.f64`` (shape from ``shape`` or the name)."""
    if path.suffix == ".npy":
        _check_npy_size(path)
        try:
            array = np.load(path, allow_pickle=False)
        except ValueError as exc:
            raise CLIError(f"{path}: not a readable .npy file ({exc})") from None
        if dtype is not None and RAW_DTYPES.get(dtype) != array.dtype:
            raise CLIError(f"{path}: --dtype {dtype} is for raw inputs; this .npy holds {array.dtype}")
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


def _check_npy_size(path: Path) -> None:
    """A .npy header's shape must match the bytes after it: a forged header must not make
    numpy allocate terabytes before it finds the file short."""
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(f)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(f)
            else:
                raise ValueError(f"format version {version[0]}.{version[1]} is not read here")
            data_bytes = path.stat().st_size - f.tell()
    except FileNotFoundError:
        raise
    except (ValueError, OSError, SyntaxError, TypeError) as exc:
        raise CLIError(f"{path}: not a readable .npy file ({exc})") from None
    if dtype.hasobject:
        raise CLIError(f"{path}: holds Python objects, not numbers")
    declared = math.prod(shape) * dtype.itemsize
    if declared != data_bytes:
        raise CLIError(f"{path}: its header declares {shape} {dtype} ({declared} bytes), the file holds {data_bytes}")


def check_not_input(inp: Path, out: Path) -> None:
    if out.resolve() == inp.resolve() or (out.exists() and os.path.samefile(inp, out)):
        raise CLIError(f"refusing to overwrite the input file {inp}")


def mb(n: float) -> str:
    return f"{n / 1e6:.3f} MB" if n < 1e9 else f"{n / 1e9:.3f} GB"


def table(rows: list[list[str]], head: list[str]) -> str:
    """Fixed-width columns: the first left-aligned, the rest right-aligned."""
    lines = [head] + rows
    widths = [max(len(line[j]) for line in lines) for j in range(len(head))]
    text = [
        "  ".join(c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(line)).rstrip()
        for line in lines
    ]
    return "\n".join([text[0], "-" * max(len(t) for t in text)] + text[1:])


def timed(work):
    """(work's result, (seconds in all, seconds of them loading or compiling kernels, kernel
    signatures compiled)). Every CLI call is a process's first use of its kernels: numba
    loads them from the cache (0.2-0.3 s for a codec) or compiles them, and the speed of a
    3 MB array's compression would otherwise read 10 MB/s for a codec that runs at 200."""

    def setup():
        compiling = sys.modules.get("errbound.compiling")  # not loaded: no kernel has been either
        return compiling.kernel_setup() if compiling is not None else (0.0, 0)

    before = setup()
    t0 = time.perf_counter()
    result = work()
    seconds = time.perf_counter() - t0
    after = setup()
    return result, (seconds, min(after[0] - before[0], seconds), after[1] - before[1])


def timing_text(nbytes: int, seconds: float, setup: float, compiled: int, doing: str, of: str = "") -> str:
    """``seconds`` with the kernels' set-up named apart, and the speed of the rest (``of``: what
    the MB/s count, after them)."""
    own = seconds - setup
    rate = f"{nbytes / 1e6 / own if own > 0 else math.inf:.1f} MB/s" + (f" {of}" if of else "")
    if setup < 0.001:
        return f"{seconds:.3f} s ({rate})"
    what = (
        f"compiling kernels ({compiled} signatures; once per machine, `errbound warmup` does it ahead)"
        if compiled
        else "loading compiled kernels (once per process)"
    )
    return f"{seconds:.3f} s: {setup:.3f} s {what}, {own:.3f} s {doing} ({rate})"
