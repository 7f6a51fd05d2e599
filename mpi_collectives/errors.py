"""The exceptions mpi_collectives raises on purpose.

Every one is raised on *every* rank of the communicator at the same call, with the same
message, because it is decided from data that all ranks share (an allgather at
construction, the small agreements a compressed collective starts and ends with, a flag
that one rank sets in the others' memory); no rank is left waiting for a partner that gave
up (mpi_collectives.guard).
All derive from ``errbound.ErrboundError`` and ``ValueError``.
"""

from __future__ import annotations

from errbound import ErrboundError


class CollectiveError(ErrboundError, ValueError):
    """Base class: a compressed collective cannot run as called."""


class SettingsError(CollectiveError):
    """A CompressedComm setting is invalid (on at least one rank)."""


class SettingsMismatchError(SettingsError):
    """The ranks built their CompressedComm with different settings."""


class MismatchError(CollectiveError):
    """The ranks called one collective with different sizes, datatypes, operations or roots."""


class UnsupportedOperationError(CollectiveError):
    """A reduction operation that has no meaning for float data (bitwise, logical, *LOC, REPLACE)."""


class InvalidBufferError(CollectiveError):
    """A rank passed a buffer the collective cannot use (read-only receive buffer,
    non-contiguous memory): every rank raises it, naming that rank."""


class CollectiveFailedError(CollectiveError):
    """The compressed work failed on some rank (for instance MemoryError while decoding): every
    rank stopped and raises this, with the first failure's message."""
