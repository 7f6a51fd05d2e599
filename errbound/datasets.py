"""A built-in test field, so the demo and the tests need no downloads.

``demo_field`` synthesises a 3-D Gaussian random field with a Kolmogorov-like k^(-5/3)
energy spectrum (the statistics of inertial-range turbulence) plus a smooth large-scale
trend, deterministic for a given seed. It is synthetic; real fields live in ../shared/data.
"""

from __future__ import annotations

import numpy as np


def demo_field(shape: tuple[int, ...] = (64, 128, 128), seed: int = 0, dtype=np.float32) -> np.ndarray:
    """A smooth-but-turbulent field of the given shape (1-4 D), values roughly in [-3, 3]."""
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(shape)
    spectrum = np.fft.rfftn(noise)
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in shape[:-1]], np.fft.rfftfreq(shape[-1]), indexing="ij")
    k = np.sqrt(sum(f * f for f in freqs))
    k[(0,) * len(shape)] = 1.0
    # amplitude ~ k^(-(5/3 + d - 1)/2) gives an energy spectrum E(k) ~ k^(-5/3) in d dimensions
    spectrum *= k ** (-(5.0 / 3.0 + len(shape) - 1) / 2.0)
    spectrum[(0,) * len(shape)] = 0.0
    field = np.fft.irfftn(spectrum, s=shape, axes=tuple(range(len(shape))))
    field /= field.std()
    grids = np.meshgrid(*[np.linspace(0, 1, n) for n in shape], indexing="ij")
    field += 1.5 * np.sin(2 * np.pi * grids[0]) * np.cos(np.pi * grids[-1])
    return field.astype(dtype)
