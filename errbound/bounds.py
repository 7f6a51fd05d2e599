"""Error-bound modes and their resolution to the absolute bound a codec works with."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .errors import BoundError

MODES = ("abs", "rel", "pw_rel", "psnr")


@dataclass(frozen=True)
class Bound:
    """What the user asked for: one mode and its value."""

    mode: str
    value: float

    def to_json(self) -> dict:
        return {"mode": self.mode, "value": self.value}

    @classmethod
    def from_json(cls, obj: dict) -> Bound:
        return cls(str(obj["mode"]), float(obj["value"]))


def parse_bound(abs=None, rel=None, pw_rel=None, psnr=None) -> Bound:  # noqa: A002 - public keyword
    """Check that exactly one bound is given and that it is a usable number."""
    given = {k: v for k, v in (("abs", abs), ("rel", rel), ("pw_rel", pw_rel), ("psnr", psnr)) if v is not None}
    if not given:
        raise BoundError("no error bound given: pass exactly one of abs=, rel=, pw_rel=, psnr=")
    if len(given) > 1:
        raise BoundError(f"more than one error bound given ({', '.join(given)}): pass exactly one")
    mode, value = next(iter(given.items()))
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise BoundError(f"{mode} bound must be a number, got {value!r}")
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise BoundError(f"{mode} bound must be a number, got {value!r}") from None
    except OverflowError:  # an int beyond the float range (10**400)
        raise BoundError(f"{mode} bound is too large for a float (an integer of {len(str(value))} digits)") from None
    if math.isnan(value):
        raise BoundError(f"{mode} bound is NaN")
    if math.isinf(value):
        raise BoundError(f"{mode} bound is infinite")
    if mode == "psnr":
        if value <= 0:
            raise BoundError(f"psnr target must be positive (decibels), got {value}")
    elif value <= 0:
        raise BoundError(f"{mode} bound must be > 0, got {value}")
    if mode == "pw_rel" and value >= 1:
        raise BoundError(f"pw_rel bound must be < 1 (a relative error of 100% keeps nothing), got {value}")
    return Bound(mode, value)


def finite_range(data: np.ndarray) -> float:
    """max - min of the finite values (0 when there are none)."""
    if data.size == 0:
        return 0.0
    lo = np.min(data)
    hi = np.max(data)
    if np.isfinite(lo) and np.isfinite(hi):
        with np.errstate(over="ignore"):  # float64 cannot overflow here, but keep numpy quiet
            return float(np.float64(hi) - np.float64(lo))
    finite = data[np.isfinite(data)]
    if finite.size == 0:
        return 0.0
    return float(np.float64(finite.max()) - np.float64(finite.min()))


def psnr_to_abs(psnr: float, value_range: float) -> float:
    """Absolute bound whose uniform quantization error gives the target PSNR:
    MSE = eb^2 / 3  =>  eb = range * 10^(-psnr/20) * sqrt(3)."""
    return value_range * 10.0 ** (-psnr / 20.0) * math.sqrt(3.0)


def absolute_bound(bound: Bound, data: np.ndarray) -> float:
    """The absolute bound for abs/rel/psnr modes (0.0 means: store exactly)."""
    if bound.mode == "abs":
        return bound.value
    value_range = finite_range(data)
    if bound.mode == "rel":
        return bound.value * value_range
    if bound.mode == "psnr":
        return psnr_to_abs(bound.value, value_range)
    raise ValueError(f"no absolute bound for mode {bound.mode}")


def psnr(original: np.ndarray, decoded: np.ndarray) -> float:
    """PSNR over finite values, as the peers harness computes it: 20 log10(range) - 10 log10(MSE)."""
    a = np.asarray(original, np.float64).ravel()
    b = np.asarray(decoded, np.float64).ravel()
    mask = np.isfinite(a)
    if not mask.all():
        a, b = a[mask], b[mask]
    if a.size == 0:
        return math.inf
    with np.errstate(over="ignore", invalid="ignore"):  # near float64 max these overflow to inf
        mse = float(np.mean((a - b) ** 2))
        value_range = float(a.max() - a.min())
    if mse == 0:
        return math.inf
    if value_range == 0:
        return -math.inf
    return 20 * math.log10(value_range) - 10 * math.log10(mse)
