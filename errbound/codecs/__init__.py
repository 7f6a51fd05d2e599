"""Codec implementations; importing this package registers them."""

from . import fz, raw, sz, zfp  # noqa: F401
