"""Codec implementations; importing this package registers them."""

from . import fz, hlr, raw, sperr, sz, zfp  # noqa: F401
