"""Per-call cost of every codec on small chunks, beside its C peer, in one run.

    .venv/bin/python benchmarks/chunks.py [--sizes 4,16,64,256,1024,4096] [--repeat 15]
        [--field ../shared/data/sperr-turb_wmag-slice_999x999.f32] [--codecs sz,zfp,fz,sperr,hlr]

HDF5 and zarr call a codec once per chunk, and the tuner and the collectives cut data into
pieces: what a call costs at 4 KiB-4 MiB matters as much as throughput on whole fields. Chunks
are square 2-D tiles (n x n float32, n = sqrt(size / 4)) from the middle of a 2-D field (the
turbulence slice of ../shared/data by default, a synthetic field without it), compressed with an
absolute bound of 1e-3 of the whole field's range, one thread, in this process, after one
untimed call; each number is the median of ``--repeat`` calls, in milliseconds.

Peers: SZ3 (pysz, INTERP_LORENZO) beside ``sz``, zfpy beside ``zfp``, SPERR (hdf5plugin's filter
in an in-memory HDF5 file, minus what the same HDF5 calls cost without a filter) beside
``sperr``. ``fz`` and ``hlr`` have no C peer: their rows show their own times. "x peer" is
errbound's time over the peer's (below 1: errbound is faster). Ratios are of whole streams,
headers included (the peer's as its API returns them; SPERR's from the chunk's HDF5 storage
size). Uses errbound's public API
only, so ``PYTHONPATH=<old checkout>`` measures an older version in the same way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(var, "1")  # one thread, before numpy and numba load

import numpy as np  # noqa: E402

import errbound  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "sperr-turb_wmag-slice_999x999.f32"
PEER_OF = {"sz": "SZ3", "zfp": "zfpy", "sperr": "SPERR"}


def load_field(path: Path) -> np.ndarray:
    if path.is_file():
        return np.fromfile(path, "<f4").reshape(999, 999)
    grids = np.meshgrid(np.linspace(0, 20, 999), np.linspace(0, 20, 999), indexing="ij")
    rng = np.random.default_rng(0)
    return (np.sin(grids[0]) * np.cos(grids[1] * 1.3) + 0.05 * rng.standard_normal((999, 999))).astype(np.float32)


def median_ms(fn, repeat: int) -> float:
    fn()  # untimed: first-call costs are the cold-start benchmark's business
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


class Peer:
    def __init__(self, name: str, eb: float):
        self.name, self.eb = name, eb

    def available(self) -> bool:
        try:
            {
                "SZ3": lambda: __import__("pysz"),
                "zfpy": lambda: __import__("zfpy"),
                "SPERR": lambda: (__import__("h5py"), __import__("hdf5plugin")),
            }[self.name]()
            return True
        except ImportError:
            return False

    def times(self, x: np.ndarray, repeat: int) -> tuple[float, float, float]:
        """(compress ms, decompress ms, ratio)"""
        if self.name == "SZ3":
            from pysz import sz, szAlgorithm, szConfig, szErrorBoundMode

            cfg = szConfig()
            cfg.errorBoundMode, cfg.absErrorBound = szErrorBoundMode.ABS, self.eb
            cfg.cmprAlgo, cfg.openmp = szAlgorithm.INTERP_LORENZO, False
            blob = sz.compress(x, cfg)[0]
            return (
                median_ms(lambda: sz.compress(x, cfg), repeat),
                median_ms(lambda: sz.decompress(blob, x.dtype, x.shape), repeat),
                x.nbytes / blob.nbytes,
            )
        if self.name == "zfpy":
            import zfpy

            blob = zfpy.compress_numpy(x, tolerance=self.eb)
            return (
                median_ms(lambda: zfpy.compress_numpy(x, tolerance=self.eb), repeat),
                median_ms(lambda: zfpy.decompress_numpy(blob), repeat),
                x.nbytes / len(blob),
            )
        import h5py
        import hdf5plugin

        def write(filt):
            f = h5py.File(f"chunks-{time.perf_counter_ns()}.h5", "w", driver="core", backing_store=False, rdcc_nbytes=0)
            ds = f.create_dataset("d", data=x, chunks=x.shape, **filt)
            f.flush()
            return f, ds

        def cycle(filt):
            f, ds = write(filt)
            f.close()

        plain = median_ms(lambda: cycle({}), repeat)
        sperr = {"compression": hdf5plugin.Sperr(absolute=self.eb, swap=True)}
        c = max(median_ms(lambda: cycle(sperr), repeat) - plain, 0.0)
        f, ds = write(sperr)
        g, ds_plain = write({})
        size = ds.id.get_storage_size()
        d = max(median_ms(lambda: ds[...], repeat) - median_ms(lambda: ds_plain[...], repeat), 0.0)
        f.close()
        g.close()
        return c, d, x.nbytes / size


def ours(codec: str, x: np.ndarray, eb: float, repeat: int) -> tuple[float, float, float]:
    blob = errbound.compress(x, codec, abs=eb)
    y = errbound.decompress(blob)
    assert np.max(np.abs(y.astype(np.float64) - x)) <= eb, f"{codec} missed the bound"
    return (
        median_ms(lambda: errbound.compress(x, codec, abs=eb), repeat),
        median_ms(lambda: errbound.decompress(blob), repeat),
        x.nbytes / len(blob),
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="4,16,64,256,1024,4096", help="chunk sizes in KiB")
    ap.add_argument("--repeat", type=int, default=15)
    ap.add_argument("--field", type=Path, default=DATA)
    ap.add_argument("--codecs", default="sz,zfp,sperr,fz,hlr")
    args = ap.parse_args(argv)
    field = load_field(args.field)
    eb = 1e-3 * float(field.max() - field.min())
    codecs = args.codecs.split(",")
    print(
        f"# errbound {errbound.__version__} from {Path(errbound.__file__).parent}; field "
        f"{args.field.name if args.field.is_file() else 'synthetic'} {field.shape}; abs bound {eb:.4g} (1e-3 of "
        f"range); one thread; median of {args.repeat}; ms per call (compress / decompress); load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    head = ["chunk"]
    for codec in codecs:
        peer = PEER_OF.get(codec)
        head += [
            f"{peer} c/d" if peer else None,
            f"{codec} c/d",
            "x peer" if peer else None,
            f"{peer} ratio" if peer else None,
            f"{codec} ratio",
        ]
    head = [h for h in head if h]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for kib in (int(s) for s in args.sizes.split(",")):
        n = min(int(round((kib * 1024 / 4) ** 0.5)), min(field.shape))
        r0, c0 = (field.shape[0] - n) // 2, (field.shape[1] - n) // 2
        x = np.ascontiguousarray(field[r0 : r0 + n, c0 : c0 + n])
        row = [f"{x.nbytes / 1024:.0f} KiB ({n}x{n})"]
        for codec in codecs:
            c, d, ratio = ours(codec, x, eb, args.repeat)
            peer = PEER_OF.get(codec)
            if peer:
                p = Peer(peer, eb)
                if p.available():
                    pc, pd, pratio = p.times(x, args.repeat)
                    row += [
                        f"{pc:.2f} / {pd:.2f}",
                        f"{c:.2f} / {d:.2f}",
                        f"{c / pc if pc else float('inf'):.1f} / {d / pd if pd else float('inf'):.1f}",
                        f"{pratio:.1f}",
                    ]
                else:
                    row += ["-", f"{c:.2f} / {d:.2f}", "-", "-"]
            else:
                row.append(f"{c:.2f} / {d:.2f}")
            row.append(f"{ratio:.1f}")
        print("| " + " | ".join(row) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
