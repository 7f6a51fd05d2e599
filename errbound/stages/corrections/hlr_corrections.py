"""The `hlr` codec's point-wise pass: low-rank part + coded residual, checked in the output dtype.

The value a decoder returns is ``L + R'`` rounded once to the output dtype, where ``L`` is the
low-rank reconstruction and ``R'`` the decoded residual (where ``L`` is zero, ``R'`` alone, so
a dense tile returns the residual coder's value untouched, -0.0 included). The encoder forms
exactly the same values with the same kernel, compares each with the input in the output
dtype, and stores every point that misses the bound (or NaN/Inf/-0.0 that is not bit-exact)
as an exact correction. Hence the bound holds whatever the factor coding did.
"""

from __future__ import annotations

import numpy as np

from ...jit import kernel, run_tasks
from ...stage import Stage
from ..coders.zstd import ZstdLossless
from .patches import decode_patches, encode_patches, violations


class HlrCorrections(Stage):
    """Stage: exact values for the points where low-rank part + residual misses the bound."""

    name = "hlr-corrections"


@kernel
def _combine(first, stop, low, resid, out, chunk):
    # one rounding to the output dtype per point; the chunks are independent, so the result
    # does not depend on the thread count
    n = out.shape[0]
    for c in range(first, stop):
        for i in range(c * chunk, min(n, (c + 1) * chunk)):
            if low[i] == 0.0:
                out[i] = resid[i]
            else:
                out[i] = low[i] + np.float64(resid[i])


def combine(low: np.ndarray, resid: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """The decoded values: flat ``L + R'`` in ``dtype`` (``R'`` alone where ``L`` is zero)."""
    out = np.empty(resid.size, dtype)
    chunk = 1 << 16
    low = np.ascontiguousarray(low, np.float64).reshape(-1)
    run_tasks(
        _combine, -(-out.size // chunk), low, np.ascontiguousarray(resid).reshape(-1), out, chunk, task_size=chunk
    )
    return out


def encode_corrections(original: np.ndarray, decoded: np.ndarray, eb: float) -> bytes | None:
    """Store the points of ``decoded`` that miss ``original`` (exact values) and apply them to
    ``decoded`` in place; None when every point already holds."""
    bad = violations(original, decoded, eb)
    if not bad.size:
        return None
    values = original.reshape(-1)[bad]
    decoded.reshape(-1)[bad] = values
    return encode_patches(bad, values, ZstdLossless())


def apply_corrections(section, decoded: np.ndarray) -> None:
    """Overwrite the corrected points of ``decoded`` (in place) with their exact values."""
    idx, values = decode_patches(section, decoded.dtype, decoded.size, ZstdLossless())
    decoded.reshape(-1)[idx] = values
