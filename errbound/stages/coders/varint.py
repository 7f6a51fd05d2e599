"""Unsigned LEB128 varints: the counts and lengths inside coded blocks and sections."""

from __future__ import annotations

from ...errors import CorruptStreamError


def encode(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def read(data, pos: int, what: str, where: str) -> tuple[int, int]:
    """(value, next position) of the varint at ``pos`` of ``data`` (bytes or a uint8 array);
    a truncated or over-long one raises CorruptStreamError naming ``what`` in ``where``."""
    v = shift = 0
    while True:
        if pos >= len(data):
            raise CorruptStreamError(f"{where} truncated while reading {what}")
        b = int(data[pos])
        pos += 1
        v |= (b & 0x7F) << shift
        shift += 7
        if b < 0x80:
            return v, pos
        if shift >= 63:
            raise CorruptStreamError(f"{where}: varint for {what} is too long")
