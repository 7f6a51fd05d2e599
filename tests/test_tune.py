"""The tuner (errbound.tune): targets parse, choices meet them, and ``errbound tune`` writes a
bounds file that ``errbound h5 compress`` takes as is."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import field_names, load_field

import errbound
from errbound.bounds import finite_range
from errbound.bounds import psnr as measure_psnr
from errbound.codec import codec_names
from errbound.integrations.tune import AUTO_WITHIN, DEFAULT_CODECS, choose, parse_target, sample_regions

FAST = ["sz", "zfp"]  # the tuner tries every lossy codec by default; two keep the tests quick


def smooth(shape, seed=0):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*(np.linspace(0, 5, n) for n in shape), indexing="ij")
    return (np.sin(grids[0]) * np.cos(grids[-1]) * 20 + 0.02 * rng.standard_normal(shape)).astype(np.float32)


@pytest.mark.parametrize("text", ["psnr", "psnr=0", "ratio=1", "max-rel=2", "snr=40", "psnr=abc", "ratio=-3"])
def test_bad_targets_are_refused(text):
    with pytest.raises(errbound.BoundError, match="target must be"):
        parse_target(text)


def test_targets_parse():
    assert parse_target("psnr=60") == ("psnr", 60.0)
    assert parse_target("max_rel=1e-3") == ("max-rel", 1e-3)


def test_the_sample_is_two_blocks_of_the_arrays_shape_or_all_of_a_small_array():
    assert sample_regions((10, 10), 1000) == [(slice(0, 10), slice(0, 10))]
    regions = sample_regions((200, 300, 400), 1 << 16)
    assert len(regions) == 2
    sizes = [math.prod(s.stop - s.start for s in r) for r in regions]
    assert all(0.8 * (1 << 15) < n < 1.3 * (1 << 15) for n in sizes)


def test_psnr_choice_meets_the_target_when_compressed_with_its_bound():
    x = smooth((40, 80, 90))
    result = errbound.tune(x, "psnr=50", codecs=FAST)
    assert result.mode == "psnr" and result.codec in FAST and result.met
    assert result.sample_values < x.size and result.total_values == x.size
    y = errbound.decompress(errbound.compress(x, result.codec, abs=result.abs_bound))
    assert measure_psnr(x, y) >= 50 - 0.5  # the sample's prediction; h5 compress then enforces the target
    assert {c["codec"] for c in result.candidates} == set(FAST)
    best = max(c["ratio"] for c in result.candidates if c["met"])
    assert result.predicted_ratio == best


def test_by_default_auto_is_a_candidate_and_kept_within_one_percent_of_the_best():
    x = smooth((40, 80, 90))
    result = errbound.tune(x, "max-rel=1e-3")
    rows = {c["codec"]: c for c in result.candidates}
    assert set(rows) == {c for c in DEFAULT_CODECS if c in codec_names()} and "auto" in rows
    best = max(r["ratio"] for r in rows.values())
    assert result.codec == (
        "auto" if rows["auto"]["ratio"] >= AUTO_WITHIN * best else max(rows, key=lambda c: rows[c]["ratio"])
    )
    assert result.predicted_ratio >= AUTO_WITHIN * best
    y = errbound.decompress(errbound.compress(x, result.codec, **result.bound))
    assert np.abs(y.astype(np.float64) - x).max() <= 1e-3 * float(x.max() - x.min())


class _StubSample:
    """Fixed, known results per codec: ratio grows and PSNR falls with the absolute bound."""

    range, values, total = 1.0, 1000, 1000

    def __init__(self, ratio: dict, psnr: dict):
        self.ratio, self.psnr = ratio, psnr

    def measure(self, codec, abs=None, rel=None):  # noqa: A002 - the bound's keyword
        eb = abs if abs is not None else rel * self.range
        return {
            "ratio": self.ratio[codec] * math.sqrt(eb / 1e-3),
            "psnr": self.psnr[codec] - 20 * math.log10(eb),
            "max_rel": eb / self.range,
        }


@pytest.mark.parametrize(
    "ratio, psnr, target, picked",
    [
        ({"auto": 9.95, "sz": 10.0, "zfp": 5.0}, {"auto": 0, "sz": 0, "zfp": 0}, "max-rel=1e-3", "auto"),  # 0.5 % less
        ({"auto": 9.8, "sz": 10.0, "zfp": 5.0}, {"auto": 0, "sz": 0, "zfp": 0}, "max-rel=1e-3", "sz"),  # 2 % less
        (
            {"auto": 12.0, "sz": 10.0, "zfp": 5.0},
            {"auto": 0, "sz": 0, "zfp": 0},
            "max-rel=1e-3",
            "auto",
        ),  # best outright
        # ratio targets: same bound for both, then PSNR within 0.087 dB keeps auto, 0.2 dB does not
        ({"auto": 10.0, "sz": 10.0, "zfp": 10.0}, {"auto": 60.0, "sz": 60.05, "zfp": 50.0}, "ratio=20", "auto"),
        ({"auto": 10.0, "sz": 10.0, "zfp": 10.0}, {"auto": 60.0, "sz": 60.2, "zfp": 50.0}, "ratio=20", "sz"),
        # a target auto misses on the sample never goes to auto, however close its ratio
        ({"auto": 11.0, "sz": 10.0, "zfp": 5.0}, {"auto": -1e9, "sz": 0.0, "zfp": 0.0}, "psnr=40", "sz"),
    ],
)
def test_auto_is_kept_within_one_percent_of_the_best_and_only_where_it_meets_the_target(ratio, psnr, target, picked):
    result = choose(_StubSample(ratio, psnr), target, ["auto", "sz", "zfp"])
    assert result.codec == picked, result.candidates
    assert result.met


def test_max_rel_choice_is_a_rel_bound_and_ratio_choice_reaches_about_the_ratio():
    x = smooth((30, 60, 70), seed=1)
    result = errbound.tune(x, "max-rel=1e-3", codecs=FAST)
    assert result.bound == {"rel": 1e-3}
    blob = errbound.compress(x, result.codec, **result.bound)
    assert np.abs(errbound.decompress(blob) - x).max() <= 1e-3 * finite_range(x)
    wanted = errbound.tune(x, "ratio=15", codecs=FAST)
    assert wanted.mode == "abs" and wanted.met
    actual = x.nbytes / len(errbound.compress(x, wanted.codec, abs=wanted.value))
    assert actual >= 15 * 0.75, actual


def test_constant_arrays_and_bad_input():
    constant = np.full((50, 50), 3.0)
    result = errbound.tune(constant, "psnr=40", codecs=["sz"])
    assert result.abs_bound == 0.0
    # a ratio target: the advice is a bound that stores the array exactly (it was abs =
    # the target ratio itself, 20, which moved every value by 2), measured with that bound
    for target, met in (("ratio=20", True), ("ratio=1e9", False)):
        result = errbound.tune(constant, target, codecs=["sz", "zfp"])
        assert result.met is met and (result.mode, result.value) == ("rel", 1e-3)
        blob = errbound.compress(constant, result.codec, **{result.mode: result.value})
        np.testing.assert_array_equal(errbound.decompress(blob), constant)
        assert constant.nbytes / len(blob) == pytest.approx(result.predicted_ratio, rel=0.01)
    with pytest.raises(errbound.BoundError):
        errbound.tune(np.arange(10), "psnr=40")


REAL = [n for n in field_names() if n.startswith(("echam5", "rcm-eur011", "mpas"))] or [
    "echam5_temperature_17x96x192.f32"
]


@pytest.mark.parametrize("name", REAL)
def test_real_fields_meet_psnr_and_max_rel_targets(name):
    x = load_field(name)  # skips cleanly without ../shared/data
    for target in ("psnr=60", "max-rel=1e-4"):
        r = errbound.tune(x, target, codecs=FAST)
        bound = {"abs": r.abs_bound} if r.mode == "psnr" else r.bound
        y = errbound.decompress(errbound.compress(x, r.codec, **bound))
        if r.mode == "psnr":
            assert measure_psnr(x, y) >= 60 - 0.5
        else:
            assert np.abs(y.astype(np.float64) - x).max() <= 1e-4 * finite_range(x)
        assert r.predicted_ratio > 1


def test_cli_tune_writes_a_bounds_file_h5_compress_takes_and_meets_the_psnr_target(tmp_path):
    h5py = pytest.importorskip("h5py")
    data = {"a/T": smooth((20, 60, 80)), "b/P": smooth((50, 50), seed=4).astype(np.float64), "c/i": np.arange(5000)}
    with h5py.File(tmp_path / "in.h5", "w") as f:
        for name, value in data.items():
            f.create_dataset(name, data=value)
    env = {**os.environ, "ERRBOUND_PROGRESS": "0"}
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "errbound.cli",
            "tune",
            str(tmp_path / "in.h5"),
            "--target",
            "psnr=55",
            "-o",
            str(tmp_path / "bounds.toml"),
            "--verify",
            "--codecs",
            "sz,zfp",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    assert "/a/T" in res.stdout and "/b/P" in res.stdout and "/c/i" not in res.stdout
    assert "pred ratio" in res.stdout and "verified" in res.stdout
    text = (tmp_path / "bounds.toml").read_text()
    assert 'match = "/a/T"' in text and "psnr = 55.0" in text and "start_abs" in text
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "errbound.cli",
            "h5",
            "compress",
            str(tmp_path / "in.h5"),
            str(tmp_path / "out.h5"),
            "--config",
            str(tmp_path / "bounds.toml"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert res.returncode == 0, res.stderr
    with h5py.File(tmp_path / "out.h5") as f:
        for name in ("a/T", "b/P"):
            assert measure_psnr(data[name], f[name][...]) >= 55
        np.testing.assert_array_equal(f["c/i"][...], data["c/i"])


def test_a_range_beyond_float64_is_tuned_to_exact_storage():
    """rel * range is infinite there: every candidate failed on the infinite bound; like
    compress(), the tuner stores such an array exactly."""
    from errbound.integrations.tune import tune

    x = np.concatenate(([1e308, -1e308], np.linspace(0, 1, 2000)))
    result = tune(x, "max-rel=1e-3")
    assert result.mode == "rel" and result.abs_bound == 0.0
