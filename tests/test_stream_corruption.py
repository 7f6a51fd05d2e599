"""A damaged, truncated, foreign or forged stream raises CorruptStreamError: never another
exception, never a crash, never wrong numbers where the damage is detectable.

Random damage (truncation, bit flips) must be caught by the container. Forged streams (a
tampered header with a freshly computed, valid checksum) must be caught by the decoders'
own consistency checks."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import zstandard
from conftest import LOSSY_CODECS, bits, check_roundtrip

import errbound
from errbound import stream
from errbound.codec import get_codec
from errbound.errors import CorruptStreamError, UnsupportedStreamError
from errbound.stage import stages
from errbound.stages.predictors.interpolation import level_bounds

sys.path.insert(0, str(Path(__file__).resolve().parent / "fixtures"))
from write_frozen_stream_fixtures import slabs  # noqa: E402
from write_lanes_stream_fixtures import noisy  # noqa: E402
from write_parts_stream_fixtures import spectral  # noqa: E402

# --------------------------------------------------------------------------- sample streams


def _field():
    i, j, k = np.indices((12, 14, 16))
    return (np.sin(i / 3) + np.cos(j / 4) * np.sin(k / 5) + 0.01 * np.cos(7.0 * i * j * k)).astype(np.float32)


def _with_specials(x):
    x = x.copy()
    x[0, 0, :6] = [0.0, -0.0, np.nan, np.inf, -np.inf, 1e-30]
    x[1] *= -1
    return x


def _make_streams():
    x = _field()
    xs = _with_specials(x)
    noise = np.random.default_rng(3).standard_normal(300)
    cases = {
        "sz": (x, "sz", "rel", 1e-3, {}),
        "sz-lorenzo": (xs, "sz", "abs", 1e-3, {"predictor": "lorenzo"}),
        "zfp": (xs, "zfp", "abs", 1e-3, {}),  # has a patches section (NaN, Inf, -0.0)
        "pw_rel": (xs, "sz", "pw_rel", 1e-2, {}),
        "pw_rel-zfp": (xs, "zfp", "pw_rel", 1e-2, {}),
        "zfp-unit-axis": (xs[:, None], "zfp", "abs", 1e-3, {}),  # v2: the stage names the shape coded
        "raw-fallback": (noise, "sz", "abs", 1e-310, {}),
        "empty": (np.zeros((3, 0), np.float32), "sz", "abs", 1.0, {}),
        "0-d": (np.array(1.5), "sz", "abs", 1e-3, {}),
        "fortran-2d": (np.asfortranarray(x[0].astype(np.float64)), "sz", "abs", 1e-4, {}),
        # sz v3: the codes in parts (a Huffman table and a zstd frame per run of levels)
        "sz-parts": (_with_specials(spectral((40, 50, 60), np.float32, 146, 8)), "sz", "rel", 1e-3, {}),
        # sz v4: the codes rANS-coded in lanes
        "sz-lanes": (noisy((40, 48, 56), np.float32, 147), "sz", "rel", 1e-3, {"entropy": "best"}),
        # sz v5: frozen axes (interpolation, lorenzo)
        "sz-frozen": (slabs((12, 40, 50), np.float32, 148), "sz", "rel", 1e-3, {}),
        "sz-frozen-lorenzo": (slabs((12, 40, 50), np.float64, 149), "sz", "rel", 1e-5, {}),
    }
    for codec in LOSSY_CODECS:  # codecs added later are covered too
        cases.setdefault(codec, (xs, codec, "rel", 1e-3, {}))
    out = {}
    for name, (data, codec, mode, value, opts) in cases.items():
        blob = errbound.compress(data, codec, **{mode: value}, **opts)
        check_roundtrip(data, errbound.decompress(blob), mode, value)
        out[name] = (blob, data)
    assert errbound.info(out["raw-fallback"][0])["codec"] == "raw"
    assert "patches" in errbound.info(out["zfp"][0])["sections"]
    assert errbound.info(out["zfp-unit-axis"][0])["codec_version"] == 2
    assert errbound.info(out["sz-parts"][0])["codec_version"] == 3
    assert errbound.info(out["sz-lanes"][0])["codec_version"] == 4
    for name, predictor in (("sz-frozen", "interpolation"), ("sz-frozen-lorenzo", "lorenzo")):
        assert errbound.info(out[name][0])["codec_version"] == 5
        assert errbound.info(out[name][0])["stages"][0]["name"] == predictor
    assert {"signs", "zeros"} <= set(errbound.info(out["pw_rel"][0])["sections"])
    return out


STREAMS = _make_streams()
NAMES = list(STREAMS)


def _decode_raises(blob, exc=CorruptStreamError):
    with pytest.raises(exc):
        errbound.decompress(blob)


def boundaries(blob: bytes) -> list[int]:
    """Every field and section boundary of a stream, read from its own header."""
    header, sections = stream.unpack(blob)
    head_len = struct.unpack_from("<I", blob, 6)[0]  # the stored (format 2: compressed) header
    marks = [0, 4, 5, 6, 10, 10 + head_len]
    pos = 10 + head_len
    for _, length in header.sections:
        pos += length
        marks.append(pos)
    assert pos == len(blob) - 4
    marks.append(len(blob))
    return sorted({m + d for m in marks for d in (-1, 0, 1) if 0 <= m + d < len(blob)})


# --------------------------------------------------------------------------- random damage


@pytest.mark.parametrize("name", NAMES)
def test_truncation_at_every_section_boundary(name):
    blob, _ = STREAMS[name]
    marks = boundaries(blob)
    assert len(marks) >= 12
    for n in marks:
        _decode_raises(blob[:n])
        _decode_raises(memoryview(blob)[:n])


@pytest.mark.parametrize("name", NAMES)
def test_truncation_at_many_lengths(name):
    blob, _ = STREAMS[name]
    lengths = (
        range(len(blob))
        if len(blob) <= 3000
        else sorted(
            set(range(64))
            | set(np.linspace(0, len(blob) - 1, 1500).astype(int))
            | set(range(len(blob) - 64, len(blob)))
        )
    )
    for n in lengths:
        _decode_raises(blob[:n])
    # cut from the front too
    for n in range(1, min(len(blob), 200)):
        _decode_raises(blob[n:])


@pytest.mark.parametrize("name", NAMES)
def test_single_bit_flips(name):
    blob, _ = STREAMS[name]
    buf = bytearray(blob)
    positions = range(len(blob)) if len(blob) <= 4096 else np.linspace(0, len(blob) - 1, 4096).astype(int)
    for pos in positions:
        for bit in (pos % 8, 7 - pos % 8) if len(blob) <= 2048 else (pos % 8,):
            buf[pos] ^= 1 << bit
            _decode_raises(bytes(buf))
            buf[pos] ^= 1 << bit
    assert bytes(buf) == blob


@pytest.mark.parametrize("name", NAMES)
def test_a_peek_at_the_header_reads_it_without_the_checksum_pass(name):
    """peek_header (what `errbound decompress` loads the codec from) gives unpack's header;
    past the header it reads nothing, so damage there is decompress's to find; in the
    prefix and the header it raises the container's own errors."""
    blob, _ = STREAMS[name]
    assert stream.peek_header(blob) == stream.unpack(blob)[0]
    damaged = bytearray(blob)
    damaged[-5] ^= 0xFF  # the last section byte (or the header's last, in a stream without sections)
    head_end = 10 + struct.unpack_from("<I", blob, 6)[0]
    if len(blob) - 5 >= head_end:
        assert stream.peek_header(bytes(damaged)) == stream.unpack(blob)[0]
    _decode_raises(bytes(damaged))
    for bad in (blob[:9], b"ERRX" + blob[4:], blob[:4] + b"\x00" + blob[5:], blob[: head_end - 1] + b"\x00" * 4):
        with pytest.raises(CorruptStreamError):
            stream.peek_header(bad)


@pytest.mark.parametrize("name", NAMES)
def test_extra_and_doubled_bytes(name):
    blob, _ = STREAMS[name]
    for bad in (
        blob + b"\x00",
        blob + blob,
        b"\x00" + blob,
        blob[:-4] + b"\x00" + blob[-4:],
        blob[:20] + blob,
        blob[:-5] + blob[-4:],
    ):
        _decode_raises(bad)


def test_valid_streams_decode_from_any_bytes_like():
    blob, data = STREAMS["sz"]
    for view in (bytearray(blob), memoryview(blob), np.frombuffer(blob, np.uint8)):
        np.testing.assert_array_equal(bits(errbound.decompress(view)), bits(errbound.decompress(blob)))


# --------------------------------------------------------------------------- foreign input


def _png():
    ihdr = struct.pack(">IIBBBBB", 4, 4, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return b"\x89PNG\r\n\x1a\n" + chunk + b"\x00" * 40


def _npy():
    f = io.BytesIO()
    np.save(f, np.arange(10.0))
    return f.getvalue()


FOREIGN = {
    "empty": b"",
    "one-byte": b"E",
    "magic-only": b"ERRB",
    "prefix-only": b"ERRB\x01\x00\x00\x00\x00\x00",
    "png": _png(),
    "zstd-frame": zstandard.ZstdCompressor().compress(b"hello world" * 20),
    "zstd-of-a-stream": zstandard.ZstdCompressor().compress(STREAMS["sz"][0]),
    "gzip": gzip.compress(b"hello world" * 20),
    "npy": _npy(),
    "hdf5-signature": b"\x89HDF\r\n\x1a\n" + bytes(100),
    "json": b'{"codec": "sz", "shape": [3]}',
    "zeros": bytes(1000),
    "ones": b"\xff" * 1000,
    "text": b"errbound stream" * 10,
}
for _n in (1, 7, 13, 14, 15, 64, 1000, 5000):
    FOREIGN[f"random-{_n}"] = np.random.default_rng(_n).integers(0, 256, _n, dtype=np.uint8).tobytes()
    FOREIGN[f"magic+random-{_n}"] = b"ERRB\x01\x00" + FOREIGN[f"random-{_n}"]


@pytest.mark.parametrize("name", list(FOREIGN))
def test_foreign_bytes(name):
    data = FOREIGN[name]
    for form in (data, bytearray(data), memoryview(data)):
        _decode_raises(form)
        with pytest.raises(CorruptStreamError):
            errbound.info(form)


@pytest.mark.parametrize(
    "obj",
    [
        "a str",
        "",
        12345,
        0,
        1.5,
        None,
        [1, 2, 3],
        {"codec": "sz"},
        object(),
        True,
        np.float64(1.0),
        memoryview(b"ERRB" * 10)[::2],
    ],
    ids=[
        "str",
        "empty-str",
        "int",
        "zero",
        "float",
        "None",
        "list",
        "dict",
        "object",
        "bool",
        "numpy-scalar",
        "strided-memoryview",
    ],
)
def test_wrong_types(obj):
    with pytest.raises(CorruptStreamError):
        errbound.decompress(obj)
    with pytest.raises(CorruptStreamError):
        errbound.info(obj)


def test_numeric_array_is_not_a_stream():
    _decode_raises(np.arange(100.0))
    _decode_raises(np.zeros((4, 4), np.float32))


# --------------------------------------------------------------------------- forging helpers


def build(
    head: bytes,
    payload: bytes,
    major: int = stream.FORMAT_MAJOR,
    minor: int = stream.FORMAT_MINOR,
    head_len: int | None = None,
    encode: bool = True,
) -> bytes:
    """A stream with a correct checksum around whatever header JSON and payload we like (the
    JSON stored as the format stores it, unless ``encode`` is False: then ``head`` is stored
    as given)."""
    if encode:
        head = stream.encode_header(head) if major >= 2 else head
    body = struct.pack("<4sBBI", stream.MAGIC, major, minor, len(head) if head_len is None else head_len)
    body += head + payload
    return body + struct.pack("<I", zlib.crc32(body))


def split(blob: bytes):
    header, sections = stream.unpack(blob)
    return json.loads(header.to_json()), [(n, bytes(v)) for n, v in sections.items()]


def forge(blob: bytes, mutate) -> bytes:
    """Apply `mutate(header_obj, sections)` and re-seal the stream with a valid checksum.
    `mutate` edits the header in place or returns (header_obj, payload); it raises LookupError
    when it does not apply to this stream."""
    obj, secs = split(blob)
    payload = b"".join(b for _, b in secs)
    result = mutate(obj, secs)
    if isinstance(result, tuple):
        obj, payload = result
    return build(json.dumps(obj).encode(), payload)


def test_forged_identity_stream_decodes():
    for blob, _ in STREAMS.values():
        forged = forge(blob, lambda o, s: None)
        np.testing.assert_array_equal(bits(errbound.decompress(forged)), bits(errbound.decompress(blob)))


# --------------------------------------------------------------------------- versions


def test_header_dictionary_is_fixed():
    """Every format-2 stream depends on these bytes: they can never change."""
    from errbound.header_dictionary import HEADER_DICTIONARY

    assert len(HEADER_DICTIONARY) == 6877
    assert hashlib.sha256(HEADER_DICTIONARY).hexdigest() == (
        "9f2db74e420c9ff28f67b2552b1c5a091099ab7cc94009d3e8afcd6e85992542"
    )


@pytest.mark.parametrize("name", NAMES)
def test_streams_are_written_in_format_2_with_small_headers(name):
    blob, _ = STREAMS[name]
    header, _ = stream.unpack(blob)
    stored = struct.unpack_from("<I", blob, 6)[0]
    assert blob[4] == 2 and header.format == (2, 0) and errbound.info(blob)["format_version"] == "2.0"
    assert stream.decode_header(blob[10 : 10 + stored], 2) == header.to_json()
    assert stored <= 40 + len(header.to_json()) // 4  # 200-700 bytes of JSON take 50-120


def test_format_1_streams_are_read_as_ever():
    """Format 1 (plain JSON headers, errbound 0.2 and the 0.3 development versions) is read
    by the same container code: the stored fixtures of those versions decode (test_stream_
    fixtures), and a format-1 container of today's header decodes to the same array."""
    blob, _ = STREAMS["sz"]
    obj, secs = split(blob)
    old = build(json.dumps(obj).encode(), b"".join(b for _, b in secs), major=1)
    assert errbound.info(old)["format_version"] == "1.0"
    np.testing.assert_array_equal(bits(errbound.decompress(old)), bits(errbound.decompress(blob)))
    _decode_raises(build(json.dumps(obj).encode(), b"".join(b for _, b in secs), major=0))


@pytest.mark.parametrize("name", NAMES)
def test_newer_format_major_is_unsupported(name):
    blob, _ = STREAMS[name]
    obj, secs = split(blob)
    payload = b"".join(b for _, b in secs)
    for major in (stream.FORMAT_MAJOR + 1, 255):
        with pytest.raises(UnsupportedStreamError, match="newer"):
            errbound.decompress(build(json.dumps(obj).encode(), payload, major=major))
        unsealed = bytearray(blob)
        unsealed[4] = major  # checksum left stale: the version is still reported first
        with pytest.raises(UnsupportedStreamError, match="newer"):
            errbound.decompress(bytes(unsealed))


@pytest.mark.parametrize("name", NAMES)
def test_newer_format_minor_still_decodes(name):
    blob, _ = STREAMS[name]
    obj, secs = split(blob)
    forged = build(json.dumps(obj).encode(), b"".join(b for _, b in secs), minor=stream.FORMAT_MINOR + 1)
    np.testing.assert_array_equal(bits(errbound.decompress(forged)), bits(errbound.decompress(blob)))


@pytest.mark.parametrize("name", NAMES)
def test_newer_codec_version_is_unsupported(name):
    blob, _ = STREAMS[name]
    # one past the newest version this errbound writes (sz v1 streams are read by sz v2)
    newest = get_codec(split(blob)[0]["codec"]).version
    with pytest.raises(UnsupportedStreamError, match=f"v{newest + 1}; this errbound has v{newest}"):
        errbound.decompress(forge(blob, lambda o, s: o.update(codec_version=newest + 1)))


@pytest.mark.parametrize("name", NAMES)
def test_newer_stage_version_is_unsupported(name):
    blob, _ = STREAMS[name]
    obj, _ = split(blob)
    assert obj["stages"]
    accepted = []
    for i, stage in enumerate(obj["stages"]):
        # one past what this errbound reads (a stage may write an older version's record,
        # as lowrank does for a float64 residual)
        newest = stages()[stage["name"]].version

        def bump(o, s, i=i, newest=newest):
            o["stages"][i]["version"] = newest + 1

        try:
            errbound.decompress(forge(blob, bump))
        except UnsupportedStreamError as exc:
            assert stage["name"] in str(exc)
        else:
            accepted.append(stage["name"])
    assert not accepted, f"stages {accepted} decoded although their version is newer than this errbound reads"


# --------------------------------------------------------------------------- forged headers


def _set(key, value):
    def fn(obj, secs):
        obj[key] = value

    return fn


def _shape(f):
    def fn(obj, secs):
        obj["shape"] = f(list(obj["shape"]))

    return fn


def _sections(f):
    def fn(obj, secs):
        obj["sections"] = f([list(s) for s in obj["sections"]])

    return fn


def _need(cond):
    if not cond:
        raise LookupError


def _shift(d):
    def f(s):
        _need(len(s) > 1)
        s[0][1] += d
        s[1][1] -= d
        return s

    return f


def _negative_first(s):
    _need(len(s) > 1 and s[0][1] > 0)
    n = s[0][1]
    s[0][1] = -n
    s[1][1] += 2 * n
    return s


def _rename(i, new):
    def f(s):
        _need(len(s) > i)
        s[i][0] = new
        return s

    return f


def _payload(f):
    """Replace the section bytes; the header's lengths follow."""

    def fn(obj, secs):
        new = f(secs)
        obj["sections"] = [[n, len(b)] for n, b in new]
        return obj, b"".join(b for _, b in new)

    return fn


def _truncate(i, by):
    def f(secs):
        _need(len(secs) > i and len(secs[i][1]) > by and secs[i][0] != "zfp")  # see the note below
        secs = list(secs)
        secs[i] = (secs[i][0], secs[i][1][:-by])
        return secs

    return f


def _stage_param(stage, key, value):
    def fn(obj, secs):
        hits = [s for s in obj["stages"] if s.get("name") == stage]
        _need(hits)
        for s in hits:
            s["params"][key] = value

    return fn


def _stage_field(index, key, value):
    def fn(obj, secs):
        _need(len(obj["stages"]) > index)
        obj["stages"][index][key] = value

    return fn


def _drop_stage(index):
    def fn(obj, secs):
        _need(len(obj["stages"]) > index)
        del obj["stages"][index]

    return fn


def _drop_named_stage(name):
    def fn(obj, secs):
        _need(any(t["name"] == name for t in obj["stages"]))
        obj["stages"] = [t for t in obj["stages"] if t["name"] != name]

    return fn


def _frozen_in_version_1(predictor):
    def fn(obj, secs):
        hits = [s for s in obj["stages"] if s.get("name") == predictor]
        _need(hits)
        for s in hits:
            s["version"] = 1
            s["params"]["frozen"] = s["params"].get("frozen") or [0]

    return fn


MAX_STAGES = max(len(errbound.info(blob)["stages"]) for blob, _ in STREAMS.values())
INF = float("inf")
NAN = float("nan")

# Each forgery must raise CorruptStreamError ("raise"), or raise it or decode to exactly the
# numbers of the untouched stream ("raise-or-same"). Shape forgeries that keep the element count
# are judged as "raise-or-same" on the values, the others as "raise".
FORGERIES = {
    # shape: element count changed, or impossible
    "shape-last+1": ("shape", _shape(lambda s: s[:-1] + [s[-1] + 1] if s else [2])),
    "shape-last-1": ("shape", _shape(lambda s: s[:-1] + [s[-1] - 1] if s and s[-1] > 0 else [0])),
    "shape-first*2": ("shape", _shape(lambda s: [2 * s[0]] + s[1:] if s else [2])),
    "shape-extra-axis": ("shape", _shape(lambda s: s + [3])),
    "shape-drop-axis": ("shape", _shape(lambda s: s[1:] if s else [5])),
    "shape-flattened-plus-one": ("shape", _shape(lambda s: [int(np.prod(s)) + 1])),
    "shape-empty-axis": ("shape", _shape(lambda s: s[:-1] + [0] if s else [0])),
    "shape-negative": ("raise", _shape(lambda s: [-n - 1 for n in s] or [-1])),
    "shape-5-axes": ("raise", _shape(lambda s: [1, 1, 1, 1, 1])),
    "shape-huge": ("raise", _shape(lambda s: [2**40] * max(1, len(s)))),
    "shape-huge-2d": ("raise", _shape(lambda s: [2**62, 2**62])),
    "shape-huge-but-empty": ("raise", _shape(lambda s: [2**62, 2**62, 0])),
    "shape-beyond-int64": ("raise", _shape(lambda s: [2**70])),
    "shape-infinite": ("raise", _shape(lambda s: [INF])),
    "shape-str": ("raise", _set("shape", "abc")),
    "shape-int": ("raise", _set("shape", 5)),
    "shape-null": ("raise", _set("shape", None)),
    "shape-nested": ("raise", _set("shape", [[3]])),
    "shape-str-items": ("raise", _set("shape", ["x"])),
    # dtype, order
    "dtype-int32": ("raise", _set("dtype", "<i4")),
    "dtype-float16": ("raise", _set("dtype", "<f2")),
    "dtype-complex": ("raise", _set("dtype", "<c8")),
    "dtype-object": ("raise", _set("dtype", "O")),
    "dtype-struct": ("raise", _set("dtype", "f4,f4")),
    "dtype-subarray": ("raise", _set("dtype", "(2,)f4")),
    "dtype-garbage": ("raise", _set("dtype", "garbage")),
    "dtype-empty": ("raise", _set("dtype", "")),
    "dtype-null": ("raise", _set("dtype", None)),
    "order-X": ("raise", _set("order", "X")),
    "order-empty": ("raise", _set("order", "")),
    "order-int": ("raise", _set("order", 1)),
    # codec
    "codec-unknown": ("raise", _set("codec", "no-such-codec")),
    "codec-empty": ("raise", _set("codec", "")),
    "codec-null": ("raise", _set("codec", None)),
    "codec-list": ("raise", _set("codec", ["sz"])),
    "codec_version-str": ("raise", _set("codec_version", "x")),
    "codec_version-inf": ("raise", _set("codec_version", INF)),
    "codec_version-null": ("raise", _set("codec_version", None)),
    # absolute bound (not used by the lossless raw codec)
    "abs_bound-null": ("lossy", _set("abs_bound", None)),
    "abs_bound-zero": ("lossy", _set("abs_bound", 0)),
    "abs_bound-negative": ("lossy", _set("abs_bound", -1e-3)),
    "abs_bound-nan": ("lossy", _set("abs_bound", NAN)),
    "abs_bound-inf": ("lossy", _set("abs_bound", INF)),
    "abs_bound-str": ("raise", _set("abs_bound", "x")),
    "abs_bound-list": ("raise", _set("abs_bound", [1e-3])),
    # stage list
    "stages-empty": ("raise", _set("stages", [])),
    "stages-null": ("raise", _set("stages", None)),
    "stages-str": ("raise", _set("stages", "abc")),
    "stages-int": ("raise", _set("stages", 7)),
    "stages-ints": ("raise", _set("stages", [1, 2, 3])),
    "stages-dict": ("raise", _set("stages", {"name": "zstd"})),
    # section table
    "sections-null": ("raise", _set("sections", None)),
    "sections-str": ("raise", _set("sections", "ab")),
    "sections-empty": ("raise", _set("sections", [])),
    "sections-ints": ("raise", _set("sections", [1, 2])),
    "sections-triples": ("raise", _sections(lambda s: [x + [0] for x in s])),
    "sections-singles": ("raise", _sections(lambda s: [x[:1] for x in s])),
    "section-length-str": ("raise", _sections(lambda s: [[n, "x"] for n, _ in s])),
    "section-length-inf": ("raise", _sections(lambda s: [[n, INF] for n, _ in s])),
    "section-length-negative": ("raise", _sections(_negative_first)),
    "section-length-very-negative": ("raise", _sections(_shift(-(10**6)))),
    "section-length-too-long": ("raise", _sections(lambda s: [[s[0][0], s[0][1] + 1]] + s[1:])),
    "section-length-too-short": ("raise", _sections(lambda s: [[s[0][0], s[0][1] - 1]] + s[1:])),
    "section-boundary+1": ("raise", _sections(_shift(1))),
    "section-boundary-1": ("raise", _sections(_shift(-1))),
    "section-first-renamed": ("raise", _sections(_rename(0, "bogus"))),
    "section-duplicate-name": ("raise-or-same", _sections(lambda s: _rename(1, s[0][0])(s))),
    "section-extra-empty": ("raise-or-same", _sections(lambda s: s + [["future-section", 0]])),
    "section-patches-empty": ("raise-or-same", _payload(lambda secs: list(secs) + [("patches", b"")])),
    "payload-zeroed": ("raise-or-same", _payload(lambda secs: [(n, bytes(len(b))) for n, b in secs])),
    "payload-ff": ("raise-or-same", _payload(lambda secs: [(n, b"\xff" * len(b)) for n, b in secs])),
    "payload-stored-garbage": ("raise", _payload(lambda secs: [(n, b"\x00" + b"\x07" * 9) for n, _ in secs])),
    "payload-unknown-tag": ("raise", _payload(lambda secs: [(n, b"\x09" + b[1:]) for n, b in secs])),
    "first-section-truncated": ("raise", _payload(_truncate(0, 3))),
    "second-section-truncated": ("raise", _payload(_truncate(1, 1))),
    "last-section-truncated": ("raise", _payload(lambda secs: _truncate(len(secs) - 1, 2)(secs))),
    # header object
    "missing-codec": ("raise", lambda o, s: o.pop("codec")),
    "missing-codec_version": ("raise", lambda o, s: o.pop("codec_version")),
    "missing-dtype": ("raise", lambda o, s: o.pop("dtype")),
    "missing-shape": ("raise", lambda o, s: o.pop("shape")),
    "missing-order": ("raise", lambda o, s: o.pop("order")),
    "missing-abs_bound": ("raise", lambda o, s: o.pop("abs_bound")),
    "missing-stages": ("raise", lambda o, s: o.pop("stages")),
    "missing-sections": ("raise", lambda o, s: o.pop("sections")),
    "header-list": ("raise", lambda o, s: ([o], b"".join(b for _, b in s))),
    "header-null": ("raise", lambda o, s: (None, b"".join(b for _, b in s))),
    # stage records (indices past the stream's stage count do not apply)
    **{
        f"stage{i}-{what}": (tier, f(i, *args))
        for i in range(MAX_STAGES)
        for what, tier, f, args in (
            ("version-str", "raise", _stage_field, ("version", "2")),
            ("version-null", "raise", _stage_field, ("version", None)),
            ("params-null", "raise", _stage_field, ("params", None)),
            ("params-list", "raise", _stage_field, ("params", [1])),
            ("name-null", "raise-or-same", _stage_field, ("name", None)),
            ("renamed", "raise-or-same", _stage_field, ("name", "bogus")),
            ("dropped", "raise-or-same", _drop_stage, ()),
        )
    },
    "pw_rel-stage-dropped": ("raise", _drop_named_stage("pw_rel")),
    **{f"pw_rel-ratio={v!r}": ("raise-or-same", _stage_param("pw_rel", "ratio", v)) for v in (0, -1, 5, "x", None)},
    "zstd-level-str": ("raise", _stage_param("zstd", "level", "x")),
    "zstd-level-999": ("raise-or-same", _stage_param("zstd", "level", 999)),
    "zfp-tolerance-str": ("raise-or-same", _stage_param("zfp-accuracy", "tolerance", "x")),
    # the shape zfp coded (zfp v2): a count that differs, a malformed shape or too many sizes
    # is refused (no shape on a v2 stream: refused by zfp's header check, below)
    **{
        f"zfp-shape={v!r}": ("raise", _stage_param("zfp-accuracy", "shape", v))
        for v in ([7], [0, 5], [-1], [1, 2, 3, 4, 5], "x", [2.5], [True], [2**70])
    },
    "zfp-shape=None": ("raise-or-same", _stage_param("zfp-accuracy", "shape", None)),
    # sz stages: the kernels index with these, so nothing out of range may reach them
    **{
        f"{st}-{key}={v!r}": ("raise", _stage_param(st, key, v))
        for st, key, values in (
            ("interpolation", "radius", (0, -5, 1, 2**40, "x", None, NAN)),
            ("lorenzo", "radius", (0, -5, 1, 2**40, "x", None)),
            ("huffman", "alphabet", (0, -1, 2, 2**40, "x", None)),
            ("interpolation", "alpha", (0, -1, NAN, INF, "x", None)),
            ("interpolation", "beta", (0, -2, NAN, "x")),
            (
                "interpolation",
                "order",
                ([0, 0], [3, 3], [3, 3, 3], [7], [-1], [0, 1, 2, 3, 4], "abc", [[1]], None, [2**63]),
            ),
            ("interpolation", "anchor", (-1, 3, 5, 1, 2**40, 2**70, "x", 1.5, None)),
            ("interpolation", "cubic", ("x", None, [1], 1)),
            *(
                (predictor, "frozen", ([7], [-1], [1, 1], [2.5], [True], "x", [[1]], [2**70], 3))
                for predictor in ("interpolation", "lorenzo")
            ),
        )
        for v in values
    },
    # no frozen axes: as a version-1 record has; refused where the record is version 2
    **{
        f"{predictor}-frozen={v!r}": ("raise-or-same", _stage_param(predictor, "frozen", v))
        for predictor in ("interpolation", "lorenzo")
        for v in (None, [])
    },
    # frozen axes in a version-1 record (which an older errbound would ignore)
    **{
        f"{predictor}-v1-frozen": ("raise", _frozen_in_version_1(predictor))
        for predictor in ("interpolation", "lorenzo")
    },
}
# Not forged here: a truncated zfp payload with a re-sealed checksum. zfpy decodes it without
# complaint by reading past the end of its buffer (reported; needs a design decision).


def _judge(tier, original, forged_blob, reference):
    try:
        out = errbound.decompress(forged_blob)
    except CorruptStreamError:
        return
    # any other exception propagates and fails the test
    if tier == "raise":
        pytest.fail(f"forged stream decoded to {out.shape} {out.dtype} instead of raising CorruptStreamError")
    same = out.dtype == reference.dtype and out.size == reference.size and np.array_equal(bits(out), bits(reference))
    if tier == "raise-or-same" or tier == "values":
        assert same, "forged stream decoded to different numbers instead of raising CorruptStreamError"
    else:  # pragma: no cover
        raise AssertionError(tier)


@pytest.mark.parametrize("forgery", list(FORGERIES))
def test_forged_header(forgery):
    tier, mutate = FORGERIES[forgery]
    applied = 0
    for name, (blob, data) in STREAMS.items():
        try:
            forged = forge(blob, mutate)
        except LookupError:
            continue
        applied += 1
        reference = errbound.decompress(blob)
        this = tier
        if tier == "shape":
            new_shape = stream.read_header(forged).shape
            this = "values" if np.prod(new_shape) == data.size else "raise"
        elif tier == "lossy":
            this = "raise-or-same" if errbound.info(blob)["codec"] == "raw" else "raise"
        try:
            _judge(this, data, forged, reference)
        except BaseException as exc:
            raise AssertionError(f"stream {name!r}, forgery {forgery!r}: {exc!r}") from exc
    assert applied, f"forgery {forgery} applies to none of the sample streams"


def test_forged_lorenzo_slices_are_refused_not_decoded_slowly():
    # every slice of a frozen axis is a kernel call from Python: a forged record freezing
    # every axis of a large array decoded at 0.7 us a value (found by review)
    x = np.cumsum(np.random.default_rng(5).standard_normal((5000, 2, 2)), axis=0).astype(np.float32)
    blob = errbound.compress(x, "sz", abs=1e-2, predictor="lorenzo")

    def freeze(axes):
        def fn(obj, secs):
            for s in obj["stages"]:
                if s["name"] == "lorenzo":
                    s["version"], s["params"]["frozen"] = 2, axes

        return fn

    for axes in ([1], [1, 2], [1, 2, 3], [0, 1, 2, 3]):
        with pytest.raises(CorruptStreamError, match="too many slices"):
            errbound.decompress(forge(blob, freeze(axes)))
    errbound.decompress(forge(blob, freeze([2])))  # 2 slices: decodes (to other numbers)


def test_forged_level_factors():
    """The interpolation's level bounds eb / min(alpha**level, beta) from forged factors: a
    bound they push to a zero step is refused by name, and a power that overflows a float
    (alpha 1e6 over a declared 2**54 values without anchors: 54 levels) is refused as an
    errbound error, not Python's OverflowError (found by review)."""
    blob = errbound.compress(np.sin(np.linspace(0, 50, 20000)).astype(np.float32), "sz", abs=1e-3)
    assert stream.read_header(blob).stages[0]["name"] == "interpolation"

    def both(*mutations):
        def fn(obj, secs):
            for mutate in mutations:
                mutate(obj, secs)

        return fn

    zero_step = forge(blob, both(_stage_param("interpolation", "beta", 1e6), _set("abs_bound", 5e-324)))
    with pytest.raises(CorruptStreamError, match="no usable quantization step"):
        errbound.decompress(zero_step)
    overflow = forge(
        blob,
        both(
            _stage_param("interpolation", "alpha", 1e6),
            _stage_param("interpolation", "anchor", 0),
            _set("shape", [1 << 54]),
        ),
    )
    with pytest.raises(errbound.ErrboundError):
        errbound.decompress(overflow)
    assert list(level_bounds(1.0, 60, 1e6, 2.0)[1:3]) == [1.0, 0.5]
    assert np.array_equal(level_bounds(0.1, 60, 1e6, 2.0)[-3:], [0.05] * 3)


@pytest.mark.parametrize("name", NAMES)
def test_every_other_codec_name(name):
    """A stream relabelled with another registered codec is refused by that codec."""
    blob, _ = STREAMS[name]
    own = errbound.info(blob)["codec"]
    for other in errbound.codecs():
        if other != own:
            _decode_raises(forge(blob, _set("codec", other)))


@pytest.mark.parametrize(
    "head",
    [b"", b"not json", b"\xff\xfe\x00", b"[" * 100000, b"null", b"123", b'"x"', b"{}", b'{"codec": "sz"}'],
    ids=["empty", "text", "bad-utf8", "deep-nesting", "null", "number", "string", "{}", "partial"],
)
def test_header_that_is_not_a_header(head):
    _decode_raises(build(head, b""))
    _decode_raises(build(head, STREAMS["sz"][0][-100:-4]))
    _decode_raises(build(head, b"", major=1))  # format 1: the JSON as it is
    _decode_raises(build(head, b"", encode=False))  # format 2: not a zstd frame


def test_header_frames_that_are_not_ours():
    """Format 2 headers are zstd frames (magic bytes dropped), exactly as errbound writes
    them: frames without a content size or with an implausible one, with a checksum, not
    single-segment, or with bytes after them are refused; truncated or zeroed ones fail to
    decode. The same good frame is accepted."""
    head = json.dumps(split(STREAMS["sz"][0])[0]).encode()
    plain = zstandard.ZstdCompressor(write_content_size=False).compress(head)[4:]
    bomb = zstandard.ZstdCompressor().compress(b" " * (stream.MAX_HEADER_BYTES + 1))[4:]
    good = stream.encode_header(head)
    checksummed = zstandard.ZstdCompressor(write_checksum=True).compress(head)[4:]
    trailing = (good + b"\0", good + b"\x28\xb5\x2f\xfd" + good)  # nothing after the one frame
    for stored in (plain, bomb, checksummed, good[:-3], good[:5], bytes(len(good)), *trailing):
        _decode_raises(build(stored, b"", encode=False))
    streamed = zstandard.ZstdCompressor().compressobj()  # a frame that is not single-segment
    not_single = (streamed.compress(head) + streamed.flush())[4:]
    assert not_single[0] & 0x20 == 0
    _decode_raises(build(not_single, b"", encode=False))
    assert errbound.info(build(good, b"".join(b for _, b in split(STREAMS["sz"][0])[1]), encode=False))


@pytest.mark.parametrize("name", ["sz", "pw_rel", "raw-fallback"])
def test_header_length_field_forged(name):
    blob, _ = STREAMS[name]
    obj, secs = split(blob)
    head = stream.encode_header(json.dumps(obj).encode())
    payload = b"".join(b for _, b in secs)
    for head_len in (
        0,
        1,
        len(head) - 1,
        len(head) + 1,
        len(head) + len(payload),
        len(head) + len(payload) + 1,
        2**31,
        2**32 - 1,
    ):
        _decode_raises(build(head, payload, head_len=head_len, encode=False))


# --------------------------------------------------------------------------- forged sections


def _replace_section(blob: bytes, name: str, data: bytes) -> bytes:
    def fn(obj, secs):
        if name not in dict(secs):
            raise LookupError(name)
        new = [(n, data if n == name else b) for n, b in secs]
        obj["sections"] = [[n, len(b)] for n, b in new]
        return obj, b"".join(b for _, b in new)

    return forge(blob, fn)


def test_zstd_frame_without_a_content_size_is_rejected_before_allocating():
    x = np.linspace(0, 1, 4096, dtype=np.float32)
    blob = errbound.compress(x, codec="sz", abs=1e-3)
    frame = zstandard.ZstdCompressor(write_content_size=False).compress(b"\0" * 100)
    with pytest.raises(CorruptStreamError, match="size"):
        errbound.decompress(_replace_section(blob, "codes", b"\x01" + frame))


def test_patch_indices_that_wrap_around_are_rejected():
    x = np.linspace(0, 1, 4096, dtype=np.float32)
    x[10] = np.nan
    blob = errbound.compress(x, codec="zfp", abs=1e-3)
    body = struct.pack("<QB", 2, 8) + np.array([2**64 - 1, 1], np.uint64).tobytes() + np.zeros(2, np.float32).tobytes()
    with pytest.raises(CorruptStreamError, match="outside"):
        errbound.decompress(_replace_section(blob, "patches", b"\x00" + body))


def test_container_sections_of_any_buffer_are_their_bytes():
    # a section may be any buffer: its length in the header is its byte count (a 2-D array's
    # len() is its row count), a strided one is written in C order
    header = stream.Header(codec="raw", codec_version=1, dtype="<f4", shape=(2,), order="C", bound=None, abs_bound=None)
    sections = {
        "bytes": b"abc",
        "bytearray": bytearray(b"de"),
        "strided": np.arange(6, dtype=np.uint8).reshape(2, 3)[:, ::2],
        "2-D": np.arange(4, dtype=np.uint16).reshape(2, 2),
        "view": memoryview(b"xyz")[1:],
    }
    _, back = stream.unpack(stream.pack(header, list(sections.items())))
    assert {name: bytes(body) for name, body in back.items()} == {
        name: np.ascontiguousarray(body).tobytes() if isinstance(body, np.ndarray) else bytes(body)
        for name, body in sections.items()
    }
