#!/usr/bin/env python3
"""Every errbound codec, `auto`, and every peer, per field and bound, with the best of each side, in one run.

    python benchmarks/compare.py                         # ../shared/data at rel 1e-2,1e-3,1e-4
    python benchmarks/compare.py --matrices              # + benchmarks/lowrank.py's matrices
    python benchmarks/compare.py --codecs sz,auto --peers sz3 --fields echam --repeat 1 --min-time 0

Peers: SZ3 with both algorithms through pysz (``sz3``: INTERP_LORENZO, ``sz3-lorreg``:
LORENZO_REG), SZ2 and SPERR through hdf5plugin (in-memory HDF5, one chunk, no chunk cache;
SPERR needs >= 2 dimensions), ZFP through zfpy; the settings are those of
``errbound.cli.measure`` and ../shared/tools/peers. Every candidate gets the absolute bound
``rel * (max - min)``; ratios, errors and speeds (MB/s of uncompressed data, median of
``--repeat`` timed runs each lasting >= ``--min-time`` s, one thread) are measured the same way.

Per case the table shows each candidate's ratio and compress/decompress MB/s, then:
``best ours`` (the best errbound codec other than auto) and ``best peer`` with their ratio,
``auto/peer`` (auto over the best peer), ``sz/SZ3``, ``auto pick`` (the codec auto chose,
``=`` when it is the best errbound codec on the full array, else how far below the best it
is) and ``auto time`` (auto's compress time over the chosen codec's own). The summary gives
geometric means, worst cases and violation counts over all cases.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data"
_THREAD_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "BLOSC_NTHREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMBA_NUM_THREADS",
)
_FIELD = re.compile(r"^(?P<stem>.+)_(?P<shape>\d+(?:x\d+)*)\.(?P<kind>f32|f64)$")
PEERS = ("sz3", "sz3-lorreg", "sz2", "sperr", "zfp")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--rel", default="1e-2,1e-3,1e-4")
    ap.add_argument("--codecs", default=None, help="errbound codecs (default: every lossy one, auto included)")
    ap.add_argument("--peers", default=",".join(PEERS), help=f"among {','.join(PEERS)}, or 'none'")
    ap.add_argument("--fields", default=None, help="only fields whose name contains one of these (comma list)")
    ap.add_argument("--matrices", action="store_true", help="also lowrank.py's matrices (cov stride 2, kernels)")
    ap.add_argument(
        "--series", action="store_true", help="also a synthetic smooth 1-D series (displacement-like, float64)"
    )
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=0.05)
    args = ap.parse_args(argv)
    args.rel = [float(v) for v in args.rel.split(",")]
    return args


def peer_candidates(names):
    from errbound.cli import measure

    class SZ3LorReg(measure.SZ3):
        name = label = "sz3-lorreg"
        note = "pysz (SZ3 C++), ABS mode, LORENZO_REG, openmp=False"

        def setup(self, eb_abs):
            from pysz import szAlgorithm

            super().setup(eb_abs)
            self.cfg.cmprAlgo = szAlgorithm.LORENZO_REG

    class SZ2(measure.SPERR):
        name = label = "sz2"
        note = "hdf5plugin SZ(absolute=eb) (SZ2), in-memory HDF5, one chunk, no chunk cache"

        def unsupported(self, data):
            if data.nbytes >= 2**32:
                return "an HDF5 chunk must be < 4 GiB"
            try:
                import h5py  # noqa: F401
                import hdf5plugin  # noqa: F401
            except ImportError as exc:
                return f"h5py/hdf5plugin not installed ({exc})"
            return None

        def compress(self, data, eb_abs):
            import uuid

            import h5py
            import hdf5plugin

            f = h5py.File(f"mem-{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False, rdcc_nbytes=0)
            ds = f.create_dataset("d", data=data, chunks=data.shape, **hdf5plugin.SZ(absolute=float(eb_abs)))
            f.flush()
            return f, ds

    table = {"sz3": measure.SZ3, "sz3-lorreg": SZ3LorReg, "sz2": SZ2, "sperr": measure.SPERR, "zfp": measure.ZFP}
    unknown = [n for n in names if n not in table]
    if unknown:
        raise SystemExit(f"unknown peers {unknown}; known: {', '.join(table)}")
    return [table[n]() for n in names]


class SZBest:
    """errbound sz with entropy="best" (the context-modelled rANS coder where it is smaller)."""

    def __new__(cls):
        from errbound.api import compress, decompress
        from errbound.cli import measure

        class _SZBest(measure.Ours):
            def __init__(self):
                super().__init__("sz")
                self.name, self.label = "sz-best", "errbound-sz-best"
                self.note = "errbound.compress(x, 'sz', abs=eb, entropy='best')"

            def compress(self, data, eb_abs):
                return compress(data, "sz", abs=eb_abs, entropy="best")

            def decompress(self, blob, like):
                return decompress(blob)

        return _SZBest()


def load_fields(args):
    import numpy as np

    out = []
    if args.data.is_dir():
        for path in sorted(args.data.iterdir()):
            m = _FIELD.match(path.name)
            if not m or (args.fields and not any(s in path.name for s in args.fields.split(","))):
                continue
            shape = tuple(int(n) for n in m["shape"].split("x"))
            out.append((m["stem"], np.fromfile(path, "<f4" if m["kind"] == "f32" else "<f8").reshape(shape)))
    if args.series:
        # integrated band-limited noise minus a cubic trend: smooth like a seismic displacement
        # record (the kind of 1-D series where sz once lost to SZ3 at loose bounds); synthetic
        rng = np.random.default_rng(0)
        n = 1 << 19
        v = np.convolve(rng.standard_normal(n), np.hanning(64), "same")
        x = np.cumsum(v)
        t = np.arange(n)
        out.append(("synthetic-displacement-series", x - np.polyval(np.polyfit(t, x, 3), t)))
    if args.matrices:
        sys.path.insert(0, str(HERE))
        import lowrank

        out.append(("matrix-cov-2048", lowrank.covariance(args.data, 2)))
        out.append(("matrix-kernel-cluster", lowrank.kernel_2d(64, True)))
        out.append(("matrix-kernel-rowmajor", lowrank.kernel_2d(64, False)))
    return out


def _short(cand) -> str:
    """Our codecs in lower case, peers in upper case (both sides have a sperr and a zfp)."""
    return cand.label.replace("errbound-", "") if cand.kind == "ours" else cand.label.upper()


def gm(values):
    vals = [v for v in values if v > 0 and math.isfinite(v)]
    return math.exp(sum(map(math.log, vals)) / len(vals)) if vals else math.nan


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.update({name: "1" for name in _THREAD_VARS})
    import errbound
    from errbound.cli import measure

    ours = args.codecs.split(",") if args.codecs else measure.lossy_codecs()
    peers = [] if args.peers.strip().lower() == "none" else args.peers.split(",")
    cands = measure.candidates(ours, [])
    if "sz" in ours:  # sz with its rANS coder allowed (entropy="best", what auto uses)
        cands.append(SZBest())
    cands += peer_candidates(peers)
    load0 = os.getloadavg()
    print(
        f"# compare: errbound {errbound.__version__} codecs {','.join(ours)} | peers {','.join(peers)}; rel "
        f"{args.rel}; repeat {args.repeat} (median, >= {args.min_time:g} s each); one thread; "
        f"{platform.machine()} {os.cpu_count()} cpus; load average at start {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}"
    )
    print("# " + ", ".join(f"{k} {v or '?'}" for k, v in measure.versions(cands).items()))
    summary = []
    for name, data in load_fields(args):
        rows, skipped = measure.run_cases(cands, data, args.rel, "rel", args.repeat, args.min_time, field=name)
        print(f"\n## {name}: {data.dtype} {data.shape}" + "".join(f"; {k}: {v}" for k, v in skipped.items()))
        head = f"{'rel':>6s} " + " ".join(f"{_short(c):>18s}" for c in cands if c.label not in skipped)
        print(head + "  best ours        best peer         ours/peer auto/peer sz/SZ3  auto pick       auto time")
        for eb in args.rel:
            case = {r["codec"]: r for r in rows if r["eb"] == eb}
            good = {k: r for k, r in case.items() if not r.get("error")}
            cells = []
            for c in cands:
                if c.label in skipped:
                    continue
                r = case.get(c.label)
                if r is None or r.get("error"):
                    cells.append(f"{'ERROR':>18s}")
                    continue
                flag = "!" if r["viol"] else " "
                cells.append(f"{r['ratio']:7.2f}{flag}{r['comp_MBps']:5.0f}/{r['decomp_MBps']:<4.0f}")
            mine = {k: r for k, r in good.items() if r["kind"] == "ours" and k != "errbound-auto"}
            theirs = {k: r for k, r in good.items() if r["kind"] == "peer"}
            entry = {
                "field": name,
                "ndim": data.ndim,
                "eb": eb,
                "viol_ours": sum(r["viol"] for r in good.values() if r["kind"] == "ours"),
                "viol_peers": sum(r["viol"] for r in good.values() if r["kind"] == "peer"),
            }
            line = f"{eb:6.0e} " + " ".join(cells)
            best_o = max(mine, key=lambda k: mine[k]["ratio"]) if mine else None
            best_p = max(theirs, key=lambda k: theirs[k]["ratio"]) if theirs else None
            if best_o and best_p:
                entry["ours/peer"] = mine[best_o]["ratio"] / theirs[best_p]["ratio"]
            auto = good.get("errbound-auto")
            if auto and best_p:
                entry["auto/peer"] = auto["ratio"] / theirs[best_p]["ratio"]
            if "errbound-sz" in good and "sz3" in good:
                entry["sz/SZ3"] = good["errbound-sz"]["ratio"] / good["sz3"]["ratio"]
            if "errbound-sz-best" in good and "sz3" in good:
                entry["sz-best/SZ3"] = good["errbound-sz-best"]["ratio"] / good["sz3"]["ratio"]
                entry["sz-best speed/SZ3"] = (
                    good["errbound-sz-best"]["comp_MBps"] / good["sz3"]["comp_MBps"],
                    good["errbound-sz-best"]["decomp_MBps"] / good["sz3"]["decomp_MBps"],
                )
            if "errbound-sz" in good and "sz3" in good:
                entry["sz speed/SZ3"] = (
                    good["errbound-sz"]["comp_MBps"] / good["sz3"]["comp_MBps"],
                    good["errbound-sz"]["decomp_MBps"] / good["sz3"]["decomp_MBps"],
                )
            pick, pick_note, time_note = "-", "", "-"
            if auto:
                blob = errbound.compress(data, "auto", abs=auto["eb_abs"])
                pick = errbound.info(blob)["stages"][0]["params"]["codec"]
                # auto codes with sz's rANS coder allowed: its sz is sz-best where measured
                chosen = good.get("errbound-sz-best" if pick == "sz" else "", good.get(f"errbound-{pick}"))
                if chosen and best_o:
                    below = 1 - chosen["ratio"] / mine[best_o]["ratio"]
                    entry["pick_best"] = below <= 1e-9
                    entry["pick_within_3pct"] = below <= 0.03
                    pick_note = "=" if below <= 1e-9 else f"-{100 * below:.1f}%"
                if chosen:
                    entry["auto_time"] = chosen["comp_MBps"] / auto["comp_MBps"]
                    time_note = f"{entry['auto_time']:.2f}x"
            line += (
                f"  {(best_o or '-').replace('errbound-', ''):6s}{mine[best_o]['ratio'] if best_o else math.nan:8.2f}"
                f"  {best_p or '-':10s}{theirs[best_p]['ratio'] if best_p else math.nan:7.2f}"
                f"  {entry.get('ours/peer', math.nan):9.3f} {entry.get('auto/peer', math.nan):9.3f}"
                f" {entry.get('sz/SZ3', math.nan):6.3f}  {pick:6s}{pick_note:9s} {time_note:>9s}"
            )
            print(line)
            summary.append(entry)
        sys.stdout.flush()
    load1 = os.getloadavg()
    print(f"\n# summary over {len(summary)} cases (load average at end {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f})")
    for key in ("ours/peer", "auto/peer", "sz/SZ3", "sz-best/SZ3"):
        vals = [(e[key], e) for e in summary if key in e]
        if vals:
            worst = min(vals, key=lambda t: t[0])
            print(
                f"{key:10s} geometric mean {gm([v for v, _ in vals]):.3f} over {len(vals)} cases; worst "
                f"{worst[0]:.3f} ({worst[1]['field']} {worst[1]['eb']:.0e})"
            )
    for key in ("sz speed/SZ3", "sz-best speed/SZ3"):
        vals = [e[key] for e in summary if key in e]
        if vals:
            print(
                f"{key:18s} compress {gm([c for c, _ in vals]):.2f}x, decompress {gm([d for _, d in vals]):.2f}x "
                f"(geometric means of MB/s over SZ3's, same cases)"
            )
    # issue 17 states sz's speed target on the 3-D fields: their geometric means and slowest cases
    cube = [e for e in summary if "sz speed/SZ3" in e and e["ndim"] == 3]
    if cube:
        slow_c = min(cube, key=lambda e: e["sz speed/SZ3"][0])
        slow_d = min(cube, key=lambda e: e["sz speed/SZ3"][1])
        print(
            f"{'sz speed/SZ3 3-D':18s} compress {gm([e['sz speed/SZ3'][0] for e in cube]):.2f}x, decompress "
            f"{gm([e['sz speed/SZ3'][1] for e in cube]):.2f}x over the {len(cube)} cases of 3-D fields; slowest "
            f"compress {slow_c['sz speed/SZ3'][0]:.2f}x ({slow_c['field']} {slow_c['eb']:.0e}), decompress "
            f"{slow_d['sz speed/SZ3'][1]:.2f}x ({slow_d['field']} {slow_d['eb']:.0e})"
        )
    picks = [e for e in summary if "pick_best" in e]
    if picks:
        print(
            f"auto picked the best errbound codec in {sum(e['pick_best'] for e in picks)}/{len(picks)} cases, one "
            f"within 3 % of it in {sum(e['pick_within_3pct'] for e in picks)}/{len(picks)}; auto's compress time "
            f"over the chosen codec's: geometric mean {gm([e['auto_time'] for e in picks if 'auto_time' in e]):.2f}x, "
            f"worst {max((e.get('auto_time', 0) for e in picks), default=math.nan):.2f}x"
        )
    print(
        f"bound violations (values beyond the bound): errbound {sum(e['viol_ours'] for e in summary)}, peers "
        f"{sum(e['viol_peers'] for e in summary)}"
    )
    print("# cells: ratio (! = bound violated) compress/decompress MB/s; MB/s are wall clock, one thread")
    return 0


if __name__ == "__main__":
    sys.exit(main())
