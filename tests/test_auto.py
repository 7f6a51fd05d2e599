"""The `auto` codec: it codes every array with the candidate that needs the fewest bytes on its
sample, records the choice, and its streams decode through the chosen codec alone.

Bounds, modes, dtypes, 0-4 D and specials are covered for `auto` by the property tests
(tests/conftest.py lists every registered codec)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import check_roundtrip

import errbound
from errbound import stream
from errbound.codecs import auto
from errbound.errors import CodecOptionError, CorruptStreamError, UnsupportedStreamError


def smooth(shape, seed=0, noise=0.01):
    rng = np.random.default_rng(seed)
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    x = sum(np.sin((k + 1.3) * g) for k, g in enumerate(grids)) + noise * rng.standard_normal(shape)
    return x.astype(np.float32)


def choice_of(blob: bytes) -> dict:
    first = errbound.info(blob)["stages"][0]
    assert first["name"] == "auto"
    return first["params"]


def coded_size(x, codec, eb) -> int:
    return len(errbound.compress(x, codec, abs=eb))


@pytest.mark.parametrize(
    "x",
    [smooth((40, 50)), smooth((3000,), 1, 0.3), smooth((12, 13, 14), 2), np.random.default_rng(3).random((30, 31))],
    ids=["2d-smooth", "1d-noisy", "3d", "2d-noise"],
)
@pytest.mark.parametrize("rel", [1e-2, 1e-4])
def test_small_arrays_get_the_best_candidate_exactly(x, rel):
    """Below WHOLE_BELOW values every candidate codes the whole array: the pick is the best."""
    eb = rel * float(x.max() - x.min())
    blob = errbound.compress(x, "auto", abs=eb)
    check_roundtrip(x, errbound.decompress(blob), "abs", eb, blob)
    picked = choice_of(blob)
    sizes = {c: coded_size(x, c, eb) for c in auto.candidates_for(x, eb)}
    assert set(picked["sampled"]) == set(sizes)
    assert picked["sample_values"] == x.size
    best = min(sizes.values())
    # the record names the chosen codec; the rest of the stream is that codec's own stream
    assert len(blob) <= best + len(json.dumps(picked)) + 64
    # the pick is the best once a slower codec's margin is charged (sizes x margin), so it
    # is never more than the largest margin above the smallest stream
    weighted = {c: size * auto.SLOWER_MARGIN[c] for c, size in sizes.items()}
    assert weighted[picked["codec"]] <= min(weighted.values()) + 1
    assert sizes[picked["codec"]] <= best * max(auto.SLOWER_MARGIN.values()) + 1


def test_large_arrays_are_chosen_from_a_sample():
    x = smooth((64, 64, 64))
    blob = errbound.compress(x, "auto", rel=1e-3)
    picked = choice_of(blob)
    assert picked["sample_values"] < x.size // 4
    assert picked["codec"] in auto.CANDIDATES
    check_roundtrip(x, errbound.decompress(blob), "rel", 1e-3, blob)


def test_low_rank_matrix_is_given_to_hlr():
    t = np.sort(np.random.default_rng(7).uniform(0, 40, 600))
    x = np.exp(-np.abs(t[:, None] - t[None, :])).astype(np.float32)
    assert "hlr" in auto.candidates_for(x, 1e-4)
    assert "hlr" not in auto.candidates_for(np.random.default_rng(1).random((600, 600)).astype(np.float32), 1e-4)
    blob = errbound.compress(x, "auto", abs=1e-4)
    assert choice_of(blob)["codec"] == "hlr"
    check_roundtrip(x, errbound.decompress(blob), "abs", 1e-4, blob)


def test_candidates_option_restricts_the_choice():
    x = smooth((40, 50))
    blob = errbound.compress(x, "auto", rel=1e-3, candidates="sz,fz")
    assert set(choice_of(blob)["sampled"]) == {"sz", "fz"}
    assert errbound.compress(x, "auto", rel=1e-3, candidates=["sperr"]) == errbound.compress(
        x, "auto", rel=1e-3, candidates="sperr"
    )
    for bad in ("zfp", "auto", "", ["sz", "nope"]):
        with pytest.raises(CodecOptionError):
            errbound.compress(x, "auto", rel=1e-3, candidates=bad)


def _with_choice(blob: bytes, **changes) -> bytes:
    header, sections = stream.unpack(blob)
    header.stages[0]["params"].update(changes)
    return stream.pack(header, list(sections.items()))


def test_a_forged_choice_is_refused():
    blob = errbound.compress(smooth((40, 50)), "auto", rel=1e-3)
    for codec in ("auto", "raw", "nope", "zfp"):
        with pytest.raises(CorruptStreamError):
            errbound.decompress(_with_choice(blob, codec=codec))
    with pytest.raises(UnsupportedStreamError):
        errbound.decompress(_with_choice(blob, codec_version=99))
    with pytest.raises(CorruptStreamError):
        errbound.decompress(_with_choice(blob, sampled="many"))


def test_info_and_cli_say_what_was_picked(tmp_path, capsys):
    from errbound.cli.main import main

    x = smooth((40, 50))
    src = tmp_path / "x.npy"
    np.save(src, x)
    assert main(["compress", str(src), "-o", str(tmp_path / "x.eb"), "--codec", "auto", "--rel", "1e-3"]) == 0
    assert main(["info", str(tmp_path / "x.eb")]) == 0
    out = capsys.readouterr().out
    picked = choice_of((tmp_path / "x.eb").read_bytes())
    assert f"picked          {picked['codec']}" in out
    for codec, ratio in picked["sampled"].items():
        assert f"{codec} {ratio:.4g}" in out


def test_hdf5_chunks_choose_their_own_codec(tmp_path):
    h5py = pytest.importorskip("h5py")
    import errbound.hdf5 as eh5

    rough = np.random.default_rng(0).random((64, 64)).astype(np.float32)
    x = np.concatenate([smooth((64, 64), noise=0.0), rough], axis=0)
    path = tmp_path / "a.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=x, chunks=(64, 64), **eh5.filter("auto", abs=1e-3))
    with h5py.File(path, "r") as f:
        y = f["x"][...]
        ds = f["x"]
        picks = set()
        for i in range(2):
            blob = ds.id.read_direct_chunk((64 * i, 0))[1]
            picks.add(choice_of(bytes(blob))["codec"])
    assert np.max(np.abs(y.astype(np.float64) - x)) <= 1e-3
    assert picks <= set(auto.CANDIDATES) and picks
