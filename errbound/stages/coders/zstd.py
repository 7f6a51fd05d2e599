"""Lossless back end: zstd over a section's bytes, kept only where it pays.

Each section starts with a one-byte method tag (0 = stored, 1 = zstd) so a section that zstd
cannot shrink (noise, already entropy-coded bits) costs one byte instead of growing. Tag 2
(stage version 2) is a section in pieces, each coded on its own: a varint piece count
(2..64), then per piece a varint byte length and a section of tag 0 or 1; it decodes to the
pieces' bytes joined. Runs of bytes with different statistics (the Huffman parts of an
interpolation's levels) compress better as frames of their own: zstd codes a block's
literals with one table.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import zstandard

from ...errors import CorruptStreamError
from ...stage import Stage
from . import varint

_STORED = 0
_ZSTD = 1
_PIECES = 2
MAX_PIECES = 64
DEFAULT_LEVEL = 3


_local = threading.local()  # zstd contexts are reusable but not shareable between threads


def _compressor(level: int) -> zstandard.ZstdCompressor:
    cache = _local.__dict__.setdefault("compressors", {})
    if level not in cache:
        cache[level] = zstandard.ZstdCompressor(level=level)
    return cache[level]


def _decompressor() -> zstandard.ZstdDecompressor:
    if not hasattr(_local, "decompressor"):
        _local.decompressor = zstandard.ZstdDecompressor()
    return _local.decompressor


@dataclass
class ZstdLossless(Stage):
    """Stage: zstd at ``level`` over each section it is given (records without a level are
    read with the default)."""

    name = "zstd"
    version = 2  # v2: a section in pieces (tag 2)
    optional = frozenset({"level"})

    level: int = DEFAULT_LEVEL

    def __post_init__(self):
        self.level = int(self.level)
        self.in_pieces = False  # not a stored parameter: the record's version says it

    def record(self) -> dict:
        return {**super().record(), "version": 2 if self.in_pieces else 1}

    def loaded_from(self, version: int) -> None:
        self.in_pieces = version >= 2  # a version-1 record's sections are not in pieces

    def compress_pieces(self, pieces) -> bytes:
        """The pieces' bytes joined, each piece coded on its own (tag 2: where the section is
        kept, its writer sets ``in_pieces`` so that the record says version 2), or as one
        section where there is a single piece."""
        if len(pieces) < 2:
            return self.compress(b"".join(pieces))
        if len(pieces) > MAX_PIECES:
            raise ValueError(f"at most {MAX_PIECES} pieces, got {len(pieces)}")
        out = bytearray((_PIECES,)) + varint.encode(len(pieces))
        for piece in pieces:
            coded = self.compress(piece)
            out += varint.encode(len(coded))
            out += coded
        return bytes(out)

    def compress(self, data) -> bytes:
        """data: bytes or any C-contiguous buffer (a numpy array is read in place)."""
        raw = memoryview(data).cast("B")
        if len(raw) >= 64:
            packed = _compressor(self.level).compress(raw)
            if len(packed) < len(raw):
                return bytes((_ZSTD,)) + packed
        return bytes((_STORED,)) + raw

    def decompress(self, section, max_size: int) -> bytes:
        """max_size: an upper bound from the header, so a damaged length cannot exhaust memory."""
        if len(section) == 0:
            raise CorruptStreamError("empty lossless section")
        tag = section[0]
        body = section[1:]
        if tag == _PIECES:
            if not self.in_pieces:
                raise CorruptStreamError("zstd section in pieces under a version-1 zstd record")
            return self._decompress_pieces(section, max_size)
        if tag == _STORED:
            if len(body) > max_size:
                raise CorruptStreamError("stored section is longer than the header allows")
            return bytes(body)
        if tag != _ZSTD:
            raise CorruptStreamError(f"unknown lossless method tag {tag}")
        try:
            # we always write the content size; a frame without one (or a larger one) is not
            # ours, and trusting max_size alone would allocate it up front
            declared = zstandard.frame_content_size(body)
        except zstandard.ZstdError as exc:
            raise CorruptStreamError(f"zstd section cannot be decoded: {exc}") from None
        if declared < 0 or declared > max_size:
            raise CorruptStreamError("zstd section does not declare a size the header allows")
        try:
            out = _decompressor().decompress(body, max_output_size=max(declared, 1))
        except zstandard.ZstdError as exc:
            raise CorruptStreamError(f"zstd section cannot be decoded: {exc}") from None
        if len(out) > max_size:
            raise CorruptStreamError("zstd section decodes to more bytes than the header allows")
        return out

    def _decompress_pieces(self, section, max_size: int) -> bytes:
        count, pos = varint.read(section, 1, "piece count", "zstd section")
        if not 2 <= count <= MAX_PIECES:
            raise CorruptStreamError(f"zstd section claims {count} pieces (2..{MAX_PIECES})")
        out = []
        left = max_size
        for _ in range(count):
            length, pos = varint.read(section, pos, "piece length", "zstd section")
            if length > len(section) - pos:
                raise CorruptStreamError(f"zstd piece of {length} bytes overruns the section")
            piece = section[pos : pos + length]
            pos += length
            if length == 0 or piece[0] not in (_STORED, _ZSTD):
                raise CorruptStreamError("zstd piece is not a stored or zstd section")
            out.append(self.decompress(piece, left))
            left -= len(out[-1])
        if pos != len(section):
            raise CorruptStreamError("zstd section has bytes after its pieces")
        return b"".join(out)
