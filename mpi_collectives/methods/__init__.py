"""CompressedComm's uppercase collectives, by kind: each reads mpi4py's arguments, decides
whether its message can be compressed and hands it to the policy and the guard."""

from .movement import MovementMethods
from .reductions import ReductionMethods

__all__ = ["MovementMethods", "ReductionMethods"]
