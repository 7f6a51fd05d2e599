"""Codec implementations; importing this package registers them."""

from . import fz, raw, sperr, sz, zfp  # noqa: F401
