"""Forged streams (valid CRC, hostile contents) and memory bombs: each case of the hardening
campaign (issue 18, items 2, 3 and 6) as a regression test.

Decodes that could crash the interpreter run in a worker process under a memory cap
(``tools/fuzz/streams.run``): a crash, a hang, an allocation above the cap or an exception
that is not an errbound error fails the test instead of killing the suite.
"""

from __future__ import annotations

import json
import struct
import sys
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

import errbound
from errbound.errors import CorruptStreamError, OutputLimitError, UnsupportedInputError

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools" / "fuzz"))
import streams as fuzz  # noqa: E402


def smooth(shape, dtype=np.float32):
    grids = np.meshgrid(*[np.linspace(0, 3, n) for n in shape], indexing="ij")
    return sum(np.sin((k + 1) * g) for k, g in enumerate(grids)).astype(dtype)


def with_section(blob: bytes, name: str, data: bytes) -> bytes:
    parts = fuzz.split(blob)
    parts.sections = [[n, data if n == name else d] for n, d in parts.sections]
    return fuzz.join(parts)


def section_of(blob: bytes, name: str) -> bytes:
    return dict(map(tuple, fuzz.split(blob).sections))[name]


def with_header(blob: bytes, **changes) -> bytes:
    parts = fuzz.split(blob)
    parts.header.update(changes)
    return fuzz.join(parts)


def assert_all_rejected(cases: list[bytes], cap: int = 256 << 20) -> None:
    report = fuzz.run([("forged", "hand", blob) for blob in cases], cap=cap, hang_seconds=20)
    assert report.counts.get("errbound", 0) == len(cases), fuzz.summary(report) + "\n" + fuzz.describe(report.findings)


# --------------------------------------------------------------------------- zfp (item 2)


def zfp_meta_bits(section: bytes, nx: int) -> bytes:
    """The section with zfp's 1-D size field (48 bits after the type and dims) set to nx."""
    head = int.from_bytes(section[:16], "little")
    meta_start = 32 + 4
    mask = ((1 << 48) - 1) << meta_start
    head = (head & ~mask) | ((nx - 1) << meta_start)
    return head.to_bytes(16, "little") + section[16:]


def test_zfp_header_claiming_2_27_values_is_refused():
    blob = errbound.compress(smooth((300,)), "zfp", abs=1e-3)
    forged = with_section(blob, "zfp", zfp_meta_bits(section_of(blob, "zfp"), 1 << 27))
    assert len(forged) < 2000
    assert_all_rejected([forged])
    with pytest.raises(CorruptStreamError, match="zfp header describes"):
        errbound.decompress(forged)


def test_zfp_section_with_bytes_deleted_near_its_start_is_refused_or_decoded_safely():
    blob = errbound.compress(smooth((20, 24), np.float64), "zfp", abs=1e-3)
    section = section_of(blob, "zfp")
    cases = [with_section(blob, "zfp", section[:i] + section[i + 1 :]) for i in range(48)]
    report = fuzz.run([("zfp", "delete", c) for c in cases], cap=256 << 20)
    assert set(report.counts) <= {"errbound", "decoded"}, fuzz.describe(report.findings)


def test_zfp_modes_errbound_never_writes_are_refused():
    blob = errbound.compress(smooth((300,)), "zfp", abs=1e-3)
    section = bytearray(section_of(blob, "zfp"))
    head = int.from_bytes(section[:16], "little")
    for mode in (0, 2047, 2100, 2176):  # fixed rate, fixed precision, reversible
        forged = (head & ~(0xFFF << 84)) | (mode << 84)
        with pytest.raises(CorruptStreamError, match="mode errbound never writes"):
            errbound.decompress(with_section(blob, "zfp", forged.to_bytes(16, "little") + bytes(section[16:])))


def test_hlr_factor_section_goes_through_the_same_checks():
    x = np.sort(np.random.default_rng(7).uniform(0, 20, 128))
    blob = errbound.compress(np.exp(-np.abs(x[:, None] - x[None, :])), "hlr", abs=1e-6, leaf=8)
    assert "lowrank-factors" in errbound.info(blob)["sections"]
    factors = section_of(blob, "lowrank-factors")  # CRC-32 of its own, then zfp's stream
    body = factors[4:]

    def resealed(b: bytes) -> bytes:
        return with_section(blob, "lowrank-factors", struct.pack("<I", zlib.crc32(b)) + b)

    cases = [resealed(zfp_meta_bits(body, 1 << 27)), resealed(body[:20]), resealed(body[:8] + body[9:])]
    cases += [resealed(body[:i] + body[i + 1 :]) for i in range(0, 40, 3)]
    report = fuzz.run([("hlr", "factors", c) for c in cases], cap=256 << 20)
    assert set(report.counts) <= {"errbound", "decoded"}, fuzz.describe(report.findings)
    assert report.counts["errbound"] >= 3


# --------------------------------------------------------------------------- memory (item 3)


def test_fz_code_stream_declaring_more_codes_than_the_container_is_refused_before_allocating():
    blob = errbound.compress(smooth((64,)), "fz", abs=1e-3)
    codes = bytearray(section_of(blob, "codes"))
    head = struct.Struct("<4sBBBBB3xQQQQQ")
    magic, itemsize, ndim, width, dense, flags, *lengths, count = head.unpack_from(codes, 0)
    big = 1 << 27
    forged = head.pack(magic, itemsize, ndim, width, dense, flags, *lengths, big) + struct.pack("<Q", big)
    forged_blob = with_section(blob, "codes", forged + bytes(codes[head.size + 8 :]))
    assert_all_rejected([forged_blob], cap=128 << 20)
    tracemalloc.start()
    with pytest.raises(CorruptStreamError, match="codes where 64 were expected"):
        errbound.decompress(forged_blob)
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()


# --------------------------------------------------------------------------- sperr's tables

_SPERR_HEAD = struct.Struct("<4sB3xddII4I")  # errbound.codecs.sperr.codec._HEAD


def _sperr_meta(blob: bytes, **changes) -> bytearray:
    meta = bytearray(section_of(blob, "sperr"))
    names = ("magic", "version", "eb", "step", "count", "crc", "e0", "e1", "e2", "e3")
    fields = dict(zip(names, _SPERR_HEAD.unpack_from(meta, 0), strict=True))
    fields.update(changes)
    meta[: _SPERR_HEAD.size] = _SPERR_HEAD.pack(*fields.values())
    return meta


def test_sperr_chunk_count_is_checked_against_the_table_before_any_chunk_is_listed():
    """A 300-byte stream declaring 16M chunks of one value (the grid of a 4096^2 shape): the
    chunk list was built (1.5 GB, 7 s) before the table's length was compared with it."""
    blob = errbound.compress(smooth((16, 16)), "sperr", abs=1e-3)
    n = 4096
    meta = _sperr_meta(blob, count=n * n, e0=1, e1=1, e2=1, e3=1)
    forged = with_header(with_section(blob, "sperr", bytes(meta)), shape=[n, n])
    tracemalloc.start()
    with pytest.raises(CorruptStreamError, match="sperr table has the wrong length"):
        errbound.decompress(forged, max_bytes=64 << 20)
    assert tracemalloc.get_traced_memory()[1] < 8 << 20
    tracemalloc.stop()


def test_sperr_sections_inflate_only_to_what_their_tables_say():
    """A 4 KB zstd frame of 128 MiB of zeros as the SPECK section of a declared 2048^2 array
    (one chunk), the checksum made to match: it inflated to the most a section may hold
    (16x the declared output) before anything else was checked. The tables are checked
    against the chunks before anything is inflated (this table lists one SPECK stream where
    a 2048^2 chunk has several), and a damaged section fails its checksum before that."""
    import zstandard

    blob = errbound.compress(smooth((16, 16)), "sperr", abs=1e-3)
    n = 2048
    bomb = b"\x01" + zstandard.ZstdCompressor(level=19, write_content_size=True).compress(bytes(128 << 20))
    sections = dict(map(tuple, fuzz.split(blob).sections))
    crc = zlib.crc32(bomb)
    for key in ("outliers", "exact"):
        crc = zlib.crc32(sections.get(key, b""), crc)
    for checksum, message in ((crc, "sperr stream table is too short"), (0, "do not match their checksum")):
        meta = _sperr_meta(blob, count=1, e0=1, e1=1, e2=n, e3=n, crc=checksum)
        forged = with_header(with_section(with_section(blob, "sperr", bytes(meta)), "speck", bomb), shape=[n, n])
        tracemalloc.start()
        with pytest.raises(CorruptStreamError, match=message):
            errbound.decompress(forged, max_bytes=n * n * 4)
        assert tracemalloc.get_traced_memory()[1] < 8 << 20
        tracemalloc.stop()


def test_max_bytes_refuses_a_declared_size_before_decoding():
    blob = errbound.compress(np.full((512, 1024), 2.5, np.float32), "sz", abs=1e-3)  # 2 MiB -> a few hundred bytes
    assert len(blob) < 1000
    with pytest.raises(OutputLimitError, match=r"\(512, 1024\) float32 array of 2097152 bytes, above max_bytes=1000"):
        errbound.decompress(blob, max_bytes=1000)
    assert errbound.decompress(blob, max_bytes=2097152).shape == (512, 1024)
    huge = with_header(blob, shape=[1 << 20, 1 << 20])  # a forged 4 TiB declaration
    tracemalloc.start()
    with pytest.raises(OutputLimitError, match="above max_bytes"):
        errbound.decompress(huge, max_bytes=64 << 20)
    assert tracemalloc.get_traced_memory()[1] < 1 << 20
    tracemalloc.stop()
    for bad in (-1, 1.5, "10", True):
        with pytest.raises(UnsupportedInputError, match="max_bytes"):
            errbound.decompress(blob, max_bytes=bad)


def test_out_is_checked_before_decoding_and_caps_the_size():
    blob = errbound.compress(smooth((30, 40)), "sz", abs=1e-3)
    for out in (np.empty((40, 30), np.float32), np.empty((30, 40), np.float64), np.empty(1200, np.float32)):
        with pytest.raises(UnsupportedInputError, match="out= must be"):
            errbound.decompress(blob, out=out)
    readonly = np.empty((30, 40), np.float32)
    readonly.flags.writeable = False
    with pytest.raises(UnsupportedInputError, match="read-only"):
        errbound.decompress(blob, out=readonly)


def test_a_declaration_beyond_memory_is_an_errbound_error(tmp_path):
    """Without max_bytes, a stream whose array does not fit in memory raises OutputLimitError
    naming the declared size, not numpy's MemoryError."""
    blob = errbound.compress(np.full((64, 64), 1.0, np.float64), "raw", abs=1.0)
    forged = with_header(blob, shape=[1 << 26, 1 << 14])  # 8 TiB
    with pytest.raises((OutputLimitError, CorruptStreamError)) as info:
        errbound.decompress(forged)
    if isinstance(info.value, OutputLimitError):
        assert "bytes" in str(info.value)


def test_hdf5_chunks_decode_only_what_the_dataset_expects():
    from errbound.integrations.hdf5.chunks import decode_chunk

    blob = errbound.compress(np.full((1024, 1024), 3.0, np.float32), "sz", abs=1e-3)
    with pytest.raises(OutputLimitError):
        decode_chunk(blob, np.dtype(np.float32), 100)


# --------------------------------------------------------------------------- foreign exceptions (item 6)


@pytest.mark.parametrize("dtype", [",f4", "(2,)f4", "f4,f4", "<f2", "O", "V8", "S4"])
def test_header_dtypes_errbound_never_writes_are_corrupt_streams(dtype):
    blob = with_header(errbound.compress(smooth((10,)), "sz", abs=1e-3), dtype=dtype)
    with pytest.raises(CorruptStreamError):
        errbound.decompress(blob)
    with pytest.raises(CorruptStreamError):
        errbound.info(blob)


def test_header_json_nested_deeply_is_a_corrupt_stream():
    blob = errbound.compress(smooth((10,)), "sz", abs=1e-3)
    parts = fuzz.split(blob)
    deep = json.dumps(parts.header)[:-1] + ',"x":' + "[" * 100000 + "]" * 100000 + "}"
    with pytest.raises(CorruptStreamError):
        errbound.decompress(fuzz.join(parts, lengths_follow=False, header_json=deep.encode()))


def test_numcodecs_decode_refuses_a_chunk_larger_than_its_output_or_the_default_cap():
    pytest.importorskip("numcodecs")
    from errbound.integrations.numcodecs import ErrboundSZ

    codec = ErrboundSZ(abs=1e-3)
    blob = codec.encode(np.full((256, 256), 1.5, np.float32))
    with pytest.raises(OutputLimitError):
        codec.decode(blob, out=np.empty(100, np.float32))
    huge = with_header(blob, shape=[1 << 20, 1 << 20])
    with pytest.raises(OutputLimitError, match="above max_bytes=2147483648"):
        codec.decode(huge)
    np.testing.assert_array_equal(codec.decode(blob).reshape(256, 256), np.full((256, 256), 1.5, np.float32))


# --------------------------------------------------------------------------- a review of the container (session 24)


def _with_stages(blob: bytes, edit) -> bytes:
    parts = fuzz.split(blob)
    parts.header["stages"] = edit([dict(s) for s in parts.header["stages"]])
    return fuzz.join(parts)


@pytest.mark.parametrize(
    "change, words",
    [
        ({"shape": ["20", "24", "16"]}, "shape size '20' is not an integer"),
        ({"shape": [20.9, 24.5, 16.2]}, "shape size 20.9 is not an integer"),
        ({"codec_version": "1"}, "codec version '1' is not an integer"),
        ({"codec_version": True}, "codec version True is not an integer"),
        ({"codec_version": -7}, "codec version -7 is below 1"),
        ({"abs_bound": "0.001"}, "abs_bound '0.001' is not a number"),
        ({"abs_bound": True}, "abs_bound True is not a number"),
        ({"dtype": 4}, "dtype 4 is not a string"),
        ({"bound": "abc"}, "malformed bound"),
    ],
)
def test_header_fields_of_the_wrong_type_are_refused_not_coerced(change, words):
    """int(), float() and str() took a shape of ["20", 24.5] and a bound of true (1.0), and
    the stream decoded as if they were what errbound writes."""
    blob = errbound.compress(smooth((20, 24, 16)), "sz", abs=1e-3)
    with pytest.raises(CorruptStreamError, match=words):
        errbound.decompress(with_header(blob, **change))


def test_section_lengths_of_the_wrong_type_and_repeated_names_are_refused():
    blob = errbound.compress(smooth((20, 24, 16)), "zfp", abs=1e-3)
    for retype in (float, str):
        parts = fuzz.split(blob)
        (name, length), *rest = parts.header["sections"]
        parts.header["sections"] = [[name, retype(length)], *rest]
        with pytest.raises(CorruptStreamError, match=f"section '{name}' length .* is not an integer"):
            errbound.decompress(fuzz.join(parts, lengths_follow=False))
    # a second copy of a section under its name: the decoder read the last (1e6 off)
    parts = fuzz.split(blob)
    name, body = parts.sections[-1]
    parts.sections.append([name, body])
    with pytest.raises(CorruptStreamError, match="is repeated"):
        errbound.decompress(fuzz.join(parts))


def test_stage_records_named_twice_of_two_predictors_or_below_version_1_are_refused():
    """Decoders load the first record of a name and ``which`` took the first predictor: an
    extra one put first decoded other numbers (633 off on an sz stream); a version of -1
    made hlr's tensor view look absent (2.1 off)."""
    blob = errbound.compress(smooth((20, 24, 16)), "sz", abs=1e-3, predictor="interpolation")
    predictor = errbound.info(blob)["stages"][0]
    assert predictor["name"] == "interpolation"
    twice = _with_stages(blob, lambda st: [{**st[0], "params": {**st[0]["params"], "alpha": 2.0}}] + st)
    with pytest.raises(CorruptStreamError, match="names stage 'interpolation' twice"):
        errbound.decompress(twice)
    lorenzo = {"name": "lorenzo", "version": 1, "params": {"radius": 32768}}
    with pytest.raises(CorruptStreamError, match="more than one of the stages"):
        errbound.decompress(_with_stages(blob, lambda st: [lorenzo] + st))
    for version in (0, -1):
        with pytest.raises(CorruptStreamError, match="malformed stage record"):
            errbound.decompress(_with_stages(blob, lambda st, v=version: [{**st[0], "version": v}] + st[1:]))


def test_an_fz_code_stream_of_other_axes_is_refused():
    """The integer Lorenzo decoder ran along the code stream's own axes: the same count under
    reversed axes decoded 1.8e5 bounds away from the data."""
    blob = errbound.compress(smooth((20, 24, 16)), "fz", abs=1e-3)
    codes = bytearray(section_of(blob, "codes"))
    head = struct.Struct("<4sBBBBB3xQQQQQ")  # errbound.quantized's code stream head
    shape = struct.unpack_from("<3Q", codes, head.size)
    struct.pack_into("<3Q", codes, head.size, *shape[::-1])
    with pytest.raises(CorruptStreamError, match="fz code stream does not match the stream header"):
        errbound.decompress(with_section(blob, "codes", bytes(codes)))


def test_sperr_tables_claiming_more_than_a_chunk_holds_are_refused_before_inflating():
    """A 34 KB stream of one 2^20-value chunk whose table claims 33 bytes of outliers for each
    value (for one correction) and SPECK streams of 32 bytes per value: both sections were
    inflated (18x the declared output) before anything was compared with them."""
    from errbound.codecs.sperr.codec import _CHUNK, _CODED, _HEAD, _MAGIC, _STREAM
    from errbound.stages.coders import speck
    from errbound.stages.coders.zstd import ZstdLossless
    from errbound.stages.decompositions import wavelet

    n = 1 << 20
    real = errbound.compress(smooth((20, 24, 16)), "sperr", abs=1e-3)
    dims = np.array([1, 1, 1, n], np.int64)
    roots = speck.stream_roots(dims, wavelet.CDF97().levels(dims), wavelet.axis_groups(dims, 0))
    speck_bytes, outlier_bytes = n * (4 * speck.MAX_PLANES + 8) // 8, n * 33
    lossless = ZstdLossless(level=1)
    for claim in ("outliers", "speck"):
        chunk = np.zeros(1, _CHUNK)
        chunk["kind"], chunk["q"], chunk["nc"] = _CODED, 1.0, 1
        chunk["obytes"] = outlier_bytes if claim == "outliers" else 5
        streams = np.zeros(len(roots), _STREAM)
        streams["top"] = 3
        streams["nbytes"] = speck_bytes // len(roots) if claim == "speck" else 8
        sections = {
            "speck": lossless.compress(bytes(int(streams["nbytes"].sum()))),
            "outliers": lossless.compress(bytes(int(chunk["obytes"][0]))),
        }
        crc = zlib.crc32(sections["outliers"], zlib.crc32(sections["speck"]))
        eb = errbound.info(real)["abs_bound"]
        meta = _HEAD.pack(_MAGIC, 1, eb, 1.9 * eb, 1, crc, 1, 1, 1, n) + chunk.tobytes() + streams.tobytes()
        parts = fuzz.split(real)
        parts.header["shape"] = [n]
        parts.sections = [["sperr", meta], *map(list, sections.items())]
        forged = fuzz.join(parts)
        tracemalloc.start()
        with pytest.raises(CorruptStreamError, match="more outliers than its chunk|more bytes than a set can code"):
            errbound.decompress(forged, max_bytes=4 * n)
        assert tracemalloc.get_traced_memory()[1] < 16 << 20
        tracemalloc.stop()
