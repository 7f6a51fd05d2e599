"""The `sz` codec: prediction + linear quantization + Huffman + zstd (the SZ3 pipeline).

Stages: a predictor (multilevel interpolation or Lorenzo, chosen on samples by
``policy``) -> canonical Huffman coding of the quantization codes (or, where it is smaller,
context-modelled rANS coding) -> zstd. Sections:
``codes`` (entropy-coded quantization codes) and ``unpredictable`` (exact values).

:func:`encode_stages` and :func:`decode_stages` are the pipeline itself, public for codecs
that code a residual with it (``hlr``) under section names of their own.
"""

from __future__ import annotations

import math

import numpy as np

from ...codec import Codec, register
from ...errors import CorruptStreamError
from ...layout import as_4d_shape
from ...scratch import scratch
from ...stage import which
from ...stages.coders import huffman, huffman_runs, rans
from ...stages.coders.zstd import DEFAULT_LEVEL, ZstdLossless
from ...stages.predictors.interpolation import InterpolationPredictor, level_divisor
from ...stages.predictors.lorenzo import LorenzoPredictor
from ...stream import derived, section
from .policy import (
    BEST_ZSTD_LEVEL,
    PART_MIN_CODES,
    PARTS_FROM_CODES,
    RANS_GAIN,
    RANS_MIN_CODES,
    choose,
    code_parts,
    parts_pay,
)

PREDICTORS = {"interpolation": InterpolationPredictor, "lorenzo": LorenzoPredictor}
SECTIONS = {"codes": "codes", "unpredictable": "unpredictable"}


ENTROPY = ("huffman", "best")


def encode_stages(
    data: np.ndarray,
    eb: float,
    predictor=None,
    names: dict[str, str] = SECTIONS,
    entropy: str = "huffman",
    encoded=None,
    keep_recon: bool = True,
):
    """The sz stages on ``data`` (the predictor chosen by the policy unless given, with what
    the policy already coded of the array in ``encoded``). Returns (stage records, sections
    named by ``names``, the decoder's reconstruction: the predictor reconstructs in place
    exactly as its decoder does; None without ``keep_recon``, when the predictor's temporaries
    are reused buffers). ``entropy="best"`` runs zstd at BEST_ZSTD_LEVEL and codes the codes
    with the context-modelled rANS coder where that is smaller (see ``entropy_code``)."""
    if predictor is None:
        choice = choose(data, eb).settled(data, eb)
        predictor, encoded = choice.predictor, choice.encoded
    codes, unpred, recon, *huffman_coded = encoded or predictor.encode(data, eb, reuse=not keep_recon)
    if not keep_recon:
        recon = None
    lossless = lossless_for(entropy)
    if lossless.level != DEFAULT_LEVEL:  # the policy's Huffman + zstd bytes are at the default level
        huffman_coded = []
    levels = predictor.code_levels(data.shape)
    entropy, coded = entropy_code(codes, predictor.radius, lossless, entropy == "best", *huffman_coded, levels=levels)
    sections = [(names["codes"], coded), (names["unpredictable"], lossless.compress(unpred.tobytes()))]
    return [predictor.record(), entropy.record(), lossless.record()], sections, recon


def lossless_for(entropy: str) -> ZstdLossless:
    """The zstd stage for an entropy mode: "best" (ratio first) at BEST_ZSTD_LEVEL."""
    return ZstdLossless(BEST_ZSTD_LEVEL if entropy == "best" else DEFAULT_LEVEL)


def entropy_code(
    codes: np.ndarray,
    radius: int,
    lossless: ZstdLossless,
    try_rans: bool,
    huffman_coded=None,
    levels: list[int] | None = None,
):
    """(entropy stage, codes section): Huffman + zstd (``huffman_coded`` when the policy
    already made those bytes for one table), or (``try_rans``) the context-modelled rANS
    coder where it saves RANS_GAIN on Huffman + zstd at the default level (its estimate
    first, then the real stream: the policy's constants) and is smaller than the Huffman
    section at ``lossless``'s level. Above the default level (entropy="best") zstd finds
    repeats in the Huffman bytes that the estimate does not see (up to 10 % at loose
    bounds): rANS is kept where it was before, unless the Huffman section is now the
    smaller, so neither the ratio nor the decoding speed (rANS decodes at 0.55-0.8x
    Huffman's) falls anywhere.

    ``levels`` (the predictor's codes per level): the policy's ``code_parts`` groups them
    into runs that may each get a table and a zstd frame. The default mode codes them so
    where their exact Huffman sizes say it pays (``parts_pay``; coding both ways would cost
    a second Huffman + zstd pass); ratio first (``try_rans``), and where the policy already
    coded one table, both are coded and the smaller section is kept."""
    entropy = huffman.Huffman(2 * radius)
    planned = None
    if levels:
        planned = code_parts(codes, levels, entropy.alphabet, 2 * PART_MIN_CODES if try_rans else PARTS_FROM_CODES)
    in_parts = None
    if planned is not None and (try_rans or huffman_coded is not None or parts_pay(*planned)):
        in_parts = lossless.compress_pieces(huffman_runs.encode_runs(codes, planned[0]))
        if huffman_coded is None and not try_rans:
            entropy.in_parts = lossless.in_pieces = True
            return entropy, in_parts
    raw = None
    if huffman_coded is None:
        # the runs' counts make the one table's block without a second histogram
        raw = huffman_runs.encode_run(codes, planned[1]) if planned else huffman.encode(codes, entropy.alphabet)
        huffman_coded = lossless.compress(raw)
    coded = huffman_coded
    if in_parts is not None and len(in_parts) < len(coded):
        entropy.in_parts, coded = True, in_parts
    if not try_rans or codes.size < RANS_MIN_CODES:
        lossless.in_pieces = entropy.in_parts
        return entropy, coded
    gate = huffman_coded
    if lossless.level != DEFAULT_LEVEL:
        gate = ZstdLossless().compress(raw if raw is not None else huffman.encode(codes, entropy.alphabet))
    model = rans.context_model(codes, 2 * radius, radius)  # one counting pass for the estimate and the coder
    if rans.estimated_size(codes, 2 * radius, radius, model) * RANS_GAIN < len(gate):
        stage = rans.Rans(2 * radius, radius)
        blob = lossless.compress(stage.encode(codes, model))
        if len(blob) * RANS_GAIN < len(gate) and len(blob) < len(coded):
            return stage, blob
    lossless.in_pieces = entropy.in_parts
    return entropy, coded


def decode_stages(
    stages: list, sections: dict, shape: tuple[int, ...], dtype: np.dtype, eb: float, names: dict[str, str] = SECTIONS
) -> np.ndarray:
    """Inverse of :func:`encode_stages`."""
    predictor, entropy, lossless = _loaded_stages(stages, shape, eb)
    count = predictor.expected_codes(shape)
    if isinstance(entropy, rans.Rans):
        coded = lossless.decompress(section(sections, names["codes"]), 4 * count + 32 * entropy.alphabet + 4096)
        codes = entropy.decode(coded, count)
    else:
        coded = lossless.decompress(section(sections, names["codes"]), 8 * count + 16 * entropy.alphabet + 4096)
        # the codes live only until the predictor has decoded them: a reused buffer (a fresh
        # one cost a quarter of decoding a 3 MB field in page faults)
        codes = huffman.decode(
            coded, count, entropy.alphabet, out=scratch("sz-codes", count, np.int32), parts=entropy.in_parts
        )
    if codes.shape[0] != count:
        raise CorruptStreamError(f"expected {count} quantization codes, stream holds {codes.shape[0]}")
    codes = codes.astype(np.int32, copy=False)
    n_unpred = predictor.expected_unpredictable(codes, shape)
    raw = lossless.decompress(section(sections, names["unpredictable"]), n_unpred * dtype.itemsize)
    if len(raw) != n_unpred * dtype.itemsize:
        raise CorruptStreamError("unpredictable-value section has the wrong length")
    unpred = np.frombuffer(raw, dtype)
    return predictor.decode(codes, unpred, shape, dtype, eb)


def _loaded_stages(stages: list, shape: tuple[int, ...], eb: float):
    """(predictor, entropy, lossless) stages of the records, checked; kept beside shared
    records (a chunked dataset's: see ``stream.derived``) for its next chunk, which has the
    same. Decoding only reads them."""
    memo = derived(stages)
    key = ("sz", shape, eb)
    if memo is not None and key in memo:
        return memo[key]
    predictor = which(stages, *PREDICTORS.values()).load(stages)
    entropy = which(stages, huffman.Huffman, rans.Rans).load(stages)
    lossless = ZstdLossless.load(stages)
    _check_predictor(predictor, stages, shape, eb)
    if entropy.alphabet != 2 * predictor.radius:
        raise CorruptStreamError(f"{entropy.name} alphabet does not match the quantizer radius")
    if isinstance(entropy, rans.Rans) and entropy.center != predictor.radius:
        raise CorruptStreamError("rans center is not the quantizer's zero code")
    if memo is not None:
        memo[key] = predictor, entropy, lossless
    return predictor, entropy, lossless


@register
class SZCodec(Codec):
    name = "sz"
    # v2 added the rans stage: a stream that uses it needs v2 (an older errbound then says
    # so instead of calling the stream corrupt); one without it stays v1. 0.3.0's stored
    # rans fixture was written as v1 and decodes as well. v3: the codes in parts, one
    # Huffman table per run of levels (huffman stage v2); a stream without them stays v1/v2.
    # v4: rANS in lanes (rans stage v2). v5: frozen axes (interpolation or lorenzo stage v2).
    version = 5
    stage_names = ("interpolation|lorenzo", "huffman|rans", "zstd")

    @classmethod
    def stream_version(cls, stages):
        if InterpolationPredictor.present(stages, version=2) or LorenzoPredictor.present(stages, version=2):
            return 5
        if rans.Rans.present(stages, version=2):
            return 4
        if huffman.Huffman.present(stages, version=2):
            return 3
        return 2 if rans.Rans.present(stages) else 1

    def __init__(self, predictor: str = "auto", entropy: str = "huffman"):
        """predictor: "auto" (chosen on samples), "interpolation" or "lorenzo"; entropy:
        "huffman" (Huffman + zstd) or "best" (ratio first: zstd at BEST_ZSTD_LEVEL, and the
        context-modelled rANS coder where that is smaller still; where it is kept, streams
        decompress at 0.55-0.8x the speed of Huffman's; CHANGELOG has the numbers)."""
        if predictor != "auto" and predictor not in PREDICTORS:
            raise ValueError(f"sz predictor must be 'auto' or one of {sorted(PREDICTORS)}, got {predictor!r}")
        if entropy not in ENTROPY:
            raise ValueError(f"sz entropy must be one of {list(ENTROPY)}, got {entropy!r}")
        self.predictor = predictor
        self.entropy = entropy

    def encode(self, data, eb):
        predictor = None if self.predictor == "auto" else PREDICTORS[self.predictor]()
        stages, sections, _ = encode_stages(data, eb, predictor, entropy=self.entropy, keep_recon=False)
        return stages, sections

    def decode(self, stages, sections, shape, dtype, eb):
        return decode_stages(stages, sections, shape, dtype, eb)


def _check_predictor(predictor, stages, shape, eb=None) -> None:
    """Refuse predictor parameters the encoder never writes: the kernels index with them
    unchecked (an axis number beyond 3 in ``order`` crashed the interpreter), and a
    coerced value (``cubic: null``) would silently decode different numbers."""

    def bad(what):
        return CorruptStreamError(f"{predictor.name} stage has an invalid {what}")

    if not 1 <= predictor.radius <= huffman.MAX_ALPHABET // 2:
        raise bad(f"radius {predictor.radius}")
    if isinstance(predictor, LorenzoPredictor) and not predictor.slices_allowed(shape):
        raise bad(f"frozen axes {predictor.frozen} for shape {tuple(shape)} (too many slices)")
    if not isinstance(predictor, InterpolationPredictor):
        return
    params = next(r["params"] for r in stages if isinstance(r, dict) and r.get("name") == predictor.name)

    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if not isinstance(params.get("cubic"), bool):
        raise bad(f"cubic flag {params.get('cubic')!r}")
    order = params.get("order")
    live = {a for a, n in enumerate(as_4d_shape(shape)) if n > 1}
    if (
        not isinstance(order, list)
        or not all(is_int(a) and 0 <= a <= 3 for a in order)
        or len(set(order)) != len(order)
        or not live <= set(order) | set(predictor.frozen)
    ):
        raise bad(f"axis order {order!r} for shape {tuple(shape)}")
    anchor = params.get("anchor")
    if not is_int(anchor) or anchor < 0 or (anchor and (anchor < 2 or anchor > 1 << 30 or anchor & (anchor - 1))):
        raise bad(f"anchor stride {anchor!r}")
    for name, value in (("alpha", predictor.alpha), ("beta", predictor.beta)):
        if not (math.isfinite(value) and 1.0 <= value <= 1e6):
            raise bad(f"{name} {value}")
    if eb is not None:
        # a bound that the level factors push below the smallest float64 leaves a zero
        # quantization step (a forged header; the encoder never writes one)
        shape4 = as_4d_shape(shape)
        levels = predictor.levels(shape4, predictor.anchor_stride(shape4))
        # the finest level's bound is the smallest (alpha >= 1): level_bounds' last entry, with
        # no array (it cost ~8 us, 6 % of a 64 KiB chunk's decode); near float64's largest
        # bound the doubled step is inf, still usable
        if not 2.0 * (eb / level_divisor(levels, predictor.alpha, predictor.beta)) > 0:
            raise CorruptStreamError(f"{predictor.name} stage: bound {eb!r} leaves no usable quantization step")
