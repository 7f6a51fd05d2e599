"""The `fz` codec: dual quantization + integer Lorenzo + bit shuffle + zero-block elimination
(FZ-GPU).

The fast codec, and the one compressed collectives use: prequantize (the only lossy step,
checked per value in the output dtype) -> Lorenzo residuals on the integers (exact) ->
zigzag + bit-plane shuffle with zero-block elimination -> zstd where it pays. Sections:
``codes`` (the integer code stream of ``errbound.quantized``) and ``outliers`` (exact values).
The same stages run on a GPU (``gpu``), stream for stream.
"""

from __future__ import annotations

import math

import numpy as np

from ...codec import Codec, register
from ...errors import CorruptStreamError
from ...quantized import decode_codes, dequantize, encode_residuals, quantize
from ...scratch import scratch
from ...stages.coders.bitshuffle import BitShuffle
from ...stages.coders.zstd import ZstdLossless
from ...stages.corrections.patches import decode_patches, encode_patches
from ...stages.predictors.integer_lorenzo import IntegerLorenzo
from ...stages.quantizers.prequantize import Prequantize, integer_type_for
from ...stream import section


def _assemble(stream, outlier_idx, outlier_val, code_dtype):
    lossless = ZstdLossless(level=1)
    sections = [("codes", stream)]
    if outlier_idx.size:
        sections.append(("outliers", encode_patches(outlier_idx, outlier_val, lossless)))
    stages = [Prequantize(int_bits=np.dtype(code_dtype).itemsize * 8), IntegerLorenzo(), BitShuffle(), lossless]
    return [s.record() for s in stages], sections


def _load_stages(stages) -> tuple[Prequantize, ZstdLossless]:
    IntegerLorenzo.load(stages)  # no parameters, but its version must be one we read
    BitShuffle.load(stages)  # refuses block sizes other than ours
    return Prequantize.load(stages), ZstdLossless.load(stages)


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
        return _assemble(stream, q.outlier_index, q.outlier_value, residuals.dtype)

    def decode(self, stages, sections, shape, dtype, eb):
        pre, lossless = _load_stages(stages)
        # dequantized at once: scratch
        codes = decode_codes(
            section(sections, "codes"), scratch_slot="fz-codes", predicted=True, count=math.prod(shape)
        )
        # the shape too: the integer Lorenzo decoder ran along the code stream's own axes (the
        # same values under reversed axes decoded 1.8e5 bounds away from the data)
        if codes.shape != tuple(shape) or codes.dtype.itemsize * 8 != pre.int_bits:
            raise CorruptStreamError("fz code stream does not match the stream header")
        out = dequantize(codes, eb, dtype)
        if "outliers" in sections:
            idx, values = decode_patches(sections["outliers"], dtype, out.size, lossless)
            out[idx] = values
        return out.reshape(shape)

    def encode_device(self, data, eb):
        """encode() for a C-contiguous CuPy array: the same stages and bytes, run on the GPU."""
        from . import gpu

        stream, outlier_idx, outlier_val, code_dtype = gpu.fz_encode(data, eb)
        return _assemble(stream, outlier_idx, outlier_val, code_dtype)

    def decode_device(self, stages, sections, shape, dtype, eb):
        """decode() into a flat CuPy array."""
        from ... import device
        from . import gpu

        cp = device.require_cupy()
        pre, lossless = _load_stages(stages)
        out = gpu.fz_decode(section(sections, "codes"), eb, dtype, tuple(shape))
        if out.size != math.prod(shape):
            raise CorruptStreamError("fz code stream does not match the stream header")
        if "outliers" in sections:
            idx, values = decode_patches(sections["outliers"], dtype, out.size, lossless)
            out[cp.asarray(idx)] = cp.asarray(values)
        return out.reshape(shape)
