"""`hlr`: hierarchical low-rank tiles (HLRcompress) with a point-wise bound.

Stages: ``lowrank`` (the array viewed as a matrix, a quadtree of tiles, low-rank blocks with
factors coded by zfpy; ``errbound.stages.decompositions.lowrank``) -> the residual ``x - L`` through the
``sz`` stages (predictor + Huffman + zstd; where no block is low-rank the residual *is* the
data, so dense tiles are plain ``sz``) -> ``hlr-corrections`` (the point-wise pass: every
value that misses the bound in the output dtype is stored exactly). Sections:
``lowrank-table`` and ``lowrank-factors`` (each with a CRC-32 of its own, so a forged
container cannot feed zfpy damaged bits), ``dense-codes`` and ``dense-unpredictable`` (the
``sz`` sections, renamed so that an `hlr` stream never passes for an `sz` one) and
``corrections``.

A 2-D matrix is also tried with its rows and columns in cluster order (``cluster-order``,
found from the matrix itself: ``errbound.stages.transforms.cluster_order``), which is what a kernel
matrix over an unstructured mesh needs before any block is low-rank; the order is stored
only when it pays for itself, and the decoder puts the rows and columns back.

The dense plan of a 2-D matrix may code it as a 4-D view (``tensor-view``): a matrix over a
structured mesh in row-major order jumps where a mesh row ends, and the view whose axes are
the mesh's is smooth along all four (``errbound.stages.transforms.tensor_view``).

3-D and 4-D arrays are matricized: rows are the leading axes up to ``split``, columns the
rest (a reshape, no copy), and the split whose plan is cheapest is kept; e.g. the climate
stacks become (time x space) matrices. Tucker/HOSVD tiles were measured against this on the
shared 3-D fields (``benchmarks/lowrank.py --only tucker``); the numbers are in the comment
below the imports. The search for the cheapest plan is ``policy``'s.
"""

from __future__ import annotations

import math

import numpy as np

from ...codec import Codec, register
from ...errors import CodecOptionError, CorruptStreamError
from ...stages.coders.huffman import Huffman
from ...stages.coders.zstd import ZstdLossless
from ...stages.corrections.hlr_corrections import HlrCorrections, apply_corrections, combine, encode_corrections
from ...stages.decompositions import lowrank
from ...stages.decompositions.lowrank import LowRankTiles
from ...stages.transforms import cluster_order
from ...stages.transforms.cluster_order import ClusterOrder
from ...stages.transforms.tensor_view import TensorView
from ...stream import section
from ..sz import decode_stages, encode_stages
from .policy import SECTIONS, Search, residual, single_threaded_blas

# Why matricization and not Tucker/HOSVD (benchmarks/lowrank.py --only tucker: the six
# shared 3-D fields at rel 1e-2 and 1e-3, residuals through the same `sz` stages): 16^3 HOSVD
# tiles truncated to an RMS of 0.4 eb lost 9 of 12 cases, by up to 2.5x (echam5 1e-2: 22.5
# against 55.8), and won 2 by at most 1.4 %. One global HOSVD used as a predictor won 6 cases
# (by 12 % on echam5 1e-2, 6 % on cam-u 1e-2, <= 1.5 % on the rest) and lost 5 (by 21 % on
# fice 1e-2): a possible extra plan, not a replacement. Matricization also reuses the 2-D
# quadtree and its decoder unchanged.


@register
class HLRCodec(Codec):
    """Hierarchical low-rank tiles + `sz` residual + exact corrections (see the module docstring).

    Options: ``leaf`` (quadtree leaf size, a multiple of 4, default 128) and ``tolerance``
    (zfp tolerance of the factors in units of the bound, default 2). Neither is needed to
    decode: the stream records what was used.
    """

    name = "hlr"
    # v2: the lowrank stage may code the residual in the array's own dtype (float32); a
    # stream whose residual is float64 (every float64 array, every v1 stream) stays v1.
    # v3: the residual's codes in parts (huffman stage v2, as `sz` v3)
    version = 3
    stage_names = (
        "cluster-order?",
        "tensor-view?",
        "lowrank",
        "interpolation|lorenzo",
        "huffman",
        "zstd",
        "hlr-corrections",
    )
    checks_bound = True

    @classmethod
    def stream_version(cls, stages):
        if Huffman.present(stages, version=2):
            return 3
        return 2 if LowRankTiles.present(stages, version=2) else 1

    def __init__(self, leaf: int | None = None, tolerance: float | None = None):
        self.policy = lowrank.Policy()
        if leaf is not None:
            if not isinstance(leaf, int) or isinstance(leaf, bool) or leaf < 8 or leaf % 4:
                raise CodecOptionError(f"hlr leaf must be a multiple of 4 >= 8, got {leaf!r}")
            self.policy.leaf = leaf
        if tolerance is not None:
            if not (isinstance(tolerance, (int, float)) and 0 < tolerance < 1e6):
                raise CodecOptionError(
                    f"hlr tolerance must be a positive number (in units of the bound), got {tolerance!r}"
                )
            self.policy.tolerance = float(tolerance)

    # ----------------------------------------------------------------------------- encoding

    def encode(self, data, eb):
        order = None
        search = Search(self.policy)
        if not search.eligible(data, eb):
            best = search.dense_trial(data, eb, exact=True)
        else:
            with single_threaded_blas():
                best = search.search(data, eb)
                best, data, order = search.try_cluster_order(data, eb, best)
        if best.low is None:
            stages, sections, _ = best.coded or encode_stages(data, eb, names=SECTIONS)
            records = [LowRankTiles(0, self.policy.leaf, 0.0, 0).record()] + stages + [HlrCorrections().record()]
            if best.view is not None:
                records.insert(0, TensorView(best.view).record())
            return records, sections
        resid = None if best.coded else residual(data, best.low, best.split)
        stages, sections, decoded_resid = best.coded or encode_stages(resid, eb, names=SECTIONS)
        decoded = combine(best.low, decoded_resid, data.dtype)
        fixes = encode_corrections(data, decoded, eb)
        stage = LowRankTiles(best.split, self.policy.leaf, self.policy.tolerance * eb, best.blocks, data.dtype.name)
        sections = [("lowrank-table", best.table), ("lowrank-factors", best.blob)] + sections
        if fixes is not None:
            sections.append(("corrections", fixes))
        records = [stage.record()] + stages + [HlrCorrections().record()]
        if order is not None:
            order_stage, order_blob = order
            records.insert(0, order_stage.record())
            sections.append(("cluster-order", order_blob))
        return records, sections

    # ----------------------------------------------------------------------------- decoding

    def decode(self, stages, sections, shape, dtype, eb):
        out = self._decode_in_coded_order(stages, sections, shape, dtype, eb)
        if not ClusterOrder.present(stages):
            if "cluster-order" in sections:
                raise CorruptStreamError("hlr stream carries a cluster order but no cluster-order stage")
            return out
        if len(shape) != 2:
            raise CorruptStreamError(f"hlr cluster order for a {len(shape)}-D array")
        rows, cols = cluster_order.decode_orders(
            ClusterOrder.load(stages), section(sections, "cluster-order"), shape, ZstdLossless()
        )
        natural = np.empty_like(out)
        natural[np.ix_(rows, cols)] = out
        return natural

    def _decode_in_coded_order(self, stages, sections, shape, dtype, eb):
        stage = LowRankTiles.load(stages)
        HlrCorrections.load(stages)
        view = None
        if TensorView.present(stages):
            view = TensorView.load(stages)
            view.check(shape)
            if stage.blocks:
                raise CorruptStreamError("hlr tensor view on a low-rank plan")
        if stage.blocks == 0:
            if "lowrank-table" in sections or "lowrank-factors" in sections:
                raise CorruptStreamError("dense hlr stream carries low-rank sections")
            coded_shape = shape if view is None else tuple(view.view)
            out = decode_stages(stages, sections, coded_shape, dtype, eb, names=SECTIONS).reshape(shape)
            if "corrections" in sections:
                apply_corrections(sections["corrections"], out)
            return out
        if not 1 <= stage.split < len(shape):
            raise CorruptStreamError(f"hlr matricization split {stage.split} for a {len(shape)}-D array")
        rows, cols = math.prod(shape[: stage.split]), math.prod(shape[stage.split :])
        table = ZstdLossless().decompress(
            lowrank.without_crc(section(sections, "lowrank-table"), "low-rank table"),
            lowrank.table_limit(rows, cols, stage.leaf),
        )
        blocks, x = lowrank.parse_table(table, (rows, cols), stage.leaf)
        if blocks.shape[0] != stage.blocks:
            raise CorruptStreamError("low-rank block count disagrees with the stage record")
        blob = lowrank.without_crc(section(sections, "lowrank-factors"), "low-rank factor")
        factors = lowrank.scale_factors(lowrank.zfp_decode(blob, lowrank.factor_count(blocks)), blocks, x)
        low = lowrank.reconstruct((rows, cols), blocks, factors)
        if not np.isfinite(low).all():
            raise CorruptStreamError("low-rank factors reconstruct to non-finite values")
        resid = decode_stages(stages, sections, shape, np.dtype(stage.residual), eb, names=SECTIONS)
        out = combine(low, resid, dtype)
        if "corrections" in sections:
            apply_corrections(sections["corrections"], out)
        return out.reshape(shape)
