"""Are the streams of today's code byte-identical to those of another version?

    python benchmarks/stream_identity.py write DIR      # every codec x bound on the shared fields
    python benchmarks/stream_identity.py compare A B    # same file names, same bytes?

Used to prove a refactoring stream-neutral: write before, write after, compare. Streams are
written for every registered codec on every field in ../shared/data (and the stored fixtures'
originals), at rel 1e-2/1e-4 and pw_rel 1e-3 (sz, fz) or rel 1e-3 (the slower codecs).
"""

from __future__ import annotations

import hashlib
import re
import sys
import time
from pathlib import Path

import numpy as np

import errbound

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FIXTURES = ROOT / "tests" / "fixtures" / "streams"
FIELD = re.compile(r"^(?P<stem>.+)_(?P<shape>\d+(?:x\d+)*)\.(?P<kind>f32|f64)$")
BOUNDS = {
    "sz": [("rel", 1e-2), ("rel", 1e-4), ("pw_rel", 1e-3)],
    "fz": [("rel", 1e-2), ("rel", 1e-4), ("pw_rel", 1e-3)],
}
OTHER_BOUNDS = [("rel", 1e-3)]


def inputs():
    if DATA.is_dir():
        for p in sorted(DATA.iterdir()):
            m = FIELD.match(p.name)
            if m:
                shape = tuple(int(n) for n in m["shape"].split("x"))
                yield p.name, np.fromfile(p, "<f4" if m["kind"] == "f32" else "<f8").reshape(shape)
    for p in sorted(FIXTURES.glob("*/*.npy")):
        yield f"fixture-{p.parent.name}-{p.stem}", np.load(p)


def write(out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, x in inputs():
        for codec in errbound.codecs():
            for mode, value in BOUNDS.get(codec, OTHER_BOUNDS):
                t = time.perf_counter()
                blob = errbound.compress(x, codec, **{mode: value})
                (out / f"{name}.{codec}.{mode}{value:g}.eb").write_bytes(blob)
                print(
                    f"{name:45s} {codec:6s} {mode}={value:g} {len(blob):9d} B {time.perf_counter() - t:6.2f} s",
                    flush=True,
                )


def compare(a: Path, b: Path) -> int:
    names_a = {p.name for p in a.glob("*.eb")}
    names_b = {p.name for p in b.glob("*.eb")}
    differ = [
        n
        for n in sorted(names_a & names_b)
        if hashlib.sha256((a / n).read_bytes()).digest() != hashlib.sha256((b / n).read_bytes()).digest()
    ]
    only = sorted(names_a ^ names_b)
    print(f"{len(names_a & names_b)} streams in both, {len(differ)} differ, {len(only)} in one folder only")
    for n in differ + only:
        print("  ", n)
    return 1 if differ or only else 0


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "write":
        write(Path(argv[1]))
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        return compare(Path(argv[1]), Path(argv[2]))
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
