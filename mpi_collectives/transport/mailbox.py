"""Pipelined point-to-point traffic: nonblocking messages of any length, progressed by the
thread that computes.

A pipelined collective cuts its message into chunks and overlaps the compression of chunk
k+1 with the transfer of chunk k, and the transfer of the next chunk with the decoding of
this one. It does so on one thread per rank: sends are ``Isend``s, receives are matched
with ``Improbe`` and received with ``Imrecv`` into a buffer of the probed size, and the
thread runs compute (numba kernels, which release the GIL and use the rank's share of the
cores) between its calls into MPI. While it computes, the kernel's TCP buffers keep the link
busy (a chunk is 0.1-0.3 MB on the wire, well within them), and each MPI call between chunks
moves the next pieces. A rank with nothing to compute sleeps between polls rather than
blocking in MPI, because MPICH busy-polls while it blocks and so would take CPU from ranks
that share its cores (POLL_SLEEP). A communication thread blocking in MPI beside the
computing thread would busy-poll in the same way, on every rank, all the time.

Everything on the private communicator belongs to the running collective: each compressed
collective starts with an Allreduce that needs every rank, so no rank can send a message of
the next collective before all have finished this one, and ``ANY_SOURCE``/``ANY_TAG`` probes
are safe. For each (source, tag) messages are handed out in the order they were sent (MPI's
non-overtaking rule); collectives give each step of their algorithm its own tag.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np
from mpi4py import MPI

# A rank with nothing to compute sleeps this long between polls instead of blocking in MPI:
# MPICH busy-polls while it blocks, and where ranks share cores (4 ranks on 2 on the bed)
# that takes the CPU from the ranks that compress. Measured, 4 ranks, 64 MiB: Allreduce
# 897 -> 676 ms and 293 -> 260 ms of CPU per rank. A chunk is ~1 ms of work, so ~0.1 ms
# of added latency per wait is cheap; the kernel's socket buffers carry the data meanwhile.
POLL_SLEEP = 5e-5
Payload = bytes | np.ndarray
Handler = Callable[[int, int, np.ndarray], None]


def as_buffer(payload: Payload) -> np.ndarray:
    """A uint8 view of payload (no copy)."""
    return payload if isinstance(payload, np.ndarray) else np.frombuffer(payload, np.uint8)


class Mailbox:
    """Nonblocking sends and in-order receives on one communicator."""

    def __init__(self, comm: MPI.Intracomm):
        self.comm = comm
        self._sends: list[MPI.Request] = []
        self._send_payloads: list[Payload] = []  # alive until their Isend completes
        self._queues: dict[tuple[int, int], deque[tuple[MPI.Request, np.ndarray]]] = {}
        self._status = MPI.Status()

    def send(self, payload: Payload, dest: int, tag: int) -> None:
        """Start sending payload; the caller must not change it until close()."""
        self._sends.append(self.comm.Isend(as_buffer(payload), dest, tag))
        self._send_payloads.append(payload)

    def _receive(self, message: MPI.Message) -> None:
        status = self._status
        buf = np.empty(status.Get_count(MPI.BYTE), np.uint8)
        key = (status.Get_source(), status.Get_tag())
        self._queues.setdefault(key, deque()).append((message.Irecv(buf), buf))

    def _match_arrived(self) -> None:
        while True:
            message = self.comm.Improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, self._status)
            if message is None:
                return
            self._receive(message)

    def _reap_sends(self) -> None:
        if self._sends and MPI.Request.Testall(self._sends):
            self._sends.clear()
            self._send_payloads.clear()

    def ready(self) -> tuple[int, int, np.ndarray] | None:
        """A fully received message (source, tag, bytes), or None; never blocks."""
        self._match_arrived()
        self._reap_sends()
        for key, queue in self._queues.items():
            request, buf = queue[0]
            if request.Test():
                queue.popleft()
                if not queue:
                    del self._queues[key]
                return key[0], key[1], buf
        return None

    def wait(self) -> tuple[int, int, np.ndarray]:
        """The next fully received message; polls, sleeping in between (see POLL_SLEEP)."""
        while True:
            found = self.ready()
            if found is not None:
                return found
            time.sleep(POLL_SLEEP)

    def close(self) -> None:
        """Wait for every send (the receives were all handed out)."""
        while self._sends and not MPI.Request.Testall(self._sends):
            time.sleep(POLL_SLEEP)
        self._sends.clear()
        self._send_payloads.clear()


def drive(mailbox: Mailbox, work: Iterator[None], expected: int, handle: Handler) -> None:
    """Run a pipelined collective: hand each of the `expected` incoming messages to `handle`
    as soon as it is complete, and in between advance `work` (local compute that feeds the
    pipeline, one chunk per step). Incoming messages come first: others wait on what this
    rank forwards. Blocks only when there is nothing to compute."""
    received = 0
    working = True
    try:
        while received < expected or working:
            message = mailbox.ready() if received < expected else None
            if message is None and working:
                working = next(work, StopIteration) is not StopIteration
                continue
            if message is None:
                message = mailbox.wait()
            handle(*message)
            received += 1
    finally:
        mailbox.close()
