"""The pictures: ``errbound bench --plot`` and ``errbound h5 info --check --plot``, rendered for real.

Each file must be a PNG of a sensible size whose pixels show something (many colours, not a
blank canvas); the error maps of a field with its error bound must use both ends of the
diverging scale.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

pytest.importorskip("matplotlib")
h5py = pytest.importorskip("h5py")

from errbound.cli.main import main as cli  # noqa: E402

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def field(shape, seed=0):
    grids = np.meshgrid(*[np.linspace(0, 4, n) for n in shape], indexing="ij")
    rng = np.random.default_rng(seed)
    return (sum(np.sin(g * (1 + i)) for i, g in enumerate(grids)) + 0.02 * rng.standard_normal(shape)).astype(
        np.float32
    )


def picture(path):
    """The image's RGB pixels, after checking that the file is a real, non-trivial PNG."""
    from matplotlib import image

    data = path.read_bytes()
    assert data[:8] == PNG_MAGIC and len(data) > 20_000, (path, len(data))
    pixels = image.imread(path)[..., :3]
    assert pixels.shape[0] > 300 and pixels.shape[1] > 800
    colours = np.unique((pixels * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 200, f"{path}: only {len(colours)} colours"
    return pixels


def test_bench_plot_draws_rate_distortion_curves(tmp_path, capsys):
    np.save(tmp_path / "f.npy", field((24, 40, 48)))
    png = tmp_path / "rd.png"
    args = ["bench", str(tmp_path / "f.npy"), "--rel", "1e-2,1e-3", "--codecs", "sz,fz", "--peers", "sz3"]
    assert cli([*args, "--repeat", "1", "--min-time", "0", "--plot", str(png)]) == 0
    assert str(png) in capsys.readouterr().out
    picture(png)


def test_h5_info_plot_draws_original_reconstruction_and_error_per_dataset(tmp_path, capsys):
    src, out, pics = tmp_path / "in.h5", tmp_path / "out.h5", tmp_path / "pics"
    with h5py.File(src, "w") as f:
        f.create_dataset("atm/T", data=field((6, 60, 90), 1) + 250)
        f.create_dataset("land/h", data=field((80, 70), 2) * 100)
        f.create_dataset("ps", data=field((5000,), 3).astype(np.float64))
        f.create_dataset("atm_T", data=field((40, 30), 4))  # the same file name as /atm/T
    assert cli(["h5", "compress", str(src), str(out), "--rel", "1e-3"]) == 0
    assert cli(["h5", "info", str(out), "--check", str(src), "--plot", str(pics)]) == 0
    assert "4 picture(s)" in capsys.readouterr().out
    names = sorted(p.name for p in pics.iterdir())
    assert len(names) == 4 and {"atm_T.png", "land_h.png", "ps.png"} <= set(names), names
    for name in ("atm_T.png", "land_h.png"):
        pixels = picture(pics / name)
        right = pixels[:, 2 * pixels.shape[1] // 3 :]  # the error map: errors of both signs, up to the bound
        red = (right[..., 0] > 0.6) & (right[..., 2] < 0.4)
        blue = (right[..., 2] > 0.6) & (right[..., 0] < 0.4)
        assert red.sum() > 500 and blue.sum() > 500, name
    picture(pics / "ps.png")


def test_plot_needs_check_and_says_what_to_install(tmp_path, monkeypatch, capsys):
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f.create_dataset("x", data=field((50, 50)))
    assert cli(["h5", "info", str(tmp_path / "in.h5"), "--plot", str(tmp_path)]) == 1
    assert "--check" in capsys.readouterr().err
    np.save(tmp_path / "f.npy", field((20, 20)))
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if it were not installed
    args = ["bench", str(tmp_path / "f.npy"), "--rel", "1e-2", "--codecs", "fz", "--peers", "none"]
    assert cli([*args, "--repeat", "1", "--min-time", "0", "--plot", str(tmp_path / "x.png")]) == 1
    assert "pip install 'errbound[plot]'" in capsys.readouterr().err
