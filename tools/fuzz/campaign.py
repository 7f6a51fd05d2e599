"""The long fuzzing campaign of errbound's decoder (the CI test runs a minute of the same).

    .venv/bin/python tools/fuzz/campaign.py --cases 100000 [--codecs sz,fz,...] [--out findings/]

For every codec, ``--cases`` mutated streams (tools/fuzz/streams.py: raw damage, section and
header mutations with the CRC recomputed, splices), decoded in worker processes under a
memory cap (``--cap`` MiB above the worker's size after warm-up; decoding with ``max_bytes``
= ``--max-bytes`` MiB) and a time limit per case. Prints one row per codec: cases, how many
decoded, how many raised an errbound error, and the findings (crash, hang, allocation above
the cap, foreign exception), which are written to ``--out`` for replay with
``errbound.decompress(open(f, "rb").read())``. Workers take batches of ``--batch`` cases, so a
crash costs one restart, not the campaign.
"""

from __future__ import annotations

import argparse
import sys
import time
import zlib
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import streams  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", type=int, default=100_000, help="cases per codec (default 100000)")
    ap.add_argument("--codecs", default="sz,fz,sperr,hlr,zfp,raw")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--cap", type=int, default=512, help="memory cap above the worker's warm size, MiB")
    ap.add_argument("--max-bytes", type=int, default=64, help="decompress(max_bytes=...), MiB; -1: without it")
    ap.add_argument("--hang", type=float, default=20.0, help="seconds one decode may take")
    ap.add_argument("--out", type=Path, default=Path("fuzz-findings"))
    args = ap.parse_args(argv)
    seeds = streams.seed_streams()
    print(
        f"# {len(seeds)} seed streams; {args.cases} cases per codec; cap {args.cap} MiB; "
        f"max_bytes {args.max_bytes} MiB; hang after {args.hang:g} s"
    )
    print("| codec | cases | decoded | errbound error | crash | hang | memory | foreign | seconds |")
    print("|---|---|---|---|---|---|---|---|---|")
    total = streams.Report()
    for codec in args.codecs.split(","):
        report = streams.Report()
        t0 = time.perf_counter()
        for start in range(0, args.cases, args.batch):
            count = min(args.batch, args.cases - start)
            batch = streams.cases(seeds, count, seed=zlib.crc32(f"{args.seed}-{codec}-{start}".encode()), codec=codec)
            limit = None if args.max_bytes < 0 else args.max_bytes << 20
            report.merge(streams.run(batch, cap=args.cap << 20, max_bytes=limit, hang_seconds=args.hang))
        c = report.counts
        print(
            f"| {codec} | {sum(c.values())} | {c['decoded']} | {c['errbound']} | {c['crash']} | {c['hang']} | "
            f"{c['memory']} | {c['foreign']} | {time.perf_counter() - t0:.0f} |",
            flush=True,
        )
        for i, (category, name, kind, detail, blob) in enumerate(report.findings):
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / f"{codec}-{category}-{i}.eb").write_bytes(blob)
            print(f"#   {category} {name} {kind}: {detail}")
        total.merge(report)
    print("# total: " + streams.summary(total))
    return 1 if total.findings else 0


if __name__ == "__main__":
    sys.exit(main())
