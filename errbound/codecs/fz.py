"""`fz`: dual quantization + integer Lorenzo + bit shuffle + zero-block elimination (FZ-GPU).

The fast codec, and the one compressed collectives use: prequantize (the only lossy step,
checked per value in the output dtype) -> Lorenzo residuals on the integers (exact) ->
zigzag + bit-plane shuffle with zero-block elimination -> zstd where it pays. Sections:
``codes`` (the integer code stream of ``errbound.quantized``) and ``outliers`` (exact values).
"""

from __future__ import annotations

import numpy as np

from ..codec import Codec, load_stage, register
from ..errors import CorruptStreamError
from ..quantized import decode_codes, dequantize, encode_codes, quantize
from ..stages import bitshuffle
from ..stages.lossless import ZstdLossless
from ..stages.patches import decode_patches, encode_patches


class _Stage:
    """A stage whose parameters are a plain dict."""

    version = 1

    def __init__(self, **params):
        self._params = params

    def params(self) -> dict:
        return dict(self._params)

    @classmethod
    def from_params(cls, p: dict):
        return cls(**p)


class Prequantize(_Stage):
    name = "prequantize"


class IntegerLorenzo(_Stage):
    name = "lorenzo-int"


class BitShuffle(_Stage):
    name = "bitshuffle"


def _record(stage) -> dict:
    return {"name": stage.name, "version": stage.version, "params": stage.params()}


@register
class FZCodec(Codec):
    name = "fz"
    version = 1
    stage_names = ("prequantize", "lorenzo-int", "bitshuffle", "zstd")

    def encode(self, data, eb):
        q = quantize(data, eb)
        lossless = ZstdLossless(level=1)
        sections = [("codes", encode_codes(q.codes, data.shape, checksum=False))]
        if q.outlier_index.size:
            sections.append(("outliers", encode_patches(q.outlier_index, q.outlier_value, lossless)))
        stages = [
            Prequantize(int_bits=q.codes.dtype.itemsize * 8),
            IntegerLorenzo(),
            BitShuffle(block=bitshuffle.BLOCK),
            lossless,
        ]
        return [_record(s) for s in stages], sections

    def decode(self, stages, sections, shape, dtype, eb):
        pre = load_stage(stages, Prequantize)
        shuffle = load_stage(stages, BitShuffle)
        lossless = load_stage(stages, ZstdLossless)
        if shuffle.params().get("block") != bitshuffle.BLOCK:
            raise CorruptStreamError(f"unsupported bit-shuffle block size {shuffle.params().get('block')}")
        if "codes" not in sections:
            raise CorruptStreamError("stream lacks the 'codes' section")
        codes = decode_codes(sections["codes"])
        if codes.size != int(np.prod(shape)) or codes.dtype.itemsize * 8 != pre.params().get("int_bits"):
            raise CorruptStreamError("fz code stream does not match the stream header")
        out = dequantize(codes, eb, dtype)
        if "outliers" in sections:
            idx, values = decode_patches(sections["outliers"], dtype, out.size, lossless)
            out[idx] = values
        return out.reshape(shape)
