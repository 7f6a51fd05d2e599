"""Codec implementations; importing this package registers them."""

from . import raw, sz, zfp  # noqa: F401
