"""Every exception errbound raises on purpose.

All derive from :class:`ErrboundError`, so ``except errbound.ErrboundError`` catches
anything the library reports. The ones caused by bad arguments also derive from
``ValueError`` (or ``TypeError``) so code written against numpy conventions keeps working.
"""

from __future__ import annotations


class ErrboundError(Exception):
    """Base class of all errbound errors."""


class BoundError(ErrboundError, ValueError):
    """The error bound is missing, ambiguous, not a positive finite number, or unreachable."""


class UnsupportedInputError(ErrboundError, ValueError):
    """The array cannot be compressed: wrong dtype, too many dimensions, not an array."""


class UnknownCodecError(ErrboundError, ValueError):
    """No codec is registered under the requested name."""


class CodecOptionError(ErrboundError, ValueError):
    """A codec was given an option it does not have, or an invalid value for one."""


class CorruptStreamError(ErrboundError, ValueError):
    """A compressed stream is truncated, damaged, or not an errbound stream at all."""


class OutputLimitError(ErrboundError, ValueError):
    """A stream declares a larger array than the caller allows (``max_bytes``, ``out=``) or than
    memory holds: refused before it is decoded."""


class UnsupportedStreamError(CorruptStreamError):
    """A valid-looking stream written by a newer format or an unknown codec/stage version."""
