"""The bounds file of ``errbound h5 compress``: which codec and bound each dataset gets.

A TOML file; the first rule whose pattern matches a dataset's path wins, ``[default]`` takes
the rest (without it they are copied unchanged)::

    min_bytes = 4096            # float datasets smaller than this are copied unchanged

    [default]
    codec = "sz"
    rel = 1e-4

    [[rule]]
    match = "/atm/T*"           # a glob on the path; a pattern without "/" matches the name only
    codec = "zfp"
    psnr = 60
    start_abs = 0.05            # psnr only: the first absolute bound tried (errbound tune writes it)
    chunks = [16, 96, 192]      # optional chunk shape (default: the source's, or about 4 MiB)

    [[rule]]
    match = ["*_mask", "/grid/*"]
    copy = true                 # keep unchanged

A rule without ``codec`` gets :data:`DEFAULT_CODEC`, ``auto``: each chunk is coded by the codec
with the best ratio on it (files are written once and read for years, so ratio comes first;
on the shared fields it writes files 2-8 % smaller than ``sz`` in about 4x its time,
``benchmarks/h5_compress.py``; ``codec = "sz"`` where speed matters more).

Bounds are those of :func:`errbound.compress` (``abs``, ``rel``, ``pw_rel``, ``psnr``); ``rel``
and ``psnr`` refer to the whole dataset (its finite value range), not to single chunks.
Mistakes are reported with the file name and line: ``bounds.toml:7: unknown key 'rell' ...``.
"""

from __future__ import annotations

import fnmatch
import math
import re
from dataclasses import dataclass
from pathlib import Path

from ...bounds import MODES, parse_bound
from ...codec import get_codec
from ...errors import ErrboundError

try:
    import tomllib
except ImportError:  # Python 3.10
    import tomli as tomllib

DEFAULT_MIN_BYTES = 4096
_RULE_KEYS = {"match", "codec", "copy", "start_abs", "chunks", *MODES}
_TOP_KEYS = {"min_bytes", "default", "rule"}
_KEY_LINE = re.compile(r"""^\s*["']?([A-Za-z0-9_\-]+)["']?\s*=""")


class ConfigError(ErrboundError, ValueError):
    """The bounds file is not valid; the message names the file and line."""


DEFAULT_CODEC = "auto"


@dataclass(frozen=True)
class Rule:
    """What to do with the datasets a rule matches (``mode`` None: copy unchanged)."""

    patterns: tuple[str, ...]  # empty for the default rule
    codec: str = DEFAULT_CODEC
    mode: str | None = None
    value: float = 0.0
    start_abs: float | None = None
    chunks: tuple[int, ...] | None = None
    line: int = 0

    def matches(self, path: str) -> bool:
        name = path.rsplit("/", 1)[-1]
        return any(fnmatch.fnmatchcase(path if "/" in p else name, p) for p in self.patterns)

    def describe(self) -> str:
        return "copy" if self.mode is None else f"{self.codec} {self.mode}={self.value:g}"


@dataclass(frozen=True)
class Config:
    """Rules in file order, the default rule, and the size below which datasets are copied."""

    rules: tuple[Rule, ...] = ()
    default: Rule | None = None
    min_bytes: int = DEFAULT_MIN_BYTES

    def rule_for(self, path: str) -> Rule | None:
        """The rule for a dataset path, or None (copy it unchanged)."""
        for rule in self.rules:
            if rule.matches(path):
                return rule
        return self.default

    @classmethod
    def uniform(cls, codec: str = DEFAULT_CODEC, **bound) -> Config:
        """One bound for every float dataset, e.g. ``Config.uniform("sz", rel=1e-3)``."""
        b = parse_bound(**bound)
        get_codec(codec)
        return cls(default=Rule((), codec, b.mode, b.value))


def load_config(path) -> Config:
    """Read and check a bounds file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the bounds file ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    return parse_config(text, source=str(path))


def parse_config(text: str, source: str = "<config>") -> Config:
    """Parse bounds-file text; ConfigError names ``source`` and the line of the first mistake."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: arrays or tables nested too deeply for a bounds file") from None
    lines = _key_lines(text)

    def fail(section, key, message):
        line = lines.get((section, key)) or lines.get((section, None)) or 1
        raise ConfigError(f"{source}:{line}: {message}")

    for key in doc:
        if key not in _TOP_KEYS:
            fail("top", key, f"unknown key {key!r} (expected min_bytes, [default] or [[rule]])")
    min_bytes = doc.get("min_bytes", DEFAULT_MIN_BYTES)
    if isinstance(min_bytes, bool) or not isinstance(min_bytes, int) or min_bytes < 0:
        fail("top", "min_bytes", f"min_bytes must be an integer >= 0, got {min_bytes!r}")
    default = None
    if "default" in doc:
        if not isinstance(doc["default"], dict):
            fail("top", "default", "default must be a table: [default]")
        if "match" in doc["default"]:
            fail("default", "match", "the [default] rule takes no 'match': it applies to every other dataset")
        default = _rule(doc["default"], "default", lines, fail)
    rules = doc.get("rule", [])
    if not isinstance(rules, list) or not all(isinstance(r, dict) for r in rules):
        fail("top", "rule", "rules must be tables: [[rule]]")
    parsed = []
    for i, table in enumerate(rules):
        if "match" not in table:
            fail(("rule", i), None, "this [[rule]] has no 'match' pattern")
        parsed.append(_rule(table, ("rule", i), lines, fail))
    return Config(tuple(parsed), default, min_bytes)


def _rule(table: dict, section, lines, fail) -> Rule:
    for key in table:
        if key not in _RULE_KEYS:
            fail(section, key, f"unknown key {key!r}; a rule takes {', '.join(sorted(_RULE_KEYS))}")
    patterns = table.get("match", [])
    patterns = [patterns] if isinstance(patterns, str) else patterns
    if (
        not isinstance(patterns, list)
        or not all(isinstance(p, str) and p for p in patterns)
        or (section != "default" and not patterns)
    ):
        fail(section, "match", "match must be a glob pattern or a list of them")
    line = lines.get((section, None), 1)
    copy = table.get("copy", False)
    if not isinstance(copy, bool):
        fail(section, "copy", f"copy must be true or false, got {copy!r}")
    given = sorted((m for m in MODES if m in table), key=lambda m: lines.get((section, m), 0))  # file order
    if copy:
        if given or "codec" in table:
            fail(section, "copy", "a rule with copy = true takes no codec or bound")
        return Rule(tuple(patterns), line=line)
    if len(given) != 1:
        fail(
            section,
            given[1] if len(given) > 1 else None,
            f"a rule needs exactly one bound of {', '.join(MODES)} (or copy = true), got {len(given)}",
        )
    mode = given[0]
    raw = table[mode]
    if isinstance(raw, bool) or not isinstance(raw, (int, float)):
        fail(section, mode, f"bad bound {mode} = {raw!r}: must be a number")
    try:
        bound = parse_bound(**{mode: raw})
    except ErrboundError as exc:
        fail(section, mode, f"bad bound {mode} = {raw!r}: {exc}")
    codec = table.get("codec", DEFAULT_CODEC)
    try:
        if not isinstance(codec, str):
            raise ErrboundError(f"codec must be a string, got {codec!r}")
        get_codec(codec)
    except ErrboundError as exc:
        fail(section, "codec", str(exc))
    start = table.get("start_abs")
    if start is not None:
        if mode != "psnr":
            fail(section, "start_abs", "start_abs only goes with a psnr bound")
        if isinstance(start, bool) or not isinstance(start, (int, float)) or not (start > 0 and math.isfinite(start)):
            fail(section, "start_abs", f"start_abs must be a number > 0, got {start!r}")
    chunks = table.get("chunks")
    if chunks is not None and (
        not isinstance(chunks, list)
        or not chunks
        or not all(isinstance(n, int) and not isinstance(n, bool) and n > 0 for n in chunks)
    ):
        fail(section, "chunks", f"chunks must be a list of integers > 0, got {chunks!r}")
    return Rule(
        tuple(patterns),
        codec,
        mode,
        bound.value,
        None if start is None else float(start),
        None if chunks is None else tuple(chunks),
        line,
    )


def _key_lines(text: str) -> dict:
    """(section, key) -> line number, for messages; sections: "top", "default", ("rule", i)."""
    lines, section, rule = {}, "top", -1
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.split("#", 1)[0].strip()
        if stripped.startswith("[["):
            if stripped.strip("[] ") == "rule":
                rule += 1
                section = ("rule", rule)
            else:
                section = stripped
        elif stripped.startswith("["):
            section = stripped.strip("[] ")
            lines.setdefault(("top", section), number)
        else:
            match = _KEY_LINE.match(stripped)
            if match:
                lines.setdefault((section, match.group(1)), number)
            continue
        lines.setdefault((section, None), number)
    return lines


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def glob_escape(path: str) -> str:
    """A pattern that matches exactly ``path`` (for dataset names with * ? [ in them)."""
    return re.sub(r"([*?\[])", r"[\1]", path)
