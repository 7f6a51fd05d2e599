"""Compressed MPI collectives for mpi4py (see the project README); built on errbound's public API."""
