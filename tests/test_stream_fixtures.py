"""Streams written by earlier versions decode to the same bytes, forever.

Every set under tests/fixtures/streams/ (see its README) is decoded case by case: the stream's
bytes must be the ones recorded when it was written (a fixture is never rewritten), the decoded
array must have the recorded dtype, shape, memory order and SHA-256, and where the original is
stored every value must be within the bound asked for, specials bit for bit."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import check_roundtrip

import errbound
from errbound.stage import stages

SETS = Path(__file__).resolve().parent / "fixtures" / "streams"


def all_cases():
    for manifest in sorted(SETS.glob("*/manifest.json")):
        cases = json.loads(manifest.read_text())["cases"]
        for name, case in sorted(cases.items()):
            yield pytest.param(manifest.parent, name, case, id=f"{manifest.parent.name}/{name}")


CASES = list(all_cases())


def test_there_are_fixtures_for_every_codec_and_stage():
    codecs = {case.values[2]["codec"] for case in CASES}
    assert set(errbound.codecs()) <= codecs  # codecs() also imports every codec, hence every stage
    covered = {name for case in CASES for name in case.values[2]["stages"]}
    missing = set(stages()) - covered
    assert not missing, f"stages without a stored stream fixture (write a new set): {sorted(missing)}"


@pytest.mark.parametrize("folder,name,case", CASES)
def test_stored_stream_decodes_byte_identically(folder: Path, name: str, case: dict):
    blob = (folder / f"{name}.eb").read_bytes()
    assert hashlib.sha256(blob).hexdigest() == case["stream_sha256"], "a stored fixture was rewritten"
    y = errbound.decompress(blob)
    want = case["decoded"]
    order = "F" if y.ndim >= 2 and y.flags.f_contiguous and not y.flags.c_contiguous else "C"
    assert (y.dtype.str, list(y.shape), order) == (want["dtype"], want["shape"], want["order"])
    assert hashlib.sha256(y.tobytes(order=order)).hexdigest() == want["sha256"], "decoded bytes changed"
    if case["original_stored"]:
        x = np.load(folder / f"{name}.npy", allow_pickle=False)
        ((mode, value),) = case["bound"].items()
        check_roundtrip(x, y, mode, value, blob)
