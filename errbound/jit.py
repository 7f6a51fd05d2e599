"""How errbound compiles its kernels: numba's options, and its threads.

- Every kernel is ``@kernel`` (numba's ``njit`` with ``cache=True``, ``nogil=True``, never
  fastmath). Kernels compile on first use, per signature, and the result is cached on disk;
  where the cache lives, how processes share it and what a first use says are
  ``errbound.compiling``'s.
- Kernels are serial; parallel work is split into independent tasks that run on a pool of
  Python threads (``run_tasks``). numba's own ``parallel=True`` costs 1.4 s of compile time
  per kernel, and its ``workqueue`` threading layer (the fallback where neither OpenMP nor
  TBB is available) aborts the process when two threads run parallel kernels at once.
- In a hot loop, an index that cannot be negative is written ``a[np.uint64(i)]``: numba
  tests every signed index for Python's wrap-around and an unsigned one not (the
  interpolation decoder spent a third of its time on those tests). Only where the index
  is in range by construction: numba does not check bounds either way.
"""

from __future__ import annotations

import concurrent.futures
import os
import threading

import numba

from .compiling import compiled_once_per_cache, numba_cache

# --------------------------------------------------------------------------- kernels


def kernel(fn=None, *, inline: str = "never", internal: bool = False):
    """``numba.njit`` with errbound's options: cached (where any folder is writable),
    ``nogil``, no fastmath, serial (parallel work goes through :func:`run_tasks`).
    ``internal``: called only from other kernels, so no Python entry point is generated
    (about 15 ms less of a cold start per function)."""

    def decorate(f):
        return compiled_once_per_cache(
            numba.njit(cache=numba_cache(), nogil=True, inline=inline, no_cpython_wrapper=internal)(f)
        )

    return decorate if fn is None else decorate(fn)


# --------------------------------------------------------------------------- parallel work

_pool = None
_pool_lock = threading.Lock()


def threads() -> int:
    """Threads errbound's kernels use in this thread (numba's setting: ``numba.set_num_threads``,
    ``NUMBA_NUM_THREADS``), so the collectives' per-rank share and benchmarks' pins apply."""
    return numba.get_num_threads()


def _executor():
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = concurrent.futures.ThreadPoolExecutor(
                max_workers=max(1, numba.config.NUMBA_NUM_THREADS - 1), thread_name_prefix="errbound"
            )
        return _pool


# a thread hand-off costs ~10-30 us; below this many values per thread one thread is faster
MIN_VALUES_PER_THREAD = 1 << 16


def run_tasks(task_kernel, ntasks: int, *args, task_size: int = 1) -> None:
    """``task_kernel(first, stop, *args)`` over the tasks ``[0, ntasks)`` of about ``task_size``
    values each, split into contiguous spans over :func:`threads` threads (the calling
    thread takes the first span; each thread gets at least MIN_VALUES_PER_THREAD values, so
    small work runs inline with no hand-off at all). Tasks must be independent, so results
    do not depend on the thread count.

    errbound runs its parallel work this way rather than with numba's ``prange``: a
    ``parallel=True`` kernel took 1.4 s more to compile than the same serial kernel (2.3 s
    against 0.9 s, measured), the tasks run on plain Python threads (serial ``nogil``
    kernels are safe there whatever numba's threading layer), and a small chunk pays no
    parallel launch."""
    count = min(_usable_threads(), ntasks, ntasks * max(task_size, 1) // MIN_VALUES_PER_THREAD)
    if count <= 1:
        task_kernel(0, ntasks, *args)
        return
    cuts = [ntasks * i // count for i in range(count + 1)]
    _run_spans([(task_kernel, (cuts[i], cuts[i + 1], *args)) for i in range(count)])


def parallel_map(fn, items) -> list:
    """``[fn(item) for item in items]`` on errbound's threads (fn releases the GIL), at most
    :func:`threads` at a time."""
    items = list(items)
    count = min(_usable_threads(), len(items))
    if count <= 1:
        return [fn(item) for item in items]
    results: list = [None] * len(items)

    def span(first: int, stop: int) -> None:
        for i in range(first, stop):
            results[i] = fn(items[i])

    cuts = [len(items) * i // count for i in range(count + 1)]
    _run_spans([(span, (cuts[i], cuts[i + 1])) for i in range(count)])
    return results


def _usable_threads() -> int:
    """threads(), or 1 on a pool thread: work started from inside a task runs inline (the
    pool's threads are all busy with the outer spans; waiting on them would deadlock)."""
    if threading.current_thread().name.startswith("errbound"):
        return 1
    return threads()


class _Crew:
    """Threads that take one span each from _run_spans, handed over with a pair of locks per
    thread: ~10 us a hand-off against ~40 us through the pool's futures (measured here), which
    is most of what 2 threads gain on a 1 MiB chunk. One caller at a time; a second one
    meanwhile goes to the pool."""

    def __init__(self):
        self._busy = threading.Lock()
        self._members: list[list] = []  # [go lock, done lock, span, error] per thread

    def run(self, spans: list) -> bool:
        if not self._busy.acquire(blocking=False):
            return False
        try:
            while len(self._members) < len(spans) - 1:
                self._hire()
            members = self._members[: len(spans) - 1]
            released = waited = 0
            try:
                try:
                    for member, span in zip(members, spans[1:], strict=True):
                        member[2], member[3] = span, None
                        member[0].release()
                        released += 1
                    fn, args = spans[0]
                    fn(*args)
                finally:  # every span has finished before this returns or raises
                    for member in members[:released]:
                        member[1].acquire()
                        waited += 1
            except BaseException:
                if waited < len(members):
                    # interrupted (Ctrl-C) while handing over or waiting: some member may still
                    # run, or owe a "done" that a later run would take for its own. Retire the
                    # whole crew; its threads finish their spans and then idle.
                    self._members = []
                raise
            errors = [member[3] for member in members if member[3] is not None]
            for member in members:
                member[3] = None  # the exception (and the arrays its traceback holds) goes now
            if errors:
                raise errors[0]
            return True
        finally:
            self._busy.release()

    def _hire(self) -> None:
        go, done = threading.Lock(), threading.Lock()
        go.acquire()
        done.acquire()
        member = [go, done, None, None]

        def work() -> None:
            while True:
                go.acquire()
                try:
                    fn, args = member[2]
                    fn(*args)
                except BaseException as exc:  # noqa: BLE001 - handed to the caller, raised there
                    member[3] = exc
                member[2] = None
                done.release()

        threading.Thread(target=work, name=f"errbound-crew-{len(self._members)}", daemon=True).start()
        self._members.append(member)


_crew = _Crew()


def _after_fork_in_child() -> None:
    """A forked child has none of the parent's threads: start with a new crew and pool (the
    old ones would take spans that no thread ever runs)."""
    global _crew, _pool, _pool_lock
    _crew, _pool, _pool_lock = _Crew(), None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _run_spans(spans: list) -> None:
    """Run (fn, args) spans: the first in this thread, the rest on the crew, or on the pool
    while another thread has the crew. Every span has finished (or failed) before this
    returns or raises: a span still running after an error would go on writing into the
    caller's buffers."""
    if _crew.run(spans):
        return
    pool = _executor()
    futures = [pool.submit(fn, *args) for fn, args in spans[1:]]
    try:
        fn, args = spans[0]
        fn(*args)
    finally:
        concurrent.futures.wait(futures)
    for future in futures:
        future.result()  # the first failure of a pool span, if any
