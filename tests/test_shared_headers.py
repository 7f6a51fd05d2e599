"""decompress parses the fixed part of a stream header (all but its sections' lengths) once
and shares it between the streams that have the same one, as the chunks of a dataset do.
Shared or not, a stream decodes to the same header, the same values and the same errors;
the shared parts cannot be changed; the memo stays bounded."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import ALL_CODECS, DTYPES, MODES, PROPERTY_EXAMPLES, bits, check_roundtrip
from hypothesis import given, settings
from hypothesis import strategies as st
from test_bound_property import cases, draw_bound
from test_stream_corruption import NAMES, STREAMS, build, split

import errbound
from errbound import stream
from errbound.errors import OutputLimitError, UnsupportedInputError

_unpack = stream.unpack


@pytest.fixture(autouse=True)
def fresh_memo():
    stream._shared.clear()
    stream._seen.clear()
    yield
    stream._shared.clear()
    stream._seen.clear()


def _alone(monkeypatch, blob):
    """What decompress makes of ``blob`` with every header parsed on its own: the values'
    bits, or the error's type and message."""
    with monkeypatch.context() as m:
        m.setattr(stream, "unpack", lambda b, shared=False: _unpack(b))
        return _outcome(blob)


def _outcome(blob):
    try:
        return bits(errbound.decompress(blob)).tobytes()
    except Exception as exc:  # noqa: BLE001 - the comparison is the point
        return type(exc), str(exc)


@pytest.mark.parametrize("name", NAMES)
def test_a_shared_header_is_the_one_parsed_alone(name, monkeypatch):
    blob, _ = STREAMS[name]
    alone = _unpack(blob)[0]
    expected = _alone(monkeypatch, blob)
    seen = []
    for _ in range(3):  # first sight (parsed alone), shared from the second on
        header = _unpack(blob, shared=True)[0]
        assert header == alone
        seen.append(header.stages)
        assert _outcome(blob) == expected
    assert seen[1] is seen[2]
    assert isinstance(seen[2], stream.SharedRecords) and not isinstance(seen[0], stream.SharedRecords)


@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: d.__name__)
@pytest.mark.parametrize("codec", ALL_CODECS)
@settings(max_examples=PROPERTY_EXAMPLES, deadline=None)
@given(data=st.data())
def test_shared_decodes_keep_the_bound_and_the_bits_of_a_decode_alone(codec, dtype, data):
    """Every codec, bound mode, dtype, 0-4 dimensions, layout, specials and bounds down to a
    few ulps (the bound property test's cases): the first decode parses its header alone,
    the next ones share it, and all give the same bits, within the bound."""
    x = data.draw(cases(dtype), label="array")
    mode = data.draw(st.sampled_from(MODES), label="mode")
    value = draw_bound(data.draw, mode, x)
    data.draw(st.just(value), label=f"{mode} bound")
    blob = errbound.compress(x, codec, **{mode: value})
    stream._shared.clear()
    stream._seen.clear()
    alone = errbound.decompress(blob)  # first sight: parsed alone
    check_roundtrip(x, alone, mode, value, blob)
    for _ in range(2):
        shared = errbound.decompress(blob)
        check_roundtrip(x, shared, mode, value, blob)
        assert bits(shared).tobytes() == bits(alone).tobytes()
    assert isinstance(_unpack(blob, shared=True)[0].stages, stream.SharedRecords)  # they did share


def test_the_chunks_of_a_dataset_share_one_header_and_its_loaded_stages(monkeypatch):
    field = np.cumsum(np.random.default_rng(5).standard_normal((4, 64, 64)), axis=2).astype(np.float32)
    blobs = [errbound.compress(tile, "sz", abs=0.05, predictor="lorenzo") for tile in field]
    expected = [_alone(monkeypatch, blob) for blob in blobs]
    assert [_outcome(blob) for blob in blobs] == expected
    headers = [_unpack(blob, shared=True)[0] for blob in blobs]
    assert len({id(h.stages) for h in headers}) == 1
    assert len({tuple(h.sections) for h in headers}) == len(blobs)  # only their lengths differ
    assert ("sz", (64, 64), 0.05) in stream.derived(headers[0].stages)
    assert stream.derived(_unpack(blobs[0])[0].stages) is None
    assert [_outcome(blob) for blob in blobs] == expected
    assert "decompress" in stream.derived(headers[0].stages)
    # the per-call checks still run where the header's own were done once
    with pytest.raises(OutputLimitError):
        errbound.decompress(blobs[0], max_bytes=64 * 64 * 4 - 1)
    with pytest.raises(UnsupportedInputError, match="out="):
        errbound.decompress(blobs[0], out=np.empty((64, 64), np.float64))
    out = np.empty((64, 64), np.float32)
    assert errbound.decompress(blobs[1], out=out) is out
    assert bits(out).tobytes() == expected[1]


def test_shared_parts_are_read_only(monkeypatch):
    blob, _ = STREAMS["sz"]
    expected = _alone(monkeypatch, blob)
    for _ in range(2):
        header = _unpack(blob, shared=True)[0]
    records = header.stages
    for change in (
        lambda: records.append({}),
        lambda: records.__setitem__(0, {}),
        lambda: records.__delitem__(0),
        lambda: records.sort(),
        lambda: records[0].__setitem__("name", "lorenzo"),
        lambda: records[0]["params"].update(radius=3),
        lambda: records[0]["params"].pop("radius"),
        lambda: header.bound.__setitem__("value", 1.0),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change()
    if isinstance(records[0]["params"].get("order"), list):
        with pytest.raises(TypeError):
            records[0]["params"]["order"].append(0)
    assert _outcome(blob) == expected
    # json and plain copies still work on them
    assert json.loads(json.dumps(records)) == [dict(r) for r in records]


def _variants(blob: bytes) -> dict[str, bytes]:
    """The stream with its header JSON written in ways errbound never writes them."""
    obj, secs = split(blob)
    payload = b"".join(b for _, b in secs)
    sections = json.dumps(obj["sections"], separators=(",", ":"))
    rest = {k: v for k, v in obj.items() if k != "sections"}
    body = json.dumps(rest, separators=(",", ":"))[:-1]
    bound = json.dumps(obj["bound"], separators=(",", ":"))
    first = dict(obj["sections"][:1]) if obj["sections"] else {}
    return {
        "as written": (body + ',"sections":' + sections + "}").encode(),
        "sections first": ('{"sections":' + sections + "," + body[1:] + "}").encode(),
        "sections twice, the first wrong": (
            '{"sections":[["x",1]],' + body[1:] + ',"sections":' + sections + "}"
        ).encode(),
        "sections twice, the last wrong": (body + ',"sections":' + sections + ',"sections":[["x",1]]}').encode(),
        "sections in the bound, after them": (
            body + ',"sections":' + sections + ',"bound":' + bound[:-1] + ',"sections":[]}}'
        ).encode(),
        "a length that is not a number": (body + ',"sections":[["codes","many"]]}').encode(),
        "a length that is a fraction": (
            body + ',"sections":' + json.dumps([[n, v + 0.5] for n, v in first.items()]) + "}"
        ).encode(),
        "spaces": (body + ', "sections" : ' + sections + " }").encode(),
        "a member after them": (body + ',"sections":' + sections + ',"x":1}').encode(),
        "not an object after them": (body + ',"sections":' + sections + "]").encode(),
        "the fixed part in a string": (
            '{"note":"' + body.replace('"', '\\"') + '","sections":' + sections + "," + body[1:] + "}"
        ).encode(),
    }, payload


@pytest.mark.parametrize("name", ["sz", "sz-lorenzo", "zfp", "pw_rel", "sz-parts", "empty"])
def test_forged_headers_decode_as_if_parsed_alone(name, monkeypatch):
    blob, _ = STREAMS[name]
    variants, payload = _variants(blob)
    outcomes = set()
    for text in variants.values():
        forged = build(text, payload)
        expected = _alone(monkeypatch, forged)
        outcomes.add(expected if isinstance(expected, tuple) else "decoded")
        for _ in range(3):
            assert _outcome(forged) == expected
    assert "decoded" in outcomes and len(outcomes) > 1  # the variants reach both ends


def test_the_memo_stays_bounded(monkeypatch):
    monkeypatch.setattr(stream, "SHARED_HEADERS", 2)
    monkeypatch.setattr(stream, "SEEN_HEADERS", 5)
    x = np.linspace(0, 1, 4096, dtype=np.float32).reshape(64, 64) ** 2
    blobs = [errbound.compress(x, "sz", abs=1e-3 * (1 + k)) for k in range(4)]
    expected = [_alone(monkeypatch, blob) for blob in blobs]
    for _ in range(4):
        assert [_outcome(blob) for blob in blobs] == expected
        assert len(stream._shared) <= 2 and len(stream._seen) <= 5
    assert len(stream._shared) == 2  # the first two shared; the others parsed alone
    more = [errbound.compress(x, "sz", abs=1e-2 * (1 + k)) for k in range(2)]
    for blob in more:
        errbound.decompress(blob)
    assert len(stream._seen) <= 2 and not stream._shared  # past SEEN_HEADERS: cleared
