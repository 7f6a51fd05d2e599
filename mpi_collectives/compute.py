"""The compute sections of compressed collectives: one at a time per process, sized threads.

errbound's kernels are serial; errbound splits large work into independent tasks that run
on its own pool of Python threads (``errbound.jit.run_tasks``), as many as
``numba.get_num_threads()`` says in the calling thread. This package's one parallel kernel
(the reciprocal-grid decode, :mod:`.reduction.grid`) is numba-parallel. Every compute call
is wrapped, for two reasons:

* the nonblocking worker computes beside the main thread, and numba's workqueue threading
  layer (the fallback without OpenMP or TBB) aborts the process when two threads run
  parallel kernels at once; and two threads computing at once would each take the rank's
  whole share of the cores: hence one lock per process;
* MPI jobs usually start one rank per core, and each rank would otherwise use every core
  of the node (errbound's task threads, numba's OpenMP threads): oversubscribed threads
  spin and can slow a run tenfold (measured: 45 s against 4.5 s for examples/heat_mpi.py,
  4 ranks on 2 cores). Each rank therefore sets numba's thread count, which errbound's task
  pool follows, to its share of the cores of its node, and the caller's own setting is
  restored afterwards.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numba

_LOCK = threading.RLock()
_threads: int | None = None
_depth = threading.local()  # nested compute(): the outermost one sets the threads


def configure(ranks_on_this_node: int) -> None:
    """Give each rank an equal share of this node's cores (at least one thread)."""
    global _threads
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    _threads = max(1, min(cores // max(ranks_on_this_node, 1), numba.config.NUMBA_NUM_THREADS))


def threads_per_rank() -> int:
    """The numba threads each rank computes with (1 before configure())."""
    return _threads or 1


@contextmanager
def compute(threads: int | None = None) -> Iterator[None]:
    """Hold the process-wide compute lock, with this rank's thread share (or `threads`)."""
    with _LOCK:
        wanted = threads or _threads
        nested = getattr(_depth, "n", 0)
        if wanted is None or nested:
            _depth.n = nested + 1
            try:
                yield
            finally:
                _depth.n = nested
            return
        previous = numba.get_num_threads()
        numba.set_num_threads(min(wanted, numba.config.NUMBA_NUM_THREADS))
        _depth.n = 1
        try:
            yield
        finally:
            _depth.n = 0
            numba.set_num_threads(previous)
