"""What the ranks must agree on: the settings of a CompressedComm (checked at construction),
the op codes and the value range that ``rel`` needs (agreed per compressed collective by
:mod:`.guard`). The reduction grids that turn the agreed bound into a quantization step are
in :mod:`.reduction.grid`."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

import errbound

from .errors import SettingsError, SettingsMismatchError

ALGORITHMS = ("auto", "ring", "doubling", "halving", "tree")
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
    segment_bytes: int = 0  # pipelined chunk size in bytes of floats; 0: the default
    bcast_algorithm: str = "auto"
    adapt: bool = True  # time compressed against plain MPI and keep the faster

    def keywords(self) -> dict:
        """These settings as CompressedComm's keyword arguments (the fields are named alike)."""
        return dataclasses.asdict(self)

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


#: CompressedComm's keyword arguments, the fields of Settings
KEYWORDS = tuple(f.name for f in dataclasses.fields(Settings))


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
        first = everyone[0][0]
        fields = [f.name for f in dataclasses.fields(Settings)]
        parts = []
        for name in fields:
            values = {r: getattr(s, name) for r, (s, _) in enumerate(everyone)}
            if len(set(map(repr, values.values()))) > 1:
                shown = ", ".join(
                    f"{v!r} on rank {r}" for r, v in values.items() if r == 0 or v != getattr(first, name)
                )
                parts.append(f"{name}: {shown}")
        raise SettingsMismatchError("CompressedComm settings differ between ranks: " + "; ".join(parts))


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


def dtype_code(dtype: np.dtype) -> float:
    return float(np.dtype(dtype).itemsize)
