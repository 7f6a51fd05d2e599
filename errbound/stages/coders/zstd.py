"""Lossless back end: zstd over a section's bytes, kept only where it pays.

Each section starts with a one-byte method tag (0 = stored, 1 = zstd) so a section that zstd
cannot shrink (noise, already entropy-coded bits) costs one byte instead of growing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import zstandard

from ...errors import CorruptStreamError
from ...stage import Stage

_STORED = 0
_ZSTD = 1
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
    optional = frozenset({"level"})

    level: int = DEFAULT_LEVEL

    def __post_init__(self):
        self.level = int(self.level)

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
