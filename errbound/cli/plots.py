"""Pictures for choosing a bound: rate-distortion curves (``bench --plot``) and, per variable, the
original, the reconstruction and the error against its bound (``h5 info --check --plot``).

matplotlib is an optional extra (``pip install 'errbound[plot]'``), imported only here and only
when a picture is asked for; it draws off-screen (Agg) and every file is written atomically.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from .common import CLIError, atomic_write

DPI = 110


def pyplot():
    """matplotlib.pyplot on the Agg backend, or a CLIError that says what to install."""
    try:
        import matplotlib
    except ImportError:
        raise CLIError("--plot needs matplotlib: pip install 'errbound[plot]'") from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    plt = pyplot()
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=DPI))
    finally:
        plt.close(fig)
    return path


# ---------------------------------------------------------------------------------------------
# rate-distortion

#: a peer is drawn in the colour of the errbound codec it compares with
_PEER_FAMILY = {"sz3": "sz", "zfp": "zfp", "sperr": "sperr", "sperr-wasm": "sperr"}


def _family(label: str) -> str:
    return _PEER_FAMILY.get(label, label.removeprefix("errbound-"))


def rate_distortion(rows: list[dict], value_range: float, path, title: str = "") -> Path:
    """Bits per value against PSNR and against max error / value range, one curve per codec
    (ours solid, each peer dashed in the colour of our codec of its kind), from ``errbound bench``'s rows; the bounds asked for are the
    dotted lines of the right panel."""
    plt = pyplot()
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
    labels = list(dict.fromkeys(r["codec"] for r in rows))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    families = list(dict.fromkeys(_family(label) for label in labels))
    drawn = 0
    for label in labels:
        points = sorted(
            (
                r
                for r in rows
                if r["codec"] == label and not r.get("error") and math.isfinite(r.get("bits_per_value", 0))
            ),
            key=lambda r: r["bits_per_value"],
        )
        if not points:
            continue
        ours = points[0]["kind"] == "ours"
        color = colors[families.index(_family(label)) % len(colors)]
        style = {
            "color": color,
            "linestyle": "-" if ours else "--",
            "marker": "o" if ours else "s",
            "markersize": 5 if ours else 8,
            "markerfacecolor": color if ours else "none",
            "label": label if ours else f"{label} (peer)",
            "zorder": 3 if ours else 2,
        }
        bits = [r["bits_per_value"] for r in points]
        psnr = [r["psnr"] if math.isfinite(r["psnr"]) else np.nan for r in points]
        left.plot(bits, psnr, **style)
        if value_range > 0:
            right.plot(bits, [max(r["max_err"], 1e-300) / value_range for r in points], **style)
        drawn += 1
    if not drawn:
        plt.close(fig)
        raise CLIError("nothing to plot: every case failed (see the table)")
    if value_range > 0:
        for eb in sorted({r["eb_abs"] for r in rows}):
            right.axhline(eb / value_range, color="0.6", linestyle=":", linewidth=1)
    left.set(xlabel="bits per value", ylabel="PSNR (dB)", title="quality")
    right.set(xlabel="bits per value", ylabel="max |x - x'| / value range", yscale="log", title="worst error")
    right.text(0.99, 0.01, "dotted: bounds asked for", transform=right.transAxes, ha="right", va="bottom", fontsize=8)
    for axis in (left, right):
        axis.grid(True, alpha=0.3)
    left.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))


# ---------------------------------------------------------------------------------------------
# error maps


WINDOW_1D = 1 << 20  # a 1-D array: at most this many values around its middle are read
LINE_1D = 400  # and this many are drawn as lines (the rest only count in the histogram)


def middle_slice(shape: tuple[int, ...]) -> tuple:
    """The index of the slice shown for an array: the 2-D slice through the middle of every
    leading axis, or up to WINDOW_1D values around the middle of a 1-D array."""
    if len(shape) == 1:
        start = max(shape[0] // 2 - WINDOW_1D // 2, 0)
        return (slice(start, min(start + WINDOW_1D, shape[0])),)
    return tuple(n // 2 for n in shape[:-2]) + (slice(None),) * 2


def error_map(original: np.ndarray, restored: np.ndarray, bound: float, path, title: str, mode: str = "abs") -> Path:
    """Three panels: the original slice, the reconstruction on the same colour scale, and the
    error on a scale that ends at the bound (``mode="pw_rel"``: the error relative to |x|)."""
    plt = pyplot()
    a, b = np.asarray(original, np.float64), np.asarray(restored, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = (b - a) / np.abs(a) if mode == "pw_rel" else b - a
    err = np.where(np.isfinite(a), err, np.nan)
    finite = a[np.isfinite(a)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    worst = float(np.nanmax(np.abs(err))) if np.isfinite(err).any() else 0.0
    scale = bound if bound > 0 else (worst or 1.0)
    what = "relative error" if mode == "pw_rel" else "error"
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.4), constrained_layout=True)
    if a.ndim == 1:  # lines for a few hundred values in the middle, the histogram of all
        start = max(a.size // 2 - LINE_1D // 2, 0)
        x = np.arange(start, min(start + LINE_1D, a.size))
        axes[0].plot(x, a[x], linewidth=1.2, label="original")
        axes[0].plot(x, b[x], linewidth=0.8, linestyle="--", label="reconstruction")
        axes[0].set(title=f"{x.size} values in the middle", xlabel="index")
        axes[0].legend(fontsize=8)
        axes[1].plot(x, err[x], linewidth=0.8, color="C3", marker=".", markersize=2)
        axes[2].hist(err[np.isfinite(err)], bins=101, range=(-scale, scale), color="C3")
        for sign in (-1, 1):
            axes[1].axhline(sign * scale, color="k", linestyle=":", linewidth=1)
            axes[2].axvline(sign * scale, color="k", linestyle=":", linewidth=1)
        axes[1].set(title=f"their {what} (dotted: the bound)", ylim=(-1.1 * scale, 1.1 * scale), xlabel="index")
        axes[2].set(title=f"{what} of all {a.size} values", xlabel=what, ylabel="count")
    else:
        for axis, values, name in ((axes[0], a, "original"), (axes[1], b, "reconstruction")):
            image = axis.imshow(values, cmap="viridis", vmin=lo, vmax=hi, origin="lower", interpolation="nearest")
            axis.set_title(name)
            fig.colorbar(image, ax=axis, shrink=0.85)
        image = axes[2].imshow(err, cmap="RdBu_r", vmin=-scale, vmax=scale, origin="lower", interpolation="nearest")
        axes[2].set_title(f"{what}; the colour scale ends at the bound")
        fig.colorbar(image, ax=axes[2], shrink=0.85, label=f"bound ±{scale:.3g}")
    fig.suptitle(f"{title}: max |{what}| {worst:.3g} = {worst / scale:.3f} x bound" if bound > 0 else title)
    return _save(fig, Path(path))


def picture_name(dataset_path: str) -> str:
    """A file name for a dataset's picture: ``/atm/T`` -> ``atm_T.png``."""
    return (re.sub(r"[^A-Za-z0-9_.-]+", "_", dataset_path.strip("/")) or "root") + ".png"


def h5_error_maps(path, original_path, rows: list[dict], directory) -> list[Path]:
    """One error map per checked errbound dataset of ``errbound h5 info --check`` (``rows``)."""
    import h5py

    from ..integrations.hdf5 import inprocess

    inprocess.register()
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    with h5py.File(path, "r") as out, h5py.File(original_path, "r") as orig:
        for row in rows:
            if "max_err" not in row or not row["shape"]:
                continue
            name = row["path"]
            index = middle_slice(tuple(row["shape"]))
            mode = row["bound"].split("=", 1)[0]
            bound = float(row["bound"].split("=", 1)[1].split()[0]) if mode == "pw_rel" else row["abs_bound"]
            where = ", ".join(str(i) for i in index if not isinstance(i, slice))
            title = f"{name} {row['codec']} {row['bound']}" + (f" [slice {where}]" if where else "")
            target = directory / picture_name(name)
            if target in written:  # /a/b and /a_b give one name: the later gets a number
                target = target.with_name(f"{target.stem}-{len(written)}.png")
            written.append(error_map(orig[name][index], out[name][index], bound, target, title, mode))
    return written
