"""`sz` v3: an interpolation's codes in parts, one Huffman table and one zstd frame per run of
levels (huffman and zstd stages v2). The levels' code counts, the lossless stage's pieces, the
records and versions that old decoders refuse by name, and the bound with the parts in use."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import check_roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st

import errbound
from errbound import stream
from errbound.codecs.sz import codec as sz_codec
from errbound.codecs.sz import policy
from errbound.errors import CorruptStreamError
from errbound.layout import as_4d_shape
from errbound.stages.coders import huffman, varint
from errbound.stages.coders.zstd import ZstdLossless
from errbound.stages.predictors.interpolation import InterpolationPredictor, level_count

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from write_parts_stream_fixtures import spectral  # noqa: E402


def _stages(blob) -> dict:
    return {s["name"]: s["version"] for s in errbound.info(blob)["stages"]}


def _reference_level_counts(shape, anchor, order) -> list[int]:
    """The traversal's loop nest (interpolation.traverse_kernel) with the points counted
    instead of coded, per level from the coarsest."""
    dims = as_4d_shape(shape)
    top = level_count(dims, anchor)
    counts = []
    for level in range(top, 0, -1):
        s, here = 1 << (level - 1), 0
        for p, d in enumerate(order):
            if s >= dims[d]:
                continue
            begin, jump = [0] * 4, [2 * s] * 4
            for q in order[:p]:
                jump[q] = s
            begin[d] = s
            here += math.prod(len(range(begin[a], dims[a], jump[a])) for a in range(4))
        counts.append(here)
    if anchor <= 0:
        counts[0] += 1  # the first point, coded before the levels
    return counts


@pytest.mark.parametrize(
    "shape", [(5,), (1000,), (4097,), (7, 9), (64, 64), (33, 65, 17), (3, 5, 7, 9), (1, 1, 30), (129, 3)]
)
@pytest.mark.parametrize("anchor", [None, 0, 4, 64])
def test_level_code_counts_follow_the_traversal(shape, anchor):
    live = [a for a in range(4) if as_4d_shape(shape)[a] > 1]
    for order in (None, list(reversed(live))):
        predictor = InterpolationPredictor(True, order, 1.25, 2.0, anchor=anchor)
        x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
        codes = predictor.encode(x, 0.01)[0]
        levels = predictor.code_levels(shape)
        assert levels == _reference_level_counts(shape, predictor.anchor, predictor.order)
        assert sum(levels) == codes.size == predictor.expected_codes(shape)


def test_zstd_pieces_round_trip_and_are_checked():
    rng = np.random.default_rng(1)
    pieces = [bytes(3000), rng.integers(0, 256, 500, np.uint8).tobytes(), b"", b"xyz" * 40]
    stage = ZstdLossless()
    section = stage.compress_pieces(pieces)
    assert section[0] == 2 and stage.record()["version"] == 1  # the writer marks a kept section
    with pytest.raises(CorruptStreamError, match="in pieces under a version-1 zstd record"):
        stage.decompress(section, 10_000)
    assert stage.compress_pieces([b"abc" * 30]) == stage.compress(b"abc" * 30)  # one piece: a plain section
    stage.in_pieces = True
    assert stage.record()["version"] == 2
    stage = ZstdLossless.load([stage.record()])  # a version-2 record reads pieces
    assert stage.in_pieces and stage.decompress(section, 10_000) == b"".join(pieces)

    def pieces_of(*coded, count=None):
        out = bytes([2]) + varint.encode(len(coded) if count is None else count)
        return out + b"".join(varint.encode(len(c)) + c for c in coded)

    one = stage.compress(bytes(3000))
    bad = {
        "claims 1 pieces": pieces_of(one, count=1),
        "claims 65 pieces": pieces_of(*[one] * 65),
        "overruns the section": section[:-1],
        "not a stored or zstd section": pieces_of(one, section),
        "bytes after its pieces": section + b"\0",
        "a size the header allows": pieces_of(one, one),  # the second piece past the budget
        "truncated while reading piece count": bytes([2]),
    }
    for words, blob in bad.items():
        with pytest.raises(CorruptStreamError, match=words):
            stage.decompress(blob, 5000)


def _parts_field():
    return spectral((400, 300), np.float64, 142, 64)


def test_sz_codes_in_parts_carry_their_versions_and_older_decoders_refuse_them(monkeypatch):
    """Codes in parts need sz v3, huffman v2 and zstd v2: an older errbound refuses such a
    stream by name; a stream without parts keeps v1 records byte for byte."""
    x = _parts_field()
    blob = errbound.compress(x, "sz", rel=1e-3)
    assert errbound.info(blob)["codec_version"] == 3
    assert _stages(blob) == {"interpolation": 1, "huffman": 2, "zstd": 2}
    check_roundtrip(x, errbound.decompress(blob), "rel", 1e-3, blob)
    small = errbound.compress(x[:100], "sz", rel=1e-3)  # 30 000 codes: below PARTS_FROM_CODES
    assert errbound.info(small)["codec_version"] == 1 and set(_stages(small).values()) == {1}
    monkeypatch.setattr(sz_codec.SZCodec, "version", 2)  # what 0.3.0 declares
    errbound.decompress(small)
    with pytest.raises(errbound.UnsupportedStreamError, match="needs codec sz v3"):
        errbound.decompress(blob)
    monkeypatch.undo()
    monkeypatch.setattr(huffman.Huffman, "version", 1)
    with pytest.raises(errbound.UnsupportedStreamError, match="stage 'huffman' version 2 is newer"):
        errbound.decompress(blob)


def _relabelled_v1(blob: bytes, which: set[str]) -> bytes:
    """The stream with the records named in ``which`` (and the codec) saying version 1, its
    checksum sealed again: a forgery only the decoder's own checks can catch."""
    header, sections = stream.unpack(blob)
    obj = json.loads(header.to_json())
    obj["codec_version"] = 1
    for record in obj["stages"]:
        if record["name"] in which:
            record["version"] = 1
    forged = stream.Header.from_json(json.dumps(obj).encode())
    return stream.pack(forged, [(name, bytes(data)) for name, data in sections.items()])


def test_parts_under_version_1_records_are_refused():
    blob = errbound.compress(_parts_field(), "sz", rel=1e-3)
    with pytest.raises(CorruptStreamError, match="zstd section in pieces under a version-1 zstd record"):
        errbound.decompress(_relabelled_v1(blob, {"huffman", "zstd"}))
    with pytest.raises(CorruptStreamError, match="huffman block in parts under a version-1 huffman record"):
        errbound.decompress(_relabelled_v1(blob, {"huffman"}))


def test_hlr_and_auto_streams_code_their_sz_parts():
    x = _parts_field()
    hlr = errbound.compress(x, "hlr", rel=1e-3)
    assert errbound.info(hlr)["codec_version"] == 3 and _stages(hlr)["huffman"] == 2
    check_roundtrip(x, errbound.decompress(hlr), "rel", 1e-3, hlr)
    auto = errbound.compress(x, "auto", rel=1e-3)
    assert _stages(auto).get("huffman") == 2
    check_roundtrip(x, errbound.decompress(auto), "rel", 1e-3, auto)


def test_parts_are_kept_only_where_they_pay(monkeypatch):
    """Default mode: parts where their exact Huffman sizes say so, and then smaller than one
    table here; ratio first: coded both ways, never larger than one table."""
    x = _parts_field()
    with_parts = errbound.compress(x, "sz", rel=1e-3)
    best = errbound.compress(x, "sz", rel=1e-3, entropy="best")
    monkeypatch.setattr(sz_codec, "code_parts", lambda *args: None)
    one_table = errbound.compress(x, "sz", rel=1e-3)
    best_one_table = errbound.compress(x, "sz", rel=1e-3, entropy="best")
    assert _stages(one_table)["huffman"] == 1
    assert len(with_parts) < 0.99 * len(one_table)
    assert len(best) <= len(best_one_table)
    monkeypatch.undo()
    # white noise: every level spreads alike, so one table is kept
    noise = np.random.default_rng(3).standard_normal(200_000)
    assert _stages(errbound.compress(noise, "sz", rel=1e-3))["huffman"] == 1


def test_runs_join_levels_below_the_minimum_and_start_from_the_threshold():
    codes = np.full(300_000, 32768, np.int32)
    sized, whole = policy.code_parts(codes, [1, 3, 12, 48, 192, 768, 3072, 12288, 49152, 234464], 65536)
    assert [r.length for r in sized] == [4096, 12288, 49152, 234464]  # 1 + ... + 3072 = 4096
    assert whole.length == codes.size
    assert policy.code_parts(codes[:90_000], [90_000 - 70_000, 70_000], 65536) is None  # below the threshold
    assert policy.code_parts(codes, [2000, 298_000], 65536, from_codes=0) is None  # one run only


@st.composite
def _fields(draw):
    ndim = draw(st.integers(1, 3))
    side = {1: 100_000, 2: 320, 3: 48}[ndim]
    shape = tuple(draw(st.integers(side, side + side // 4)) for _ in range(ndim))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    x = spectral(shape, dtype, draw(st.integers(0, 2**16)), draw(st.sampled_from([8, 64, 512])), modes=60)
    if draw(st.booleans()):
        x = np.asfortranarray(x)
    mode = draw(st.sampled_from(["abs", "rel", "pw_rel"]))
    rel = draw(st.sampled_from([1e-1, 1e-2, 1e-3, 1e-4, 1e-6]))
    finite = x[np.isfinite(x)].astype(np.float64)
    value = rel * float(finite.max() - finite.min()) if mode == "abs" else rel
    if draw(st.integers(0, 5)) == 0:  # a few ulps
        mode, value = "abs", 3 * float(np.spacing(np.abs(finite).max().astype(dtype)))
    return x, mode, value, draw(st.sampled_from(["huffman", "best"]))


@settings(max_examples=20, deadline=None)
@given(_fields())
def test_bound_and_specials_hold_with_codes_in_parts(case):
    """Arrays past PARTS_FROM_CODES with structure at every scale (parts pay on most),
    1-3 D, both dtypes and orders, with the specials; bounds from 1e-1 down to a few ulps."""
    x, mode, value, entropy = case
    blob = errbound.compress(x, "sz", **{mode: value}, entropy=entropy)
    check_roundtrip(x, errbound.decompress(blob), mode, value, blob)
