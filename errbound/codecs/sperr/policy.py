"""The `sperr` codec's choices (none is needed to decode: the stream records them).

How large the chunks are, which quantization step each chunk gets (a factor of the bound
fitted to its density of nonzero coefficients), how the axes are grouped in the transform,
and how the step is solved for when the target is a PSNR.
"""

from __future__ import annotations

import math

import numpy as np

from ...stages.coders import speck
from ...stages.decompositions import wavelet

# Quantization step = factor * bound. SPERR uses 1.5; on the shared 2-D/3-D fields (rel 1e-2
# ... 1e-4) a fixed 2.0 gives 4.4 % more ratio, and the best factor follows the bit rate: 2.4-2.7
# where few coefficients survive, 1.8 where most do. So by default it is chosen per chunk from
# the fraction nz of coefficients that are nonzero at step 2 * bound (+0.9 %; the best factor
# per case would give +1.1 %).
PROBE_FACTOR = 2.0


def step_factor_for(nonzero: float) -> float:
    """The step factor for a chunk whose fraction of nonzero coefficients at step 2 * bound
    is ``nonzero`` (fitted on the shared fields)."""
    return min(2.6, max(1.8, 1.8 + 2.0 * (0.45 - nonzero)))


# values per chunk side by number of axes longer than 1: 256^3 as SPERR, and about as many
# values in 2-D and 4-D; 1-D chunks are smaller because SPECK's lists cost more per value there
CHUNK_SIDE = {0: 1, 1: 1 << 20, 2: 2048, 3: 256, 4: 64}
# a PSNR target: at most this many codings, aiming this far above the target
PSNR_TRIES = 6
PSNR_MARGIN_DB = 0.5


def chunk_extent(shape4: tuple[int, ...], side: int | None = None) -> tuple[int, ...]:
    """The largest chunk extent per axis: ``side`` (default by the number of axes longer
    than 1, see CHUNK_SIDE) along every such axis."""
    side = side or CHUNK_SIDE[sum(n > 1 for n in shape4)]
    return tuple(side if n > 1 else 1 for n in shape4)


def ldexp(x: float, n: int) -> float:
    try:
        return math.ldexp(x, n)
    except OverflowError:
        return math.inf


def chunk_step(q: float, shift: int) -> float:
    """The quantization step q * 2^shift in a chunk's scaled domain (|values| < 1 there), kept
    where the arithmetic works: a step far beyond the values codes nothing, and below 2^-56
    the magnitudes would leave the 62 bit planes (the outlier stage then fixes those points)."""
    return min(max(ldexp(q, shift), 2.0**-56), 2.0**40)


def solve_step(chunks: list, q: float, scale: int, target_sse: float) -> float:
    """The step (units of 2^scale) whose quantization error, summed over the coefficients in
    those units, is target_sse: secant steps on log(error) against log(step)."""

    def sse(step: float) -> float:
        total = 0.0
        for ch in chunks:
            if ch.coef is not None:
                err = speck.quantization_error(ch.coef, chunk_step(step, scale - ch.e))
                total += ldexp(err, 2 * (ch.e - scale))
        return total

    points = []
    for _ in range(8):
        err = sse(q)
        if not (err > 0 and math.isfinite(err)):
            return q
        points.append((math.log(q), math.log(err)))
        goal = math.log(target_sse)
        if abs(points[-1][1] - goal) < 0.01:
            break
        slope = 2.0  # high-rate quantization: error ~ step^2
        if len(points) > 1 and points[-1][0] != points[-2][0]:
            slope = (points[-1][1] - points[-2][1]) / (points[-1][0] - points[-2][0])
            slope = min(max(slope, 0.25), 4.0)
        # a chunk that is constant or nearly zero leaves the error flat in the step (the slope
        # at its floor): the secant step then ran past the float range (an OverflowError on
        # a constant chunk beside a spike). Steps move at most 2^16-fold per try and stay
        # within 2^-80..2^64 of the range, far beyond what codes every value or none
        nxt = points[-1][0] + (goal - points[-1][1]) / slope
        nxt = min(max(nxt, points[-1][0] - _MAX_MOVE, _LOG_STEP_MIN), points[-1][0] + _MAX_MOVE, _LOG_STEP_MAX)
        q = math.exp(nxt)
    return q


_MAX_MOVE = 16 * math.log(2.0)
_LOG_STEP_MIN, _LOG_STEP_MAX = -80 * math.log(2.0), 64 * math.log(2.0)


def best_transform(buf: np.ndarray, dims: np.ndarray, levels: np.ndarray, q: float, pmap, threads: int):
    """Transform with each way of grouping the axes and keep the one that leaves the fewest
    nonzero quantized coefficients: a cheap, reliable proxy of SPECK's size (on the shared 3-D
    fields it picks the smallest stream or one within 2 %, and the choice is worth 2-25 %).
    Returns (grouping, coefficients, nonzero count)."""
    best = None
    splits = wavelet.splits_for(dims, levels)
    for split in splits:
        trial = buf if split == splits[-1] else buf.copy()
        wavelet.forward(trial.reshape(tuple(dims)), levels, wavelet.axis_groups(dims, split), pmap, threads)
        count = speck.count_nonzero(trial, q)
        if best is None or count < best[0]:
            best = (count, split, trial)
    return best[1], best[2], best[0]
