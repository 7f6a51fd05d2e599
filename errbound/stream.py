"""The errbound stream container: a versioned, self-describing, checksummed byte string.

Layout (all integers little-endian; see docs/format.md)::

    0      4  magic  b"ERRB"
    4      1  format major version (a reader refuses a newer major)
    5      1  format minor version (additions a reader may ignore)
    6      4  header length H
    10     H  header: compact UTF-8 JSON (codec, dtype, shape, order, bound, stages, sections);
              format 2: that JSON as a zstd frame without its 4 magic bytes, coded with the
              fixed dictionary of errbound.header_dictionary
    10+H   .. sections, back to back, lengths listed in the header
    end-4  4  CRC-32 of every byte before it

The checksum is verified before anything is parsed, so a damaged stream is reported as
corrupt instead of being decoded into wrong numbers. Format 1 (errbound <= 0.3.0.dev, plain
JSON headers) is read as ever; format 2 is written since the header became most of a small
chunk's stream (a 370-440 byte sz header against 2-3 KiB of data in a 16 KiB chunk).
"""

from __future__ import annotations

import json
import struct
import threading
import zlib
from dataclasses import dataclass, field

from .errors import CorruptStreamError, UnsupportedStreamError

MAGIC = b"ERRB"
FORMAT_MAJOR = 2
FORMAT_MINOR = 0
_PREFIX = struct.Struct("<4sBBI")
_TRAILER = struct.Struct("<I")
OVERHEAD = _PREFIX.size + _TRAILER.size
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"  # dropped from the stored header frame: 4 bytes of every stream
MAX_HEADER_BYTES = 1 << 20  # a decoded header larger than this is not one errbound wrote
# the zstd frame header descriptor (RFC 8878, 3.1.1.1.1): errbound writes single-segment
# frames without a checksum or a dictionary id
_SINGLE_SEGMENT = 0x20
_CHECKSUM_OR_DICT_ID = 0x07

_local = threading.local()  # zstd contexts are reusable but not shareable between threads


def _header_dictionary():
    from zstandard import DICT_TYPE_RAWCONTENT, ZstdCompressionDict

    from .header_dictionary import HEADER_DICTIONARY

    return ZstdCompressionDict(HEADER_DICTIONARY, dict_type=DICT_TYPE_RAWCONTENT)


def encode_header(head: bytes) -> bytes:
    """Format 2's header bytes for the header JSON ``head``."""
    ctx = getattr(_local, "compressor", None)
    if ctx is None:
        from zstandard import ZstdCompressor

        # level 9: 3 us a header; 19 saved 3 more bytes for 71 us (a 16 KiB chunk's sz call
        # takes 230 us in all)
        ctx = _local.compressor = ZstdCompressor(
            level=9, dict_data=_header_dictionary(), write_checksum=False, write_dict_id=False
        )
    frame = ctx.compress(head)
    assert frame[:4] == _ZSTD_MAGIC
    return frame[4:]


def decode_header(raw: bytes, major: int) -> bytes:
    """The header JSON of a stream of format ``major`` from its stored header bytes.

    Format 2 accepts exactly what errbound writes: one single-segment frame (so its window
    is its content size, which fixes the decoded bytes for every conforming decoder), no
    checksum, no dictionary id, a content size of at most MAX_HEADER_BYTES, nothing after
    the frame."""
    if major < 2:
        return raw
    import zstandard

    if not raw or raw[0] & _SINGLE_SEGMENT == 0 or raw[0] & _CHECKSUM_OR_DICT_ID:
        raise CorruptStreamError("stream header is not a frame errbound writes")
    frame = _ZSTD_MAGIC + raw
    try:
        declared = zstandard.frame_content_size(frame)
        if not 0 <= declared <= MAX_HEADER_BYTES:  # we always write the size; -1: absent
            raise CorruptStreamError("stream header does not declare a plausible size")
        ctx = getattr(_local, "decompressor", None)
        if ctx is None:
            ctx = _local.decompressor = zstandard.ZstdDecompressor(dict_data=_header_dictionary())
        # explicit: python-zstandard means to change both defaults
        out = ctx.decompress(frame, max_output_size=max(declared, 1), read_across_frames=False, allow_extra_data=False)
    except zstandard.ZstdError as exc:
        raise CorruptStreamError(f"stream header cannot be decoded: {exc}") from None
    if len(out) != declared:
        raise CorruptStreamError("stream header decodes to another size than it declares")
    return out


# OverflowError: int(Infinity); RecursionError: absurdly nested JSON
_INVALID = (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError, RecursionError)


def _section_list(sections) -> list[tuple[str, int]]:
    out, names = [], set()
    for name, length in sections:
        if not isinstance(name, str) or name in names:
            # two sections of one name: a decoder would read one of them (the last) and never
            # see the other, so a forged second copy silently replaced the first
            raise ValueError(f"section name {name!r:.80} is {'repeated' if name in names else 'not a string'}")
        names.add(name)
        out.append((name, _integer(length, f"section {name!r:.80} length")))
    return out


def _integer(value, what: str, least: int | None = None) -> int:
    """An integer as errbound writes it: JSON's, not a bool, a float or a string that int()
    would take (a shape of [20.9, "24"] decoded as if it were [20, 24])."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{what} {value!r:.80} is not an integer")
    if least is not None and value < least:
        raise ValueError(f"{what} {value} is below {least}")
    return value


def _text(value, what: str) -> str:
    if not isinstance(value, str):
        raise TypeError(f"{what} {value!r:.80} is not a string")
    return value


def _number(value, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{what} {value!r:.80} is not a number")
    return float(value)


@dataclass
class Header:
    """Everything a decoder needs besides the section bytes."""

    codec: str
    codec_version: int
    dtype: str
    shape: tuple[int, ...]
    order: str
    bound: dict | None
    abs_bound: float | None
    stages: list[dict] = field(default_factory=list)
    sections: list[tuple[str, int]] = field(default_factory=list)
    # (major, minor) of the container it was read from; not stored in the JSON
    format: tuple[int, int] = (FORMAT_MAJOR, FORMAT_MINOR)

    def to_json(self) -> bytes:
        obj = {
            "codec": self.codec,
            "codec_version": self.codec_version,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "order": self.order,
            "bound": self.bound,
            "abs_bound": self.abs_bound,
            "stages": self.stages,
            "sections": [[name, length] for name, length in self.sections],
        }
        return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> Header:
        try:
            obj = json.loads(raw.decode())
            header = cls(
                codec=_text(obj["codec"], "codec"),
                codec_version=_integer(obj["codec_version"], "codec version", least=1),
                dtype=_text(obj["dtype"], "dtype"),
                shape=tuple(_integer(n, "shape size") for n in obj["shape"]),
                order=_text(obj["order"], "order"),
                bound=obj["bound"],
                abs_bound=None if obj["abs_bound"] is None else _number(obj["abs_bound"], "abs_bound"),
                stages=list(obj["stages"]),
                sections=_section_list(obj["sections"]),
            )
        except _INVALID as exc:
            raise CorruptStreamError(f"stream header is not valid: {exc}") from None
        if header.bound is not None and not isinstance(header.bound, dict):  # {"mode": ..., "value": ...}
            raise CorruptStreamError(f"stream header has a malformed bound {header.bound!r:.200}")
        names = set()
        for st in header.stages:  # every writer stores {"name": str, "version": int >= 1, "params": dict}
            if not (
                isinstance(st, dict)
                and isinstance(st.get("name"), str)
                and isinstance(st.get("params"), dict)
                and isinstance(st.get("version"), int)
                and not isinstance(st.get("version"), bool)
                and st["version"] >= 1
            ):
                raise CorruptStreamError(f"stream header has a malformed stage record {st!r:.200}")
            # a stage named twice: decoders load the first (an extra predictor record put first
            # decoded other numbers); a version below 1 made a stage look absent to the codecs
            if st["name"] in names:
                raise CorruptStreamError(f"stream header names stage {st['name']!r:.80} twice")
            names.add(st["name"])
        return header

    def stage(self, name: str) -> dict:
        for st in self.stages:
            if st.get("name") == name:
                return st
        raise CorruptStreamError(f"stream has no '{name}' stage (codec {self.codec})")


# Shared headers. The streams of a chunked dataset differ in their headers only in the
# lengths of their sections, which errbound writes last. decompress (``unpack(shared=True)``)
# parses the rest, the fixed part, once per distinct one and hands every later stream the
# same parsed records, and each codec keeps what it loads from them beside them (``derived``):
# a 16 KiB chunk's decode spent ~20 us of its ~70 us on parsing and loading what the chunk
# before it had. A fixed part is shared from its second stream on. The shared parts are
# read-only: writing to one raises TypeError instead of changing what later streams decode.
_SECTIONS_MEMBER = b',"sections":'
SHARED_HEADERS = 256  # distinct fixed parts shared at most ...
SHARED_HEADER_BYTES = 8192  # ... each at most this long: a few MiB at most, whatever streams come
_shared: dict[bytes, Header] = {}
# fixed parts seen (hashes); past this many both are cleared: a long-lived process moves on
# to other data, and a cycle through more distinct headers than are shared keeps its first
# SHARED_HEADERS shared instead of replacing them all the time
SEEN_HEADERS = 4096
_seen: set[int] = set()


def _refuse(self, *args, **kwargs):
    raise TypeError("the parts of a shared stream header are read-only")


class _FrozenDict(dict):
    __setitem__ = __delitem__ = __ior__ = clear = pop = popitem = setdefault = update = _refuse


class _FrozenList(list):
    __setitem__ = __delitem__ = __iadd__ = __imul__ = _refuse
    append = extend = insert = pop = remove = clear = sort = reverse = _refuse


class SharedRecords(_FrozenList):
    """A shared header's stage records (read-only) and ``derived``: what codecs made of them
    (their loaded stages, keyed as each codec likes), for the next stream with this header."""

    def __init__(self, records):
        super().__init__(_frozen(r) for r in records)
        self.derived: dict = {}


def derived(records) -> dict | None:
    """Where a codec may keep what it derives from ``records`` alone (their loaded stages) for
    the next stream with the same header; None for records that are not shared."""
    return records.derived if isinstance(records, SharedRecords) else None


def _frozen(value):
    if isinstance(value, dict):
        return _FrozenDict((key, _frozen(v)) for key, v in value.items())
    if isinstance(value, list):
        return _FrozenList(_frozen(v) for v in value)
    return value


def _first_sight(fixed: bytes) -> bool:
    """Whether no stream since the last clearing had this fixed header part. Sharing one
    costs more than parsing it (10 us a 16 KiB chunk): where every chunk has a header of its
    own (a bound from each chunk's range), only a set lookup is added."""
    key = hash(fixed)  # a collision only shares a header one stream early
    if key in _seen:
        return False
    if len(_seen) >= SEEN_HEADERS:
        _seen.clear()
        _shared.clear()
    _seen.add(key)
    return True


def _shared_header(raw: bytes) -> Header:
    """``Header.from_json(raw)``, the fixed part parsed once per distinct one.

    The split is exact: where ``fixed + ',"sections":[]}'`` parses, ``fixed`` ends right after
    a member of the top-level object (inside a string, an array or a nested object the added
    text cannot close it), so where the rest parses too, ``raw`` is that object with the
    rest as its last "sections" member (the last of duplicate keys wins in json, as here).
    Anything else, and every error, goes through ``from_json`` itself, so messages and
    their order are the same as without sharing."""
    split = raw.rfind(_SECTIONS_MEMBER)
    if split < 0 or split > SHARED_HEADER_BYTES or raw[-1:] != b"}":
        return Header.from_json(raw)
    fixed = raw[:split]
    template = _shared.get(fixed)
    if template is None and (_first_sight(fixed) or len(_shared) >= SHARED_HEADERS):
        return Header.from_json(raw)
    try:
        sections = _section_list(json.loads(raw[split + len(_SECTIONS_MEMBER) : -1].decode()))
        if template is None:
            template = Header.from_json(fixed + b',"sections":[]}')
            template.stages = SharedRecords(template.stages)
            template.bound = _frozen(template.bound)
            _shared[fixed] = template
    except (CorruptStreamError, *_INVALID):
        return Header.from_json(raw)
    t = template
    return Header(t.codec, t.codec_version, t.dtype, t.shape, t.order, t.bound, t.abs_bound, t.stages, sections)


def pack(header: Header, sections: list[tuple[str, bytes]]) -> bytes:
    bodies = [_as_part(data) for _, data in sections]
    # lengths in bytes of what is written (len() of a 2-D array would count its rows)
    header.sections = [(name, len(body)) for (name, _), body in zip(sections, bodies, strict=True)]
    head = encode_header(header.to_json())
    parts = [_PREFIX.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, len(head)), head, *bodies]
    crc = 0
    for part in parts:  # the checksum part by part: the stream is joined once, trailer included
        crc = zlib.crc32(part, crc)
    parts.append(_TRAILER.pack(crc))
    return b"".join(parts)


def _as_part(data):
    """A section's bytes for joining, without a copy where they are one contiguous buffer."""
    if isinstance(data, (bytes, bytearray)):
        return data
    view = memoryview(data)
    return view.cast("B") if view.c_contiguous else bytes(data)


def unpack(blob, shared: bool = False) -> tuple[Header, dict[str, memoryview]]:
    """Verify and split a stream; raise CorruptStreamError on anything inconsistent.

    ``shared``: the header's stage records and bound are the read-only ones of every
    stream with the same fixed header part (see ``_shared_header``), for decoders."""
    view, major, minor, head_len = _prefix(blob)
    body_end = len(view) - _TRAILER.size
    (stored_crc,) = _TRAILER.unpack_from(view, body_end)
    if zlib.crc32(view[:body_end]) != stored_crc:
        raise CorruptStreamError("stream checksum mismatch: the stream is truncated or damaged")
    header = _header(view, major, minor, head_len, shared)
    pos = _PREFIX.size + head_len
    sections = {}
    for name, length in header.sections:
        if length < 0 or pos + length > body_end:
            raise CorruptStreamError(f"section '{name}' runs past the end of the stream")
        sections[name] = view[pos : pos + length]
        pos += length
    if pos != body_end:
        raise CorruptStreamError(f"{body_end - pos} unexpected bytes after the last section")
    return header, sections


def read_header(blob) -> Header:
    return unpack(blob)[0]


def peek_header(blob) -> Header:
    """The stream's header without the checksum pass, which reads every byte of the stream:
    for deciding what to load before a decode (``errbound decompress`` loads the codec's
    modules before its clock starts), never for decoding, which verifies the whole stream.
    Raises CorruptStreamError on what it does read, as :func:`unpack` does."""
    return _header(*_prefix(blob))


def _prefix(blob) -> tuple[memoryview, int, int, int]:
    """(the stream as bytes, format major, minor, header length): the fixed prefix, checked."""
    try:
        view = memoryview(blob).cast("B")
    except TypeError:
        raise CorruptStreamError(f"expected a bytes-like stream, got {type(blob).__name__}") from None
    if len(view) < OVERHEAD:
        raise CorruptStreamError(f"stream is truncated: {len(view)} bytes is shorter than any errbound stream")
    magic, major, minor, head_len = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise CorruptStreamError("not an errbound stream (bad magic bytes)")
    if major == 0:
        raise CorruptStreamError("stream format 0 does not exist")
    if major > FORMAT_MAJOR:
        raise UnsupportedStreamError(
            f"stream format {major}.{minor} is newer than this errbound reads ({FORMAT_MAJOR}.{FORMAT_MINOR})"
        )
    return view, major, minor, head_len


def _header(view: memoryview, major: int, minor: int, head_len: int, shared: bool = False) -> Header:
    if _PREFIX.size + head_len > len(view) - _TRAILER.size:
        raise CorruptStreamError("stream header length runs past the end of the stream")
    raw = decode_header(bytes(view[_PREFIX.size : _PREFIX.size + head_len]), major)
    header = _shared_header(raw) if shared else Header.from_json(raw)
    header.format = (major, minor)
    return header


def section(sections: dict, name: str):
    """The named section of an unpacked stream; a stream without it is corrupt."""
    try:
        return sections[name]
    except KeyError:
        raise CorruptStreamError(f"stream lacks the '{name}' section") from None
