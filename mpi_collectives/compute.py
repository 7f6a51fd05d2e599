"""The compute sections of compressed collectives: one at a time per process, sized threads.

errbound's kernels are numba-parallel. Two reasons to wrap every call:

* numba's default threading layer must not run parallel kernels from two Python threads at
  once, and the nonblocking worker computes beside the main thread: hence one lock;
* MPI jobs usually start one rank per core, and each rank's numba would start a thread per
  core too; oversubscribed OpenMP threads spin and can slow a run tenfold (measured: 45 s
  against 4.5 s for examples/heat_mpi.py, 4 ranks on 2 cores). Each rank therefore uses its
  share of the cores of its node, and the caller's own numba setting is restored afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numba

_LOCK = threading.Lock()
_threads: int | None = None


def configure(ranks_on_this_node: int) -> None:
    """Give each rank an equal share of this node's cores (at least one thread)."""
    global _threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    _threads = max(1, min(cores // max(ranks_on_this_node, 1), numba.config.NUMBA_NUM_THREADS))


@contextmanager
def compute() -> Iterator[None]:
    """Hold the process-wide compute lock, with this rank's thread share."""
    with _LOCK:
        if _threads is None:
            yield
            return
        previous = numba.get_num_threads()
        numba.set_num_threads(_threads)
        try:
            yield
        finally:
            numba.set_num_threads(previous)
