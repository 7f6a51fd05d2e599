"""Integer codes of the reductions: quantize once, encode losslessly, combine exactly, decode once.

Shared by the unpipelined algorithms (:mod:`.reduce`) and the pipelined ring (:mod:`.ring`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from errbound import UnsupportedInputError
from errbound import quantized as qz

from ..compute import compute
from ..errors import MismatchError
from ..settings import MAX, MIN, SUM
from ..transport import exchange
from .grid import Grid

COMBINE: dict[int, Callable] = {SUM: np.add, MAX: np.maximum, MIN: np.minimum}


def quantize_codes(x: np.ndarray, grid: Grid, out: np.ndarray | None = None) -> np.ndarray:
    """x's integer codes on the grid (non-finite points: arbitrary codes, see Exact), in out
    (flat, grid.int_dtype, x.size elements) when given."""
    with compute():
        q = qz.quantize(x, grid.step / 2, None if out is not None else grid.int_dtype, out=out)
    # quantize() lists points whose reconstruction misses the bound *in the input dtype* as
    # outliers but keeps their codes; here only the codes matter: |q * step - x| <= step / 2
    # up to the float64 wobble that the grid reserves. Non-finite values are handled by
    # Exact; no code overflows, because the grid was sized from the global max.
    return q.codes


def quantize_residuals(x: np.ndarray, grid: Grid, shape: tuple[int, ...], out: np.ndarray) -> np.ndarray:
    """predict(quantize_codes(x)) in one pass (the codes are never stored), into out. Only
    where no point is exact: Exact zeroes codes before their prediction."""
    with compute():
        return qz.quantize_residuals(x.reshape(shape), grid.step / 2, out=out)


def predict(codes: np.ndarray, shape: tuple[int, ...], out: np.ndarray) -> np.ndarray:
    """The Lorenzo residuals of codes, into out. Sums of residuals are the residuals of the
    sum, so a SUM reduction adds residuals on the way and restores only the final sum."""
    with compute():
        return qz.predict(codes, shape, out=out)


def unpredict_into(residuals: np.ndarray, shape: tuple[int, ...]) -> None:
    """residuals (one chunk's) become the codes, in place."""
    with compute():
        qz.unpredict(residuals, shape)


def encode(codes: np.ndarray, shape: tuple[int, ...], predict: bool = True) -> bytes:
    """codes, or residuals already predicted (predict=False), as a code stream."""
    if codes.size == 0:
        return b""
    with compute():
        return qz.encode_codes(codes, shape, predict=predict)


def decode_add(payload, acc: np.ndarray) -> None:
    """acc += the values in payload (wrapping), in the decoder's own pass."""
    if acc.size == 0:
        return
    with compute():
        try:
            qz.decode_codes(payload, add_to=acc)
        except UnsupportedInputError:  # acc is this rank's own chunk: the peer's stream differs
            raise MismatchError(f"received codes that do not match this rank's {acc.size} {acc.dtype} codes") from None


def decode(payload, count: int, int_dtype: np.dtype) -> np.ndarray:
    """The codes in payload: valid until the next decode() on this thread."""
    if count == 0:
        return np.empty(0, int_dtype)
    with compute():
        # every caller combines or writes the codes before it decodes again: scratch
        codes = qz.decode_codes(payload, scratch_slot="collective-codes").reshape(-1)
    if codes.size != count or codes.dtype != int_dtype:
        raise MismatchError(f"received {codes.size} {codes.dtype} codes where {count} {int_dtype} were expected")
    return codes


@dataclass
class Exact:
    """Positions with a non-finite input somewhere, and their reduction in float64 (rank order)."""

    index: np.ndarray
    value: np.ndarray

    @classmethod
    def gather_over(cls, mailbox, x: np.ndarray, code: int) -> Exact:
        """Every rank's non-finite positions, then every rank's values there (point to point)."""
        mine = np.flatnonzero(~np.isfinite(x)).astype(np.int64)
        everyone = exchange.allgather_bytes(mailbox, mine.view(np.uint8), tag=exchange.TAG_ALLGATHER)
        index = np.unique(np.concatenate([np.frombuffer(p, np.int64) for p in everyone]))
        mine = x[index].astype(np.float64)
        everyone = exchange.allgather_bytes(mailbox, mine.view(np.uint8), tag=exchange.TAG_ALLGATHER + 100)
        values = [np.frombuffer(p, np.float64) for p in everyone]
        result = values[0].copy()
        with np.errstate(invalid="ignore", over="ignore"):
            for v in values[1:]:  # rank order: the same operations, hence bits, on every rank
                result = COMBINE[code](result, v)
        return cls(index, result)

    def inside(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray]:
        """(positions relative to start, exact values) of the points in [start, stop)."""
        lo, hi = np.searchsorted(self.index, [start, stop])
        return self.index[lo:hi] - start, self.value[lo:hi]

    def zero(self, codes: np.ndarray, start: int) -> None:
        """Every rank gives these points the code 0, so their code sum is 0 too."""
        codes[self.inside(start, start + codes.size)[0]] = 0


def write(
    out: np.ndarray,
    codes: np.ndarray,
    grid: Grid,
    exact: Exact | None,
    start: int = 0,
    residuals_of: tuple[int, ...] | None = None,
) -> None:
    """out = codes * step in out's dtype, with the exactly reduced non-finite points; start is
    out's offset in the whole message. With ``residuals_of`` (a chunk's shape), `codes` holds
    the chunk's Lorenzo residuals: restored (in place) and written in one pass."""
    with compute():
        if residuals_of is None:
            grid.decode_into(codes, out)
        elif codes.size:
            grid.decode_residuals_into(codes, residuals_of, out)
    if exact is not None and exact.index.size:
        where, values = exact.inside(start, start + out.size)
        with np.errstate(invalid="ignore", over="ignore"):
            out[where] = values.astype(out.dtype)
