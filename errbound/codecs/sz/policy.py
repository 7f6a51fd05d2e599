"""Which predictor the `sz` codec uses for an array: decided by compressing samples.

This is the one place where the `sz` codec's policy lives (SZ3's SZAlgoInterp): candidate
predictors are run on a few blocks spread over the array, each candidate's codes are
sized by their entropy (cheap, and close to what Huffman + zstd reach), and the smallest wins. Decisions are greedy,
as in SZ3: interpolation kind, then axis order, then (from 3 axes up) the first axis frozen
or not, then the level-wise bound (alpha, beta), then interpolation against Lorenzo, plain
or with an axis frozen. Far below a bit per value, where samples are too small
to rank them, a close call between cubic and linear is settled on the full array.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np

from ...layout import as_4d_shape
from ...stage import Stage
from ...stages.coders import huffman, huffman_runs
from ...stages.coders.zstd import ZstdLossless
from ...stages.predictors.interpolation import InterpolationPredictor, choose_anchor
from ...stages.predictors.lorenzo import LorenzoPredictor
from ...stages.predictors.lorenzo_estimate import lorenzo_estimate_codes

# the codes go through the context-modelled rANS coder instead of Huffman + zstd where that
# saves at least 3 % (0-14 % smaller on the shared fields, most at loose bounds on smooth
# fields; such a stream decodes at 0.55-0.8x the Huffman stream's speed), on arrays of at
# least RANS_MIN_CODES codes
RANS_GAIN = 1.03
CODED_BELOW_BITS = 1.0  # bits per value: below it candidates are sized by Huffman + zstd
LORENZO_SCREEN = 2.0  # the estimate of Lorenzo (its model) within this of the best: its kernel decides
# Below CODED_BELOW_BITS a sample codes to a few hundred bytes, too few to rank cubic against
# linear when they are this close: the full array decides (see ``choose``)
FULL_ARRAY_MARGIN = 1.05
RANS_MIN_CODES = 4096
# Lorenzo with a frozen axis is kept where the samples say it saves this much: where they
# saw less, the full array was as often larger (2.5 % on a 64 KiB tile of ts-monthly at rel
# 1e-3). Interpolation with one needs no margin (with 2 %, echam5 lost its 15 % at 1e-3)
FREEZE_MARGIN = 1.02
LORENZO_CLOSE = 1.1  # see _lorenzo_candidate
# Lorenzo with a frozen axis is estimated only where plain Lorenzo's estimate is within this
# of the best: wherever a frozen one won (shared fields and 3-D tiles of them, 3 bounds) that
# was at most 1.2; at loose bounds (1.3-2.9) the estimates favoured freezing by 10-25 % and
# the kernel never confirmed it, at a quarter of a 256 KiB chunk's compress time
FROZEN_LORENZO_SCREEN = 1.3
PART_MIN_CODES = 2048  # see code_parts
# Sizing and coding the runs costs ~50 us a run in numpy calls: on a 64 KiB chunk that was
# +40 % of its compress time for +1.8 % of ratio. The default mode codes in parts from
# this many codes up (400 KB of float32; a 1 MB float64 series has 131040), and
# entropy="best" from two runs' worth
PARTS_FROM_CODES = 100_000
PART_FRAMING = 16  # bytes a part adds: its length, and its own zstd frame header
# zstd's level for entropy="best" (ratio first: auto, h5 compress, the tuner), on the
# Huffman bytes and the exact values. Over the shared fields' codes at rel 1e-2..1e-4 it
# takes 1.8 % off the codes' bytes against level 3 (geometric mean; up to 10 % at loose
# bounds, where runs of the zero code repeat) for 13x zstd's time; level 19 takes 2.4 % for
# 40x (8 MB/s on incompressible values); the decoder is the same at every level
BEST_ZSTD_LEVEL = 15
RADIUS = LorenzoPredictor.radius  # the quantizer's: codes beyond it are unpredictable values
SAMPLE_POINTS = 8192  # at least this many points are tried per candidate ...
SAMPLE_FRACTION = 0.01  # ... or this share of the array, whichever is larger,
TUNING_SHARE = 1 / 16  # ... but all candidates together touch at most ~this much more
# than the array itself (about 10 candidates are tried)
BLOCK_EDGE = {1: 4096, 2: 64, 3: 16, 4: 8}
# SZ3 tries alpha/beta up to (2, 3); on our fields larger pairs never won (measured), so
# the sweep stops at (1.25, 2): (1.5, 2.5) was never picked on the shared fields, 582 tiles
# and runs of them, or lowrank.py's matrices, and was picked for 2 of 183 64 KiB chunks,
# to no gain (their total 0.01 % smaller without it); a sample pass less on every array
ALPHA_BETA = ((1.0, 1.0), (1.25, 2.0))


def sample_blocks(data: np.ndarray) -> list[np.ndarray]:
    """Blocks of (edge+1)^d points on an even grid over the array (the whole array if small)."""
    n = data.size
    target = min(max(SAMPLE_POINTS, int(SAMPLE_FRACTION * n)), max(int(TUNING_SHARE * n), 4096))
    if 2 * target >= n:
        return [data]
    shape4 = as_4d_shape(data.shape)
    live = [a for a in range(4) if shape4[a] > 1]
    edge = BLOCK_EDGE[len(live)] + 1
    extent = [min(edge, shape4[a]) if a in live else 1 for a in range(4)]
    per_block = math.prod(extent)
    count = max(1, math.ceil(target / per_block))
    per_axis = max(1, math.ceil(count ** (1 / len(live))))
    starts = []
    for a in range(4):
        room = shape4[a] - extent[a]
        if a not in live or room <= 0:
            starts.append([0])
        else:
            k = min(per_axis, room + 1)
            starts.append(sorted({round(room * (i + 0.5) / k) for i in range(k)}))
    corners = list(itertools.product(*starts))
    # keep an evenly spread subset when the grid gives more blocks than needed (picked before
    # any is copied: a 3-D array of 150k values copied 8 blocks to keep 2)
    if len(corners) > count:
        pick = np.linspace(0, len(corners) - 1, count).round().astype(int)
        corners = [corners[i] for i in sorted(set(pick))]
    view = data.reshape(shape4)
    block_shape = [extent[a] for a in live]
    blocks = []
    for corner in corners:
        sl = tuple(slice(c, c + e) for c, e in zip(corner, extent, strict=True))
        blocks.append(np.ascontiguousarray(view[sl]).reshape(block_shape))
    return blocks


def estimated_size(predictor, blocks: list[np.ndarray], eb: float, coded: bool = False) -> float:
    """Bytes the candidate would need: the Shannon entropy of its codes (Huffman + zstd land
    close to it, and it costs only a histogram), or with ``coded`` their Huffman + zstd size,
    plus its exact unpredictable values."""
    return _sized(predictor, *_sample_codes(predictor, blocks, eb), coded)


def _sample_codes(predictor, blocks: list[np.ndarray], eb: float) -> tuple[np.ndarray, int]:
    """The candidate's codes on the blocks, and the bytes of its unpredictable values."""
    codes, unpred_bytes = [], 0
    for block in blocks:
        c, u, r = predictor.encode(block, eb)
        codes.append(c)
        unpred_bytes += u.nbytes
        predictor.encoded = (c, u, r)  # a small array is its own sample: its final encode is this one
    return (codes[0] if len(codes) == 1 else np.concatenate(codes)), unpred_bytes


def _sized(predictor, codes: np.ndarray, unpred_bytes: int, coded: bool) -> float:
    if coded:
        section = ZstdLossless().compress(huffman.encode(codes, 2 * predictor.radius))
        encoded = predictor.__dict__.get("encoded")
        if encoded is not None and encoded[0] is codes:
            # the codes of the candidate's one block: for an array that is its own sample,
            # the array's, and this is their section as the stream codes it at the default
            # level (encode_stages takes it with them, see choose: not coded again)
            predictor.encoded = (*encoded[:3], section)
        return len(section) + unpred_bytes
    return _entropy_bytes(codes) + unpred_bytes


def _entropy_bytes(codes: np.ndarray) -> float:
    """Shannon entropy of the codes (in [0, 2 * RADIUS]), in bytes."""
    return huffman.entropy_bytes(codes, 2 * RADIUS + 1)


def lorenzo_estimated_size(blocks: list[np.ndarray], eb: float, frozen=()) -> float:
    """Bytes the Lorenzo predictor would need on the blocks, estimated by a model instead of
    running its kernel (which then compiles only for arrays that use it): the residual is the
    mixed first difference along every axis of the reconstruction, modelled as the data plus
    a uniform error in [-eb, eb] (none where the data is locally constant, which Lorenzo
    reconstructs exactly). On the shared fields this is within 1 % of the kernel's codes at
    rel 1e-3 and 1e-4; at 1e-2, where interpolation wins by far, it overestimates by <= 15 %.
    ``frozen``: 4-D axis numbers of the blocks (as LorenzoPredictor's) not differenced along."""
    # the blocks share one shape: stacked, one kernel call covers them all
    x = np.stack(blocks) if len(blocks) > 1 else blocks[0][None]
    work = np.empty(2 * x.size)  # the values in float64, and the kernel's room
    work[: x.size] = x.reshape(-1)
    skip = np.zeros(x.ndim, np.bool_)
    for a in frozen:  # axes of the stack: the blocks' + 1
        skip[a - (4 - blocks[0].ndim) + 1] = True
    codes = np.empty(x.size, np.int32)
    shape = np.array(x.shape, np.int64)
    unpredictable = lorenzo_estimate_codes(work, _unit_noise(x.size), shape, skip, eb, 0.5 / eb, RADIUS, codes)
    return _entropy_bytes(codes) + int(unpredictable) * blocks[0].itemsize


_NOISE_CACHED = 1 << 16
_noise = []  # the first _NOISE_CACHED draws, made on first use


def _unit_noise(count: int) -> np.ndarray:
    """The first ``count`` draws of uniform(-1, 1) from ``default_rng(0)`` (deterministic:
    the choice is part of the stream). A sample's worth is drawn once per process: seeding
    a generator costs more than the rest of the estimate on a 64 KiB chunk's sample."""
    if count > _NOISE_CACHED:
        return _read_only(np.random.default_rng(0).uniform(-1.0, 1.0, count))
    if not _noise:
        _noise.append(_read_only(np.random.default_rng(0).uniform(-1.0, 1.0, _NOISE_CACHED)))
    return _noise[0][:count]


def _read_only(draws: np.ndarray) -> np.ndarray:
    draws.flags.writeable = False  # also one kernel signature for both kinds of draws
    return draws


@dataclass
class Choice:
    """The policy's pick for an array: the ``predictor``; what it coded of the whole array on
    the way (``encoded``: codes, unpredictable values, reconstruction[, the codes' Huffman +
    zstd bytes]) or None; and ``rival``, the other interpolation kind where the samples could
    not rank the two (far below a bit per value, within FULL_ARRAY_MARGIN), or None."""

    predictor: Stage
    encoded: tuple | None = None
    rival: InterpolationPredictor | None = None

    def settled(self, data: np.ndarray, eb: float) -> Choice:
        """The choice with its close call decided on the whole array: both kinds coded in
        full, the smaller kept with its codes and bytes (on a tie the samples' pick). Only
        where a stream is made: estimates and samples take the samples' pick as it is."""
        if self.rival is None:
            return self
        # Far below a bit per value the samples code to a few hundred bytes each, and whether
        # cubic or linear leaves the longer zero runs is decided by structure they do not
        # hold (echam5 at rel 1e-2: cubic 4.5 % smaller on two 17^3 samples, linear 6.6 %
        # smaller on the array). This costs one more pass only where the codes are cheapest.
        trials = []
        for predictor in (self.predictor, self.rival):
            codes, unpred, recon = predictor.encode(data, eb)
            section = ZstdLossless().compress(huffman.encode(codes, 2 * predictor.radius))
            trials.append((len(section) + unpred.nbytes, predictor, (codes, unpred, recon, section)))
        _, predictor, encoded = min(trials, key=lambda trial: trial[0])
        return Choice(predictor, encoded)


def choose_predictor(data: np.ndarray, eb: float):
    """The predictor stage that compresses samples of `data` best at bound `eb` (a close
    call is not settled: for estimates)."""
    return choose(data, eb).predictor


def choose(data: np.ndarray, eb: float) -> Choice:
    """What compresses samples of `data` best at bound `eb` (see :class:`Choice`); a stream
    takes ``.settled(data, eb)`` of it."""
    blocks = sample_blocks(data)
    shape4 = as_4d_shape(data.shape)
    live = [a for a in range(4) if shape4[a] > 1]
    anchor = choose_anchor(data.shape)
    # a small array (<= 2 * SAMPLE_POINTS values) is its own sample: every candidate costs a
    # full pass, so only the interpolation kind is tuned there (on 16 KiB tiles of the
    # turbulence slice this gave ratio 6.3 where the full sweeps gave 6.0)
    small = len(blocks) == 1 and blocks[0] is data

    def interp(cubic, order, alpha, beta, frozen=None):
        # the sampled blocks are smaller than the array: give them the array's level layout
        return InterpolationPredictor(cubic, order, alpha, beta, anchor=None, frozen=frozen)

    # Below CODED_BELOW_BITS per value the codes' entropy misranks candidates: Huffman spends
    # at least a bit per code and zstd then gains 5-20 % on runs that differ between
    # predictors (a smooth 1-D series at rel 1e-2: entropy 103 bytes for Lorenzo against 172
    # for interpolation, coded 248 against 138). There the candidates are sized coded.
    first = interp(True, None, 1.25, 2.0)
    first_codes = _sample_codes(first, blocks, eb)  # also the first candidate below: coded once
    values = sum(b.size for b in blocks)
    first_entropy = _sized(first, *first_codes, False)
    coded = 8 * first_entropy < CODED_BELOW_BITS * values

    def size_of(predictor):
        return estimated_size(predictor, blocks, eb, coded)

    best_cubic, best_size, best = True, None, None
    kind_sizes = []
    for cubic in (True, False):
        candidate = first if cubic else interp(cubic, None, 1.25, 2.0)
        if not cubic:
            size = size_of(candidate)
        else:
            size = _sized(first, *first_codes, True) if coded else first_entropy
        kind_sizes.append(size)
        if best_size is None or size < best_size:
            best_cubic, best_size, best = cubic, size, candidate
    best_order = None
    if len(live) > 1 and not small:
        # SZ3's two sweep orders; trying all 6 permutations in 3-D gained 0.4 % in ratio
        # (geometric mean over the shared fields) for 50 % more compression time
        orders = [tuple(live), tuple(reversed(live))]
        for order in orders[1:]:
            # block axes are renumbered: keep the relative order of the live axes
            size = size_of(interp(best_cubic, _block_order(order, live), 1.25, 2.0))
            if size < best_size:
                best_order, best_size = order, size
    # Dimension freezing (HPEZ): an axis along which the field is rough (sea ice across its
    # edge, a vertical axis of few levels) predicts worse than the other axes alone; with it
    # frozen, each of its slices is an array of its own. From 3 axes up (a frozen axis of a
    # 2-D field leaves 1-D rows, which lost 10-60 % on every 2-D shared field). Interpolation
    # tries only the first axis (time, member or level in most files): on every 3-D shared
    # field it is the axis whose freezing coded smallest, and each candidate is a sample pass
    # (a quarter of a small field's compress time for the two of them)
    sweep_order = list(live) if best_order is None else list(best_order)
    best_frozen = []
    for a in _freezable(live)[:1] if not small else ():
        rest = [o for o in sweep_order if o != a]
        size = size_of(interp(best_cubic, _block_order(rest, live), 1.25, 2.0, _block_order([a], live)))
        if size < best_size:
            best_frozen, best_size = [a], size
    if best_frozen:
        sweep_order = [o for o in sweep_order if o not in best_frozen]
    best_ab = tried_ab = (1.25, 2.0)
    block_order = None if best_order is None and not best_frozen else _block_order(sweep_order, live)
    block_frozen = _block_order(best_frozen, live)
    for alpha, beta in () if small else ALPHA_BETA:
        if (alpha, beta) == tried_ab:  # sized above: best_size (a pair that beat it moved best_ab)
            continue
        size = size_of(interp(best_cubic, block_order, alpha, beta, block_frozen))
        if size < best_size:
            best_ab, best_size = (alpha, beta), size
    lorenzo = _lorenzo_candidate(blocks, eb, data.shape, live, small, best_size, size_of)
    if lorenzo is not None:
        return Choice(lorenzo, lorenzo.__dict__.pop("encoded") if small else None)
    if small:  # the whole array was coded with the array's own anchors and order: keep that
        return Choice(best, best.__dict__.pop("encoded"))

    def final(cubic):
        if best_frozen:  # the anchors of one slice (the stage chooses them)
            return InterpolationPredictor(cubic, sweep_order, best_ab[0], best_ab[1], anchor=None, frozen=best_frozen)
        return InterpolationPredictor(
            cubic, None if best_order is None else list(best_order), best_ab[0], best_ab[1], anchor=anchor
        )

    close = coded and max(kind_sizes) < FULL_ARRAY_MARGIN * min(kind_sizes)
    return Choice(final(best_cubic), rival=final(not best_cubic) if close else None)


def _lorenzo_candidate(blocks, eb, shape, live, small, best_size, size_of):
    """The Lorenzo predictor where it beats ``best_size`` on the samples, else None. Its
    estimate (a model, see lorenzo_estimated_size) screens it out where it is clearly worse
    (then its kernels need not compile); where it is close, its kernel decides (the
    estimate's model of the reconstruction error misjudges residual-like data such as hlr's
    by up to 15 %). From 3
    axes up the estimate also sizes Lorenzo with each axis frozen (where the slices it cuts
    are allowed, see LorenzoPredictor.slices_allowed), and the best of those runs its
    kernel too where it is estimated below plain Lorenzo."""
    if small:
        lorenzo = LorenzoPredictor()
        return lorenzo if size_of(lorenzo) < best_size else None
    estimates = {(): lorenzo_estimated_size(blocks, eb)}
    for a in _freezable(live) if estimates[()] < FROZEN_LORENZO_SCREEN * best_size else ():
        if LorenzoPredictor(frozen=[a]).slices_allowed(shape):  # its stream may be written
            estimates[(a,)] = lorenzo_estimated_size(blocks, eb, _block_order([a], live))
    # the best-estimated frozen variant first, where there is one; then plain Lorenzo, unless
    # the frozen one's kernel missed the best by more than LORENZO_CLOSE (plain Lorenzo was
    # estimated larger still): one kernel pass where Lorenzo is out of the race, as before
    frozen = min(estimates, key=estimates.get)
    sized = {}  # a frozen variant's size with its margin
    for axes in [frozen, ()] if frozen else [()]:
        if estimates[axes] < LORENZO_SCREEN * best_size:
            size = size_of(LorenzoPredictor(frozen=_block_order(list(axes), live)))
            sized[axes] = size * (FREEZE_MARGIN if axes else 1.0)
            if axes and size > LORENZO_CLOSE * best_size:
                break
    if not sized or min(sized.values()) >= best_size:
        return None
    return LorenzoPredictor(frozen=list(min(sized, key=lambda axes: (sized[axes], len(axes)))))  # ties: plain


def _freezable(live: list[int]) -> list[int]:
    """The axes the policy tries frozen: from 3 live axes up, all but the last. Frozen, the
    last (contiguous) axis never won on a full shared field or tile, while its samples
    favoured it 3 times (17^3 blocks: 0.83x the plain size, the full array 1.07-1.15x)."""
    return live[:-1] if len(live) >= 3 else []


def code_parts(codes: np.ndarray, levels: list[int], alphabet: int, from_codes: int = PARTS_FROM_CODES):
    """(runs, whole): the runs of ``codes`` that would get a Huffman table each, and all
    of them as one, sized from their counts
    (:class:`~errbound.stages.coders.huffman_runs.SizedRun`: so that either is coded with no
    second histogram); or None where the levels are too few. ``levels``: the predictor's
    codes per level, in stream order. An interpolation's coarse levels are predicted from
    farther points under tighter bounds, so their codes spread wider than the finest
    level's, where most codes are: a table each, and a zstd frame each, made the shared
    fields' interpolated streams 2 % smaller (up to 10 % on a 1-D series at a loose bound).
    Levels of fewer than PART_MIN_CODES codes join the next finer one (a table costs up to
    a few hundred bytes); see ``parts_pay``. None below ``from_codes`` codes."""
    if codes.size < from_codes:
        return None
    runs, pending = [], 0
    for count in levels:
        pending += count
        if pending >= PART_MIN_CODES:
            runs.append(pending)
            pending = 0
    if pending and runs:
        runs[-1] += pending
    if len(runs) < 2:
        return None
    sized = huffman_runs.size_runs(codes, alphabet, runs)
    return sized, huffman_runs.one_table(sized)


def parts_pay(parts, whole) -> bool:
    """Whether the runs' blocks, with PART_FRAMING each, are smaller than one table's."""
    return sum(run.size + PART_FRAMING for run in parts) < whole.size


def estimated_bytes(data: np.ndarray, eb: float) -> float:
    """Bytes the sz stages would need for ``data``: the entropy of the chosen predictor's
    codes on the policy's own samples, scaled to the whole array."""
    blocks = sample_blocks(data)
    predictor = choose_predictor(data, eb)
    if blocks[0] is not data:  # the blocks drop the array's length-1 axes: renumber its axes
        predictor = _on_blocks(predictor, data.shape)
    return estimated_size(predictor, blocks, eb) * data.size / sum(b.size for b in blocks)


def _on_blocks(predictor, shape):
    """The array's predictor with its axes (``order``, ``frozen``) numbered as on the sample
    blocks, which keep only the array's axes longer than 1."""
    shape4 = as_4d_shape(shape)
    live = [a for a in range(4) if shape4[a] > 1]
    changes = {"frozen": _block_order(predictor.frozen, live)}
    if isinstance(predictor, InterpolationPredictor) and predictor.order is not None:
        changes["order"] = _block_order(predictor.order, live)
    return dataclasses.replace(predictor, **changes)


def _block_order(order, live):
    """Axis order of the full array (4-D axis numbers) mapped onto a sample block's 4-D view."""
    offset = 4 - len(live)
    return [offset + live.index(a) for a in order]
