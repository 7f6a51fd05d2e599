"""The error contract in numbers: settings, the collective agreement step, and the grids.

Reductions quantize every rank's input once on one grid, add (or max) the integer codes
exactly, and decode once:

    SUM:      step <= 2 * (bound - slack) / N     (N ranks each add at most step/2)
    MAX/MIN:  step <= 2 * (bound - slack)         (rounding is monotone: max of codes = code of max)

``slack`` reserves the float arithmetic: half an ulp of the largest possible result for the
final cast to float32 (none for float64), plus a few float64 roundings (2**-53 relative)
in x / step and in the decode.

The step is one of two kinds, chosen so that the decode is exact or correctly rounded:

* below 1, ``1 / M`` for an integer M: integer-valued inputs (counts, masks, mpi4py's own
  test data) have integer codes, so their sums and maxima come back exact;
* otherwise ``K * 2**e`` with an 8-bit K: codes * step is an exact float64 product.

Either way the step is within 1/128 (usually far less) of the largest one allowed; a plain
power of two would waste up to half of it: 9 % more bytes on the shared fields (measured).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

import errbound
from errbound import quantized as qz

from . import kernels
from .compute import compute
from .errors import MismatchError, SettingsError, SettingsMismatchError

ALGORITHMS = ("auto", "ring", "doubling")
BCAST_ALGORITHMS = ("auto", "binomial", "chain", "binary")

# op codes travel in the agreement vector (float64), so they are small integers
SUM, MAX, MIN, PROD, USER, INVALID = 1, 2, 3, 4, 5, 6
_PREDEFINED = (("SUM", SUM), ("MAX", MAX), ("MIN", MIN), ("PROD", PROD))
# predefined ops that MPI defines only for integer, logical or pair types
_INVALID_FOR_FLOAT = ("LAND", "LOR", "LXOR", "BAND", "BOR", "BXOR", "MAXLOC", "MINLOC", "REPLACE", "NO_OP")


@dataclass(frozen=True)
class Settings:
    """What every rank of a CompressedComm must agree on."""

    abs: float | None
    rel: float | None
    codec: str
    min_bytes: int
    consistent: bool
    algorithm: str
    segment_bytes: int = 0      # pipelined chunk size in bytes of floats; 0: the default
    bcast_algorithm: str = "auto"
    adapt: bool = True          # time compressed against plain MPI and keep the faster

    def problem(self) -> str | None:
        """Why these settings are invalid, or None."""
        if (self.abs is None) == (self.rel is None):
            return "give exactly one of abs= or rel="
        value = self.abs if self.abs is not None else self.rel
        if not (isinstance(value, float) and math.isfinite(value) and value > 0):
            return f"the bound must be a positive finite number, got {value!r}"
        if self.codec not in errbound.codecs():
            return f"unknown codec {self.codec!r}; known: {sorted(errbound.codecs())}"
        if not (isinstance(self.min_bytes, int) and self.min_bytes >= 0):
            return f"min_bytes must be an int >= 0, got {self.min_bytes!r}"
        if self.algorithm not in ALGORITHMS:
            return f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}"
        if not (isinstance(self.segment_bytes, int) and self.segment_bytes >= 0):
            return f"segment_bytes must be an int >= 0 (0: the default), got {self.segment_bytes!r}"
        if self.bcast_algorithm not in BCAST_ALGORITHMS:
            return f"bcast_algorithm must be one of {BCAST_ALGORITHMS}, got {self.bcast_algorithm!r}"
        return None


def check_settings(comm: MPI.Intracomm, settings: Settings) -> None:
    """Raise SettingsError (invalid) or SettingsMismatchError (different) on every rank unless
    all ranks hold the same valid settings."""
    everyone = comm.allgather((settings, settings.problem()))
    problems = sorted({p for _, p in everyone if p is not None})
    if problems:
        ranks = [r for r, (_, p) in enumerate(everyone) if p is not None]
        where = "every rank" if len(ranks) == len(everyone) else f"rank(s) {ranks}"
        raise SettingsError(f"invalid CompressedComm settings on {where}: " + "; ".join(problems))
    differ = [r for r, (s, _) in enumerate(everyone) if s != everyone[0][0]]
    if differ:
        raise SettingsMismatchError(
            f"CompressedComm settings differ between ranks: rank 0 has {everyone[0][0]}, "
            + "; ".join(f"rank {r} has {everyone[r][0]}" for r in differ)
        )


def op_code(op: MPI.Op) -> int:
    """A small integer naming op, the same on every rank."""
    for name, code in _PREDEFINED:
        if op == getattr(MPI, name):
            return code
    if any(op == getattr(MPI, name, MPI.OP_NULL) for name in _INVALID_FOR_FLOAT):
        return INVALID
    return USER


def op_name(code: int) -> str:
    return {SUM: "SUM", MAX: "MAX", MIN: "MIN", PROD: "PROD", USER: "a user-defined op"}.get(code, "a non-float op")


def agree(comm: MPI.Intracomm, what: str, equal: dict[str, float], maxima: Sequence[float] = ()) -> np.ndarray:
    """One small MAX Allreduce: check that every rank passed the same `equal` values (raise
    MismatchError on all ranks otherwise) and return the global maxima of `maxima`.

    MAX of v and of -v gives both the maximum and the minimum of v in one call.
    """
    names = list(equal)
    k = len(names)
    vec = np.empty(2 * k + len(maxima), np.float64)
    vec[:k] = [equal[n] for n in names]
    vec[k:2 * k] = -vec[:k]
    vec[2 * k:] = maxima
    comm.Allreduce(MPI.IN_PLACE, vec, MPI.MAX)
    def show(name: str, value: float) -> str:
        return op_name(int(value)) if name == "op" else f"{value:g}"

    bad = [f"{n} ranges from {show(n, -vec[k + i])} to {show(n, vec[i])}"
           for i, n in enumerate(names) if vec[i] != -vec[k + i]]
    if bad:
        raise MismatchError(f"{what}: the ranks disagree: " + ", ".join(bad))
    return vec[2 * k:]


def finite_stats(x: np.ndarray) -> tuple[float, float, bool]:
    """(min, max) of the finite values (+inf, -inf if none) and whether any value is not finite."""
    if x.size == 0:
        return math.inf, -math.inf, False
    lo, hi = float(np.min(x)), float(np.max(x))
    if math.isfinite(lo) and math.isfinite(hi):  # the common case: two fast passes, no mask
        return lo, hi, False
    finite = x[np.isfinite(x)]
    if finite.size == 0:
        return math.inf, -math.inf, True
    return float(finite.min()), float(finite.max()), True


def resolve_bound(settings: Settings, lo: float, hi: float) -> float:
    """The absolute bound: abs, or rel times the global value range [lo, hi] (0 if there is none)."""
    if settings.abs is not None:
        return settings.abs
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return 0.0
    return settings.rel * (hi - lo)


@dataclass(frozen=True)
class Grid:
    """The common quantization grid of a reduction: codes are round(x / step)."""

    step: float            # the step; for a reciprocal grid, the nearest float to 1 / divisor
    int_dtype: np.dtype    # int32 or int64, wide enough for the reduced codes
    divisor: int = 0       # M > 0: a reciprocal grid, step exactly 1 / M, decoded as codes / M

    def decode(self, codes: np.ndarray, dtype: np.dtype) -> np.ndarray:
        """codes * step in dtype: correctly rounded (reciprocal grid) or exact, then one cast."""
        out = np.empty(codes.shape, dtype)
        with compute():
            self.decode_into(codes, out)
        return out

    def decode_into(self, codes: np.ndarray, out: np.ndarray) -> None:
        """decode() written into out (contiguous, codes' size); the caller holds compute()."""
        if self.divisor:
            kernels.divide_into(codes, self.divisor, out)
        else:
            # dequantize multiplies by 2 * eb: eb = step / 2 gives exactly step again
            qz.dequantize(codes.reshape(-1), self.step / 2.0, out=out.reshape(-1))

    def decode_residuals_into(self, residuals: np.ndarray, shape: tuple[int, ...], out: np.ndarray) -> None:
        """decode_into(unpredict(residuals)) in one pass (residuals become the codes); the
        caller holds compute()."""
        if self.divisor:
            qz.dequantize_residuals(residuals, shape, out.reshape(-1), divisor=self.divisor)
        else:
            qz.dequantize_residuals(residuals, shape, out.reshape(-1), eb=self.step / 2.0)


_U = 2.0**-53  # unit roundoff of float64


def reduction_grid(code: int, nranks: int, bound: float, gmax: float, dtype: np.dtype) -> Grid | None:
    """The grid meeting `bound` on the final result, or None where plain MPI is the better choice
    (a bound at or below the float precision of the result, or codes too wide for int64)."""
    if not (bound > 0 and math.isfinite(bound) and math.isfinite(gmax)):
        return None
    terms = nranks if code == SUM else 1
    largest = terms * gmax + bound  # bounds |result| and every partial sum
    if largest >= float(np.finfo(dtype).max) / 2:
        return None
    cast = 0.5 * float(np.spacing(dtype.type(largest))) if dtype == np.float32 else 0.0
    # float64 wobble: x / step (<= 4.03 u |x| per term), the decode division (u |result|)
    slack = cast + 8 * _U * terms * gmax + 2 * _U * largest
    target = 2.0 * (bound - slack) / terms / (1.0 + 2.0**-50)  # the largest step allowed
    if not target > 0:
        return None
    if 2.0**-40 <= target < 1.0:
        divisor = math.ceil(1.0 / target)
        if 1.0 / divisor > target:  # the reciprocal rounded up: one more
            divisor += 1
        step, product_bits = 1.0 / divisor, 53
    else:
        exponent = math.frexp(target)[1] - 8          # target = m * 2**(exponent + 8), 0.5 <= m < 1
        multiple = math.floor(math.ldexp(target, -exponent))   # 128 <= multiple < 256
        step, divisor, product_bits = math.ldexp(multiple, exponent), 0, 45  # |codes * multiple| < 2**53
    if step < 2.0**-1000:  # keep steps and products clear of subnormals
        return None
    per_rank = gmax / step + 1.0
    total = terms * per_rank
    # quantize() caps int32 codes at 2**26; partial sums must stay inside the type, and
    # the decode must see the reduced codes exactly
    if per_rank < 2.0**25 and total < 2.0**30:
        return Grid(step, np.dtype(np.int32), divisor)
    if per_rank < 2.0**51 and total < 2.0**product_bits:
        return Grid(step, np.dtype(np.int64), divisor)
    return None


def dtype_code(dtype: np.dtype) -> float:
    return float(np.dtype(dtype).itemsize)
