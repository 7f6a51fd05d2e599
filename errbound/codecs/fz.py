"""`fz`: dual quantization + integer Lorenzo + bit shuffle + zero-block elimination (FZ-GPU).

The fast codec, and the one compressed collectives use: prequantize (the only lossy step,
checked per value in the output dtype) -> Lorenzo residuals on the integers (exact) ->
zigzag + bit-plane shuffle with zero-block elimination -> zstd where it pays. Sections:
``codes`` (the integer code stream of ``errbound.quantized``) and ``outliers`` (exact values).
"""

from __future__ import annotations

import math

import numpy as np

from ..codec import Codec, load_stage, register
from ..errors import CorruptStreamError
from ..quantized import decode_codes, dequantize, encode_residuals, quantize
from ..scratch import scratch
from ..stages import bitshuffle
from ..stages.lossless import ZstdLossless
from ..stages.patches import decode_patches, encode_patches
from ..stages.prequantize import integer_type_for


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
        flat = np.ascontiguousarray(data).reshape(-1)
        # quantized and predicted in one pass; the residuals only live until the stream is
        # packed: scratch, not a fresh array
        residuals = scratch("fz-codes", flat.size, integer_type_for(flat, 2.0 * eb))
        q = quantize(flat.reshape(data.shape), eb, out=residuals, predict=True)
        stream = encode_residuals(residuals, data.shape, checksum=False)
        return self._assemble(stream, q.outlier_index, q.outlier_value, residuals.dtype)

    @staticmethod
    def _assemble(stream, outlier_idx, outlier_val, code_dtype):
        lossless = ZstdLossless(level=1)
        sections = [("codes", stream)]
        if outlier_idx.size:
            sections.append(("outliers", encode_patches(outlier_idx, outlier_val, lossless)))
        stages = [
            Prequantize(int_bits=np.dtype(code_dtype).itemsize * 8),
            IntegerLorenzo(),
            BitShuffle(block=bitshuffle.BLOCK),
            lossless,
        ]
        return [_record(s) for s in stages], sections

    @staticmethod
    def _check_stages(stages):
        pre = load_stage(stages, Prequantize)
        load_stage(stages, IntegerLorenzo)  # no parameters, but its version must be one we read
        shuffle = load_stage(stages, BitShuffle)
        lossless = load_stage(stages, ZstdLossless)
        if shuffle.params().get("block") != bitshuffle.BLOCK:
            raise CorruptStreamError(f"unsupported bit-shuffle block size {shuffle.params().get('block')}")
        return pre, lossless

    def encode_device(self, data, eb):
        """encode() for a C-contiguous CuPy array: the same stages and bytes, run on the GPU."""
        from .. import gpu

        stream, outlier_idx, outlier_val, code_dtype = gpu.fz_encode(data, eb)
        return self._assemble(stream, outlier_idx, outlier_val, code_dtype)

    def decode_device(self, stages, sections, shape, dtype, eb):
        """decode() into a flat CuPy array."""
        from .. import gpu

        cp = gpu.require_cupy()
        pre, lossless = self._check_stages(stages)
        if "codes" not in sections:
            raise CorruptStreamError("stream lacks the 'codes' section")
        out = gpu.fz_decode(sections["codes"], eb, dtype)
        if out.size != math.prod(shape):
            raise CorruptStreamError("fz code stream does not match the stream header")
        if "outliers" in sections:
            idx, values = decode_patches(sections["outliers"], dtype, out.size, lossless)
            out[cp.asarray(idx)] = cp.asarray(values)
        return out.reshape(shape)

    def decode(self, stages, sections, shape, dtype, eb):
        pre, lossless = self._check_stages(stages)
        if "codes" not in sections:
            raise CorruptStreamError("stream lacks the 'codes' section")
        # dequantized at once: scratch
        codes = decode_codes(sections["codes"], scratch_slot="fz-codes", predicted=True)
        if codes.size != math.prod(shape) or codes.dtype.itemsize * 8 != pre.params().get("int_bits"):
            raise CorruptStreamError("fz code stream does not match the stream header")
        out = dequantize(codes, eb, dtype)
        if "outliers" in sections:
            idx, values = decode_patches(sections["outliers"], dtype, out.size, lossless)
            out[idx] = values
        return out.reshape(shape)
