"""Which tolerance the `zfp` codec gives zfpy: the one whose stream, patches included, is
smallest, found on whole zfp blocks sampled from the array.

zfp's fixed-accuracy mode uses only the power of two below its tolerance (the lowest bit
plane it keeps), and its real errors are far below that tolerance: 0.14-0.57 of it on the
shared fields, least in 3-D, where its decorrelating transform spreads the truncation over
64 values. A tolerance of a few times the bound therefore keeps every value, or all but a
handful, within the bound, and the shared verification pass stores the few that miss as
exact patches. On the shared fields the best multiple was 2 for 1-D series, 4-8 for 2-D
fields and 8-16 for 3-D ones: 1.06-1.14x, 1.19-1.56x and 1.23-2.46x the ratio of the bound
itself, with patches counted (``benchmarks/codecs.py``; CHANGELOG, 0.3.0, Changed).

zfp codes each 4^d block on its own in this mode, so a sample made of whole, aligned blocks
codes and reconstructs those blocks bit for bit as the array does: its size and its misses
are exact for them. Only the choice rests on the sample; the stream's bound is checked on
every value by the verification pass, whatever is chosen.
"""

from __future__ import annotations

import math

import numpy as np

from ...stages.coders import zfp
from ...stages.corrections.patches import violations

# the multiple of the bound's power of two to start from, by dimensionality: the best one
# on most shared fields (and on 16 and 64 KiB tiles of them: within 1-2.3 % of the best)
START = {1: 2, 2: 4, 3: 8, 4: 8}
MAX_MULTIPLE = 1 << 16
SAMPLE_SHARE = 1 / 32  # of the array's whole blocks, spread evenly
SAMPLE_MIN_BLOCKS = 64
# below this many values the sample would be too small to rank multiples, and searching
# would cost more than a small chunk's whole compression: the starting multiple is kept
SEARCH_MIN_VALUES = 1 << 16
BLOCK = zfp.BLOCK


def tolerance(eb: float, multiple: int) -> float:
    """The tolerance for ``multiple`` times the largest power of two not above ``eb`` (the
    bound's bit plane; for 1 the bound itself, which zfp reads as the same bit plane)."""
    if multiple == 1:
        return eb
    _, exponent = math.frexp(eb)  # exact: eb = m * 2**exponent, 0.5 <= m < 1
    try:
        return math.ldexp(float(multiple), exponent - 1)
    except OverflowError:  # beyond float64: the callers keep a smaller multiple
        return math.inf


def choose_tolerance(data: np.ndarray, eb: float) -> float:
    """The zfp tolerance for ``data`` at absolute bound ``eb``: a power-of-two multiple of
    the bound's bit plane, searched from START up or down on sampled blocks while the coded
    size (stream plus patches) shrinks."""
    multiple = START[data.ndim]
    while multiple > 1 and not math.isfinite(tolerance(eb, multiple)):  # near float64's top
        multiple //= 2
    sample = sample_blocks(data) if data.size >= SEARCH_MIN_VALUES else None
    if sample is None:
        return tolerance(eb, multiple)
    best = coded_size(sample, eb, multiple)
    for step in (2, 0.5):
        moved = False
        while True:
            candidate = int(multiple * step)
            if not 1 <= candidate <= MAX_MULTIPLE or not math.isfinite(tolerance(eb, candidate)):
                break
            size = coded_size(sample, eb, candidate)
            if size >= best:
                break
            multiple, best, moved = candidate, size, True
        if moved:  # it went up: no need to look down
            break
    return tolerance(eb, multiple)


def coded_size(sample: np.ndarray, eb: float, multiple: int) -> int:
    """Bytes of the sample's zfp stream at ``multiple`` plus what its misses would cost as
    patches (a 4-byte index delta and the exact value each, before zstd)."""
    stream = zfp.encode(sample, tolerance(eb, multiple))
    decoded = zfp.decode(stream, sample.shape, sample.dtype)
    return len(stream) + violations(sample, decoded, eb).size * (4 + sample.itemsize)


def sample_blocks(data: np.ndarray) -> np.ndarray | None:
    """Whole, aligned 4^d blocks of ``data`` spread evenly over it, stacked along the first
    axis (so that zfp sees the same blocks), or None where the array has too few of them."""
    counts = [n // BLOCK for n in data.shape]
    total = math.prod(counts)
    want = max(SAMPLE_MIN_BLOCKS, int(total * SAMPLE_SHARE))
    if 4 * want > total:
        return None
    # the stacked axis must fit zfp's header (a 64^4 array's share is 8192 blocks of 4:
    # above 4-D's 4096); the cap still leaves at least 1024 blocks
    want = min(want, zfp.SIZE_LIMIT[data.ndim] // BLOCK)
    picks = np.unique(np.linspace(0, total - 1, want).round().astype(np.int64))
    whole = data[tuple(slice(0, BLOCK * n) for n in counts)]
    split = whole.reshape([d for n in counts for d in (n, BLOCK)])  # (n0, 4, n1, 4, ...)
    ndim = data.ndim
    blocks = split.transpose(list(range(0, 2 * ndim, 2)) + list(range(1, 2 * ndim, 2)))
    picked = blocks[np.unravel_index(picks, counts)]  # (count, 4, 4, ...)
    return np.ascontiguousarray(picked.reshape((-1,) + (BLOCK,) * (ndim - 1)))
