"""The exceptions mpi_collectives raises on purpose.

Every one is raised on *every* rank of the communicator at the same call, because it is
decided from data that all ranks share (an allgather at construction, a small Allreduce
per compressed collective); no rank is left waiting for a partner that gave up.
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
