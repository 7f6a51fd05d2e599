"""Nonblocking compressed collectives: a worker thread and MPI generalized requests.

A compressed collective is a sequence of compute and messages, which MPI cannot progress
on its own; so each CompressedComm runs them, in call order, on one background thread and
its own duplicate communicator (ranks issue nonblocking collectives in the same order, so
the queues stay matched). The caller gets a real ``MPI.Grequest``, completed by the worker:
``Wait()``, ``Test()`` and ``MPI.Request.Waitall`` all work on it.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable

from mpi4py import MPI


class _Job:
    def __init__(self, work: Callable[[], None]):
        self.work = work
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.raise_in_query = True  # unless CompressedRequest.Wait reports the error itself
        self.greq = MPI.Grequest.Start(self._query, self._free, self._cancel)

    def run(self) -> None:
        try:
            self.work()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            self.error = exc
        finally:
            self.done.set()
            self.greq.Complete()

    def _query(self, status: MPI.Status) -> None:
        status.Set_source(MPI.ANY_SOURCE)
        status.Set_tag(MPI.ANY_TAG)
        status.Set_elements(MPI.BYTE, 0)
        status.Set_cancelled(False)
        if self.error is not None and self.raise_in_query:
            # Waitall/Testall: mpi4py turns this into MPI.Exception(ERR_OTHER) at the caller
            raise self.error

    def _free(self) -> None:
        pass

    def _cancel(self, completed: bool) -> None:
        pass  # a started collective cannot be cancelled; MPI then completes it normally


class CompressedRequest(MPI.Grequest):
    """The request of a nonblocking compressed collective. ``Wait()`` and ``Test()`` re-raise
    the collective's exception (the same on every rank) after completing the request."""

    _job: _Job

    def _finish(self, status: MPI.Status | None) -> None:
        job = self._job
        if job.error is not None:
            job.raise_in_query = False
            super().Wait(status)
            raise job.error
        super().Wait(status)

    def Wait(self, status: MPI.Status | None = None) -> bool:
        """Block until the collective is done; raise its error, if any."""
        self._job.done.wait()
        self._finish(status)
        return True

    def Test(self, status: MPI.Status | None = None) -> bool:
        """True (and the request freed) once the collective is done."""
        if not self._job.done.is_set():
            return False
        self._finish(status)
        return True


def _request(job: _Job) -> CompressedRequest:
    request = CompressedRequest(job.greq)
    request._job = job
    return request


class Worker:
    """One background thread per communicator; jobs run in submission order."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, work: Callable[[], None]) -> CompressedRequest:
        job = _Job(work)
        if MPI.Query_thread() != MPI.THREAD_MULTIPLE:
            job.run()  # no concurrent MPI calls allowed: complete it now (still correct)
            return _request(job)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="mpi_collectives-worker", daemon=True)
                self._thread.start()
        self._queue.put(job)
        return _request(job)

    def _loop(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            job.run()

    def stop(self) -> None:
        """Finish the queued jobs, then end the thread."""
        with self._lock:
            if self._thread is not None:
                self._queue.put(None)
                self._thread.join()
                self._thread = None
