"""Structure-aware mutation of errbound streams, and a decoder harness that survives crashes.

Used by ``tests/test_fuzz_streams.py`` (about a minute in CI) and by ``tools/fuzz/campaign.py``
(the long campaign). A case is a byte string handed to ``errbound.decompress``; what may come
back is a decoded array or an ``errbound.ErrboundError``. Anything else is a finding:

- ``crash``:   the decoding process died (a segfault in a kernel or a C library),
- ``hang``:    one decode took longer than the time limit,
- ``memory``:  an allocation above the cap (the worker runs under RLIMIT_AS = its size after
               warming up + the cap, and decodes with ``max_bytes`` well below it), also
               where ``decompress`` reports it as "not enough memory" for an output that
               ``max_bytes`` allowed,
- ``foreign``: an exception that is not an ErrboundError.

Mutations (each a function of a seed stream and a random generator):

- raw damage, CRC left as it is: bit flips, truncation, appended bytes, splices of two seeds;
- section bytes mutated with the CRC recomputed: flips, random bytes, inserted or deleted
  bytes (the header's section lengths follow), a section truncated, replaced, emptied or
  swapped with one of another seed; the first bytes of a section (where the inner formats
  keep their headers: the fz code stream, zfp's header, sperr's table) are hit more often;
- header JSON mutated with the CRC recomputed: a leaf replaced by a hostile value (huge or
  negative integers, NaN, strings, lists, None), a key removed or added, the shape, dtype,
  codec name, stage names, versions and parameters changed; for format-2 seeds, a quarter
  of these damage the stored header frame itself instead (flips, overwritten, inserted,
  deleted or appended bytes).
"""

from __future__ import annotations

import json
import os
import pickle
import queue
import random
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from errbound import stream

_PREFIX = struct.Struct("<4sBBI")
_CRC = struct.Struct("<I")
HOSTILE_NUMBERS = [
    0,
    -1,
    1,
    2,
    3,
    7,
    8,
    31,
    32,
    33,
    63,
    64,
    255,
    256,
    65535,
    2**31 - 1,
    2**31,
    2**32,
    2**40,
    2**53 + 1,
    2**62,
    2**63 - 1,
    -(2**63),
    10**18,
    1e-300,
    5e-324,
    1e300,
    1.5,
    -0.5,
    0.1,
]
HOSTILE_VALUES = [*HOSTILE_NUMBERS, None, True, False, "", "x", "f4", [], [1], [2**40], {}, {"a": 1}]
DTYPES = [",f4", "<f2", ">f8", "<f4", "<f8", "O", "V8", "f16", "<i4", "<u8", "S4", "<c8", "float32", "M8", "<f"]
CODEC_NAMES = ["sz", "fz", "sperr", "hlr", "zfp", "raw", "SZ", "nope", ""]


# --------------------------------------------------------------------------- seeds


def seed_arrays() -> dict[str, tuple[np.ndarray, str, dict, dict]]:
    """(array, codec, bound, options) per seed name: every codec, 1-D to 4-D, both dtypes,
    every bound mode, specials; small, so that a decode takes milliseconds."""
    rng = np.random.default_rng(2026)

    def field(shape, dtype, specials=True):
        grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
        x = sum(np.sin((1 + k) * g) for k, g in enumerate(grids)) + 0.01 * rng.standard_normal(shape)
        x = x.astype(dtype)
        if specials and x.size > 8:
            flat = x.reshape(-1)
            flat[1], flat[3], flat[5], flat[6] = np.nan, np.inf, -0.0, 0.0
        return x

    seeds = {}
    layouts = [((300,), np.float32), ((20, 24), np.float64), ((6, 8, 10), np.float32), ((3, 4, 5, 6), np.float64)]
    modes = [("rel", 1e-3), ("abs", 1e-2), ("pw_rel", 1e-2), ("psnr", 60.0)]
    for codec in ("sz", "fz", "sperr", "hlr", "zfp", "raw"):
        for i, (shape, dtype) in enumerate(layouts):
            mode, value = modes[i]
            seeds[f"{codec}-{len(shape)}d-{mode}"] = (field(shape, dtype), codec, {mode: value}, {})
    seeds["sz-lorenzo"] = (field((10, 12, 14), np.float32), "sz", {"abs": 1e-3}, {"predictor": "lorenzo"})
    seeds["sz-interp-1d"] = (field((5000,), np.float64), "sz", {"abs": 1e-4}, {"predictor": "interpolation"})
    seeds["fz-int64"] = (field((20, 30), np.float64) * 1e9, "fz", {"abs": 1e-3}, {})
    seeds["sperr-chunked"] = (field((16, 16, 16), np.float32), "sperr", {"rel": 1e-4}, {"chunk": 8})
    x = np.sort(np.random.default_rng(7).uniform(0, 20, 128))
    seeds["hlr-lowrank"] = (
        np.exp(-np.abs(x[:, None] - x[None, :])).astype(np.float64),
        "hlr",
        {"abs": 1e-6},
        {"leaf": 8},
    )
    seeds["zfp-fortran"] = (np.asfortranarray(field((12, 14), np.float32)), "zfp", {"abs": 1e-3}, {})
    # zfp v2: the stage names the shape zfp coded (unit axes dropped, a thin axis merged)
    seeds["zfp-coded-shape"] = (field((1, 30, 3, 20), np.float32), "zfp", {"rel": 1e-3}, {})
    seeds["empty"] = (np.zeros((3, 0), np.float32), "sz", {"abs": 1.0}, {})
    # auto: the container names the codec it chose, with auto's own record
    seeds["auto-3d"] = (field((12, 16, 20), np.float32), "auto", {"rel": 1e-3}, {})
    seeds["auto-1d-pw_rel"] = (field((4000,), np.float64), "auto", {"pw_rel": 1e-2}, {})
    return seeds


FIXTURES = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "streams"


def seed_streams() -> dict[str, bytes]:
    """The seed arrays' streams, plus every stored fixture stream whose stage chain holds
    ``rans`` (sz v2: entropy="best" keeps rANS only where it is 3 % smaller, which small
    seed arrays rarely are) or frozen axes (sz v5, set ``0.3.0-frozen``: the policy freezes
    an axis only of arrays it samples, larger than the seed arrays)."""
    import errbound

    seeds = {
        name: errbound.compress(x, codec, **bound, **opts) for name, (x, codec, bound, opts) in seed_arrays().items()
    }
    for manifest in sorted(FIXTURES.glob("*/manifest.json")):
        for name, case in json.loads(manifest.read_text())["cases"].items():
            if "rans" in case["stages"] or manifest.parent.name == "0.3.0-frozen":
                seeds[f"{case['stream_codec']}-fixture-{name}"] = (manifest.parent / f"{name}.eb").read_bytes()
    return seeds


# --------------------------------------------------------------------------- stream surgery


@dataclass
class Parts:
    """A stream taken apart: the prefix fields, the header as JSON, the sections' bytes."""

    major: int
    minor: int
    header: dict
    sections: list[list] = field(default_factory=list)  # [name, bytes]


def split(blob: bytes) -> Parts:
    magic, major, minor, head_len = _PREFIX.unpack_from(blob, 0)
    header = json.loads(stream.decode_header(bytes(blob[_PREFIX.size : _PREFIX.size + head_len]), major))
    pos = _PREFIX.size + head_len
    sections = []
    for name, length in header["sections"]:
        sections.append([name, blob[pos : pos + length]])
        pos += length
    return Parts(major, minor, header, sections)


def join(parts: Parts, lengths_follow: bool = True, header_json: bytes | None = None) -> bytes:
    """The stream with a recomputed CRC (and, by default, section lengths that match)."""
    header = dict(parts.header)
    if lengths_follow:
        header["sections"] = [[name, len(data)] for name, data in parts.sections]
    head = header_json if header_json is not None else json.dumps(header, separators=(",", ":")).encode()
    if parts.major >= 2:  # format 2 stores the header JSON as a zstd frame (errbound.stream)
        head = stream.encode_header(head)
    body = _PREFIX.pack(b"ERRB", parts.major, parts.minor, len(head)) + head + b"".join(d for _, d in parts.sections)
    return body + _CRC.pack(zlib.crc32(body))


# --------------------------------------------------------------------------- mutators


def _flip(data: bytes, rng: random.Random, count: int) -> bytes:
    b = bytearray(data)
    for _ in range(count):
        if b:
            i = rng.randrange(len(b))
            b[i] ^= 1 << rng.randrange(8)
    return bytes(b)


def _position(data: bytes, rng: random.Random) -> int:
    """Biased to the first bytes, where inner formats keep their headers."""
    if not data:
        return 0
    if rng.random() < 0.5:
        return rng.randrange(min(len(data), 48))
    return rng.randrange(len(data))


def raw_damage(blob: bytes, rng: random.Random, other: bytes) -> bytes:
    kind = rng.randrange(4)
    if kind == 0:
        return _flip(blob, rng, rng.choice((1, 1, 2, 8)))
    if kind == 1:
        return blob[: rng.randrange(len(blob))]
    if kind == 2:
        return blob + bytes(rng.randrange(256) for _ in range(rng.randrange(1, 64)))
    cut = rng.randrange(len(blob))
    return blob[:cut] + other[rng.randrange(len(other)) :]


def section_mutation(blob: bytes, rng: random.Random, other: bytes) -> bytes:
    parts = split(blob)
    if not parts.sections:
        return header_mutation(blob, rng, other)
    k = rng.randrange(len(parts.sections))
    data = parts.sections[k][1]
    kind = rng.randrange(9)
    if kind == 0:
        data = _flip(data, rng, rng.choice((1, 1, 2, 4, 16)))
    elif kind == 1 and data:
        i = _position(data, rng)
        data = data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + data[i + 8 :]
    elif kind == 2:
        i = _position(data, rng)
        data = data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[i:]
    elif kind == 3 and data:
        i = _position(data, rng)
        data = data[:i] + data[i + rng.randint(1, 16) :]
    elif kind == 4:
        data = data[: rng.randrange(len(data) + 1)]
    elif kind == 5:
        data = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 4, 16, 64, 1024))))
    elif kind == 6:
        donor = split(other).sections
        if donor:
            data = rng.choice(donor)[1]
    elif kind == 7 and len(data) >= 8:  # a little-endian integer field set to a hostile value
        i = _position(data[:-7], rng)
        width = rng.choice((1, 2, 4, 8))
        value = rng.choice(HOSTILE_NUMBERS)
        value = int(value) if isinstance(value, int) or float(value).is_integer() else 0
        data = data[:i] + (value % (1 << (8 * width))).to_bytes(width, "little") + data[i + width :]
    else:
        data = data * 2
    parts.sections[k][1] = data
    return join(parts, lengths_follow=rng.random() < 0.9)


def _leaves(obj, path=()):
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _leaves(value, (*path, i))
    yield path


def _set(obj, path, value):
    for key in path[:-1]:
        obj = obj[key]
    obj[path[-1]] = value


def _get(obj, path):
    for key in path:
        obj = obj[key]
    return obj


def stored_header_damage(blob: bytes, rng: random.Random) -> bytes:
    """The header bytes as stored (format 2: a zstd frame) damaged, the CRC recomputed: what
    reaches errbound.stream.decode_header (the JSON-level mutations re-encode valid frames)."""
    magic, major, minor, head_len = _PREFIX.unpack_from(blob, 0)
    head, rest = blob[_PREFIX.size : _PREFIX.size + head_len], blob[_PREFIX.size + head_len : -_CRC.size]
    kind = rng.randrange(5)
    i = rng.randrange(len(head) + 1)
    if kind == 0:
        head = _flip(head, rng, rng.choice((1, 1, 2, 4)))
    elif kind == 1:
        head = head[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 4))) + head[i + 4 :]
    elif kind == 2:
        head = head[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 8))) + head[i:]
    elif kind == 3:
        head = head[:i] + head[i + rng.randint(1, 8) :]
    else:
        head = head + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16)))
    body = _PREFIX.pack(magic, major, minor, len(head)) + head + rest
    return body + _CRC.pack(zlib.crc32(body))


def header_mutation(blob: bytes, rng: random.Random, other: bytes) -> bytes:
    if blob[4] >= 2 and rng.random() < 0.25:
        return stored_header_damage(blob, rng)
    parts = split(blob)
    header = json.loads(json.dumps(parts.header))
    kind = rng.randrange(10)
    paths = [p for p in _leaves(header) if p]
    if kind <= 2 and paths:  # a leaf (or a subtree) replaced
        _set(header, rng.choice(paths), rng.choice(HOSTILE_VALUES))
    elif kind == 3:  # the shape
        shape = header.get("shape") or []
        choice = rng.randrange(5)
        if choice == 0 and shape:
            shape[rng.randrange(len(shape))] = rng.choice(HOSTILE_NUMBERS)
        elif choice == 1:
            shape = [*shape, rng.choice((1, 2, 1000))]
        elif choice == 2 and shape:
            shape = shape[:-1]
        elif choice == 3 and shape:
            shape = shape[::-1]
        else:
            shape = [2**20] * rng.randint(1, 5)
        header["shape"] = shape
    elif kind == 4:
        header["dtype"] = rng.choice(DTYPES)
    elif kind == 5:
        header["codec"] = rng.choice(CODEC_NAMES)
    elif kind == 6 and header.get("stages"):  # a stage's parameter
        stage = rng.choice(header["stages"])
        params = stage.get("params") or {}
        if params and rng.random() < 0.8:
            key = rng.choice(list(params))
            old = params[key]
            if isinstance(old, (int, float)) and not isinstance(old, bool) and rng.random() < 0.5:
                params[key] = rng.choice((old + 1, old - 1, old * 2, -old, old * 1e6, 0))
            else:
                params[key] = rng.choice(HOSTILE_VALUES)
        else:
            stage["params"] = rng.choice(({}, {"x": 1}, None, []))
    elif kind == 7 and header.get("stages"):  # stage records reordered, dropped, renamed, versioned
        stages = header["stages"]
        choice = rng.randrange(4)
        if choice == 0:
            stages.pop(rng.randrange(len(stages)))
        elif choice == 1:
            rng.shuffle(stages)
        elif choice == 2:
            rng.choice(stages)["name"] = rng.choice(
                [
                    "zstd",
                    "huffman",
                    "lorenzo",
                    "interpolation",
                    "pw_rel",
                    "lowrank",
                    "zfp-accuracy",
                    "prequantize",
                    "bitshuffle",
                    "x",
                ]
            )
        else:
            rng.choice(stages)["version"] = rng.choice((0, 2, -1, 2**40))
    elif kind == 8 and paths:  # a key removed from a dict
        path = rng.choice(paths)
        container = _get(header, path[:-1]) if len(path) > 1 else header
        if isinstance(container, dict):
            container.pop(path[-1], None)
    else:  # the header of another seed with these sections, or the other way round
        donor = split(other)
        if rng.random() < 0.5:
            header = donor.header
        else:
            parts.sections = donor.sections
    parts.header = header
    try:
        return join(parts, lengths_follow=rng.random() < 0.95)
    except (TypeError, ValueError):
        return join(parts)


MUTATORS = {"raw": raw_damage, "section": section_mutation, "header": header_mutation}


def cases(
    seeds: dict[str, bytes], count: int, seed: int, kinds=("raw", "section", "header"), codec: str | None = None
) -> list[tuple[str, str, bytes]]:
    """(seed name, mutation kind, mutated stream) for ``count`` cases, deterministic in ``seed``."""
    rng = random.Random(seed)
    names = sorted(n for n in seeds if codec is None or n.startswith(codec + "-") or n == codec)
    everything = sorted(seeds)
    out = []
    for _ in range(count):
        name = rng.choice(names)
        kind = rng.choice(kinds)
        blob = seeds[name]
        for _ in range(rng.choice((1, 1, 1, 2, 3))):  # stacked mutations reach deeper
            try:
                blob = MUTATORS[kind](blob, rng, seeds[rng.choice(everything)])
            except Exception:  # noqa: BLE001 - a mutant the mutators cannot take apart again
                break
        out.append((name, kind, blob))
    return out


# --------------------------------------------------------------------------- the harness

CATEGORIES = ("decoded", "errbound", "foreign", "memory", "crash", "hang")


@dataclass
class Report:
    counts: Counter = field(default_factory=Counter)
    findings: list = field(default_factory=list)  # (category, seed, kind, detail, blob)
    seconds: float = 0.0

    def add(self, category: str, name: str, kind: str, detail: str, blob: bytes) -> None:
        self.counts[category] += 1
        if category not in ("decoded", "errbound"):
            self.findings.append((category, name, kind, detail, blob))

    def merge(self, other: Report) -> None:
        self.counts.update(other.counts)
        self.findings += other.findings
        self.seconds += other.seconds


WORKER = r"""
import os, pickle, resource, sys, time, traceback
blobs = pickle.load(open(sys.argv[1], "rb"))
cap, max_bytes, start = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
sys.path.insert(0, sys.argv[5])
import errbound, inspect, numpy as np
from streams import seed_streams
# errbound before 0.3 has no max_bytes: the harness also measures older versions (PYTHONPATH);
# max_bytes < 0: decode without it
limit = {"max_bytes": max_bytes} if max_bytes >= 0 and "max_bytes" in inspect.signature(errbound.decompress).parameters else {}
for blob in seed_streams().values():      # compile everything and start numba's threads first
    errbound.decompress(blob)
with open("/proc/self/statm") as f:
    vm = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (vm + cap, vm + cap))
out = sys.stdout
for i in range(start, len(blobs)):
    t = time.perf_counter()
    try:
        errbound.decompress(blobs[i], **limit)
        category, detail = "decoded", ""
    except errbound.ErrboundError as exc:
        category, detail = "errbound", type(exc).__name__
        # decompress turns a MemoryError inside a decode into OutputLimitError: where
        # max_bytes allowed the declared output, that is the decoder allocating far beyond it
        if limit and type(exc).__name__ == "OutputLimitError" and str(exc).startswith("not enough memory"):
            category, detail = "memory", str(exc)[:200]
    except MemoryError as exc:
        category, detail = "memory", repr(exc)[:200]
    except BaseException as exc:  # noqa: BLE001 - every other exception is a finding
        category, detail = "foreign", (type(exc).__name__ + ": " + str(exc))[:300] + " @ " + \
            traceback.extract_tb(exc.__traceback__)[-1].filename.rsplit("/", 2)[-1] + ":" + \
            str(traceback.extract_tb(exc.__traceback__)[-1].lineno)
    out.write(f"{i}\t{category}\t{time.perf_counter() - t:.4f}\t{detail}\n")
    out.flush()
"""


def _lines(stream, into: queue.Queue) -> None:
    for line in stream:
        into.put(line)
    into.put(None)


def run(
    batch: list[tuple[str, str, bytes]],
    cap: int = 512 << 20,
    max_bytes: int | None = 64 << 20,
    hang_seconds: float = 20.0,
) -> Report:
    """Decode every case of ``batch`` in a worker process (restarted after a crash or hang),
    with ``errbound.decompress(max_bytes=max_bytes)`` (None: without it; the cap still holds)."""
    max_bytes = -1 if max_bytes is None else max_bytes
    report = Report()
    t0 = time.perf_counter()
    here = str(Path(__file__).resolve().parent)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "cases.pkl")
        with open(path, "wb") as f:
            pickle.dump([blob for _, _, blob in batch], f)
        script = os.path.join(tmp, "worker.py")
        Path(script).write_text(WORKER)
        start = 0
        while start < len(batch):
            proc = subprocess.Popen(
                [sys.executable, script, path, str(cap), str(max_bytes), str(start), here],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            lines: queue.Queue = queue.Queue()
            threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
            done, hung = start, False
            wait = hang_seconds + 120  # the first case waits for the worker's warm-up too
            while True:
                try:
                    line = lines.get(timeout=wait)
                except queue.Empty:
                    hung = True
                    proc.kill()
                    break
                if line is None:
                    break
                i, category, seconds, detail = line.rstrip("\n").split("\t", 3)
                i = int(i)
                name, kind, blob = batch[i]
                if float(seconds) > hang_seconds:
                    category, detail = "hang", f"{float(seconds):.1f} s"
                report.add(category, name, kind, detail, blob)
                done, wait = i + 1, hang_seconds
            proc.wait()
            error = proc.stderr.read()[-400:]
            proc.stderr.close()
            if done < len(batch):  # the worker died (or hung) on case `done`
                name, kind, blob = batch[done]
                report.add("hang" if hung else "crash", name, kind, f"exit status {proc.returncode}: {error}", blob)
                done += 1
            start = done
    report.seconds = time.perf_counter() - t0
    return report


def summary(report: Report) -> str:
    counts = ", ".join(f"{c} {report.counts.get(c, 0)}" for c in CATEGORIES)
    return f"{sum(report.counts.values())} cases in {report.seconds:.1f} s: {counts}"


def describe(findings, limit: int = 20) -> str:
    lines = []
    for category, name, kind, detail, blob in findings[:limit]:
        lines.append(f"{category:8s} {name:18s} {kind:8s} {len(blob):7d} B  {detail}")
    return "\n".join(lines)
