"""The errbound stream container: a versioned, self-describing, checksummed byte string.

Layout (all integers little-endian; see docs/format.md)::

    0      4  magic  b"ERRB"
    4      1  format major version (a reader refuses a newer major)
    5      1  format minor version (additions a reader may ignore)
    6      4  header length H
    10     H  header: compact UTF-8 JSON (codec, dtype, shape, order, bound, stages, sections)
    10+H   .. sections, back to back, lengths listed in the header
    end-4  4  CRC-32 of every byte before it

The checksum is verified before anything is parsed, so a damaged stream is reported as
corrupt instead of being decoded into wrong numbers.
"""

from __future__ import annotations

import json
import struct
import zlib
from dataclasses import dataclass, field

from .errors import CorruptStreamError, UnsupportedStreamError

MAGIC = b"ERRB"
FORMAT_MAJOR = 1
FORMAT_MINOR = 0
_PREFIX = struct.Struct("<4sBBI")
_TRAILER = struct.Struct("<I")
OVERHEAD = _PREFIX.size + _TRAILER.size


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
                codec=str(obj["codec"]),
                codec_version=int(obj["codec_version"]),
                dtype=str(obj["dtype"]),
                shape=tuple(int(n) for n in obj["shape"]),
                order=str(obj["order"]),
                bound=obj["bound"],
                abs_bound=None if obj["abs_bound"] is None else float(obj["abs_bound"]),
                stages=list(obj["stages"]),
                sections=[(str(n), int(length)) for n, length in obj["sections"]],
            )
        # OverflowError: int(Infinity); RecursionError: absurdly nested JSON
        except (ValueError, KeyError, TypeError, UnicodeDecodeError, OverflowError, RecursionError) as exc:
            raise CorruptStreamError(f"stream header is not valid: {exc}") from None
        for st in header.stages:  # every writer stores {"name": str, "version": int, "params": dict}
            if not (
                isinstance(st, dict)
                and isinstance(st.get("name"), str)
                and isinstance(st.get("params"), dict)
                and isinstance(st.get("version"), int)
                and not isinstance(st.get("version"), bool)
            ):
                raise CorruptStreamError(f"stream header has a malformed stage record {st!r:.200}")
        return header

    def stage(self, name: str) -> dict:
        for st in self.stages:
            if st.get("name") == name:
                return st
        raise CorruptStreamError(f"stream has no '{name}' stage (codec {self.codec})")


def pack(header: Header, sections: list[tuple[str, bytes]]) -> bytes:
    header.sections = [(name, len(data)) for name, data in sections]
    head = header.to_json()
    parts = [_PREFIX.pack(MAGIC, FORMAT_MAJOR, FORMAT_MINOR, len(head)), head]
    parts.extend(bytes(data) if not isinstance(data, bytes) else data for _, data in sections)
    body = b"".join(parts)
    return body + _TRAILER.pack(zlib.crc32(body))


def unpack(blob) -> tuple[Header, dict[str, memoryview]]:
    """Verify and split a stream; raise CorruptStreamError on anything inconsistent."""
    try:
        view = memoryview(blob).cast("B")
    except TypeError:
        raise CorruptStreamError(f"expected a bytes-like stream, got {type(blob).__name__}") from None
    if len(view) < OVERHEAD:
        raise CorruptStreamError(f"stream is truncated: {len(view)} bytes is shorter than any errbound stream")
    magic, major, minor, head_len = _PREFIX.unpack_from(view, 0)
    if magic != MAGIC:
        raise CorruptStreamError("not an errbound stream (bad magic bytes)")
    if major > FORMAT_MAJOR:
        raise UnsupportedStreamError(
            f"stream format {major}.{minor} is newer than this errbound reads ({FORMAT_MAJOR}.{FORMAT_MINOR})"
        )
    body_end = len(view) - _TRAILER.size
    (stored_crc,) = _TRAILER.unpack_from(view, body_end)
    if zlib.crc32(view[:body_end]) != stored_crc:
        raise CorruptStreamError("stream checksum mismatch: the stream is truncated or damaged")
    if _PREFIX.size + head_len > body_end:
        raise CorruptStreamError("stream header length runs past the end of the stream")
    header = Header.from_json(bytes(view[_PREFIX.size : _PREFIX.size + head_len]))
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


def section(sections: dict, name: str):
    """The named section of an unpacked stream; a stream without it is corrupt."""
    try:
        return sections[name]
    except KeyError:
        raise CorruptStreamError(f"stream lacks the '{name}' section") from None
