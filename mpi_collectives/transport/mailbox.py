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
blocking in MPI (see :mod:`.channel`), and checks for alarms from failed ranks meanwhile.

Everything on the channel's data communicator belongs to the running collective: each
compressed collective starts with an agreement that needs every rank, so no rank can send a
message of the next collective before all have finished this one, and ``ANY_SOURCE``/
``ANY_TAG`` probes are safe. For each (source, tag) messages are handed out in the order
they were sent (MPI's non-overtaking rule); algorithms give each step its own tag, and a
collective of several stages (in a node, then between nodes) takes each stage's messages by
tag, keeping early arrivals of a later stage for it. Sends and matches are counted per peer
on the channel, so that a failed collective can be drained (:meth:`.Channel.settle`).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator

import numpy as np
from mpi4py import MPI

from .channel import POLL_SLEEP, Channel

SPIN_POLLS = 3  # polls before a wait for a message sleeps (the pipelines compute in between)

Payload = bytes | np.ndarray
Handler = Callable[[int, int, np.ndarray], None]


def as_buffer(payload: Payload) -> np.ndarray:
    """A uint8 view of payload (no copy): every message travels as bytes."""
    if isinstance(payload, np.ndarray):
        return payload if payload.dtype == np.uint8 else payload.reshape(-1).view(np.uint8)
    return np.frombuffer(payload, np.uint8)


class Mailbox:
    """Nonblocking sends and in-order receives on a channel's data communicator."""

    def __init__(self, channel: Channel):
        self.channel = channel
        self.comm = channel.data
        self._sends: list[MPI.Request] = []
        self._queues: dict[tuple[int, int], deque[tuple[MPI.Request, np.ndarray]]] = {}
        self._probed: set[tuple[int, int]] = set()  # (source, tag) of messages taken by a probe
        self._status = MPI.Status()

    def send(self, payload: Payload, dest: int, tag: int, compressed: bool = False) -> None:
        """Start sending payload; the caller must not change it until close(). `compressed`:
        the payload is compressed data (counted, by whether dest shares this rank's node)."""
        buf = as_buffer(payload)
        if compressed:
            self.channel.count_compressed(dest, buf.nbytes)
        request = self.comm.Isend(buf, dest, tag)
        self._sends.append(request)
        self.channel.pending_sends.append((request, payload))
        self.channel.sent[dest] += 1

    def post(self, source: int, tag: int, target: np.ndarray) -> None:
        """Receive the next message from `source` with `tag` straight into target (contiguous,
        the message's size). Post every such receive of a collective before its first wait:
        messages on one (source, tag) then land in posting order, with no copy. ready() hands
        it out like any other message (with target's bytes)."""
        if (source, tag) in self._probed:
            raise RuntimeError(f"a receive from {source} with tag {tag} was posted after such a message was probed")
        view = target.reshape(-1).view(np.uint8)
        request = self.comm.Irecv(view, source, tag)
        self.channel.matched[source] += 1
        self.channel.posted.append((request, source))
        self._queues.setdefault((source, tag), deque()).append((request, view))

    def _match_arrived(self) -> None:
        status = self._status
        while True:
            message = self.comm.Improbe(MPI.ANY_SOURCE, MPI.ANY_TAG, status)
            if message is None:
                return  # (a message with a posted receive is never seen here)
            source = status.Get_source()
            self.channel.matched[source] += 1
            buf = np.empty(status.Get_count(MPI.BYTE), np.uint8)
            request = message.Irecv(buf)
            self.channel.pending_receives.append((request, buf))
            key = (source, status.Get_tag())
            self._probed.add(key)
            self._queues.setdefault(key, deque()).append((request, buf))

    def _reap_sends(self) -> None:
        if self._sends and MPI.Request.Testall(self._sends):
            self._sends.clear()

    def ready(self, accept: Callable[[int], bool] | None = None) -> tuple[int, int, np.ndarray] | None:
        """A fully received message (source, tag, bytes) whose tag `accept`s, or None; never blocks."""
        self._match_arrived()
        self._reap_sends()
        for key, queue in self._queues.items():
            if accept is not None and not accept(key[1]):
                continue
            request, buf = queue[0]
            if request.Test():
                queue.popleft()
                if not queue:
                    del self._queues[key]
                return key[0], key[1], buf
        return None

    def wait(self, accept: Callable[[int], bool] | None = None) -> tuple[int, int, np.ndarray]:
        """The next fully received message; polls, sleeping in between, and leaves with
        Abandoned when another rank has failed."""
        polls = 0
        while True:
            found = self.ready(accept)
            if found is not None:
                return found
            self.channel.check()
            polls += 1
            if polls > SPIN_POLLS:
                time.sleep(POLL_SLEEP)

    def receive(self, source: int, tag: int) -> np.ndarray:
        """The next message from `source` with `tag` (others stay queued)."""
        polls = 0
        while True:
            self._match_arrived()
            queue = self._queues.get((source, tag))
            if queue and queue[0][0].Test():
                _, buf = queue.popleft()
                if not queue:
                    del self._queues[(source, tag)]
                return buf
            self._reap_sends()
            self.channel.check()
            polls += 1
            if polls > SPIN_POLLS:
                time.sleep(POLL_SLEEP)

    def receive_into(self, source: int, tag: int, target: np.ndarray) -> None:
        """The next message from `source` with `tag`, received straight into target (contiguous;
        the message must have its size): no copy unless it had already arrived."""
        view = target.reshape(-1).view(np.uint8)
        queue = self._queues.get((source, tag))
        if queue:
            view[...] = self.receive(source, tag)
            return
        request = self.comm.Irecv(view, source, tag)
        self.channel.matched[source] += 1
        self.channel.posted.append((request, source))
        polls = 0
        while not request.Test():
            self._match_arrived()
            self._reap_sends()
            self.channel.check()
            polls += 1
            if polls > SPIN_POLLS:
                time.sleep(POLL_SLEEP)

    def close(self) -> None:
        """Wait for every send (the receives were all handed out)."""
        self.channel.wait(self._sends)
        self._sends.clear()


def drive(
    mailbox: Mailbox,
    work: Iterator[None],
    expected: int,
    handle: Handler,
    accept: Callable[[int], bool] | None = None,
    close: bool = True,
) -> None:
    """Run a pipelined stage: hand each of the `expected` incoming messages (tags that `accept`)
    to `handle` as soon as it is complete, and in between advance `work` (local compute that
    feeds the pipeline, one chunk per step). Incoming messages come first: others wait on
    what this rank forwards. Blocks only when there is nothing to compute."""
    received = 0
    working = True
    while received < expected or working:
        message = mailbox.ready(accept) if received < expected else None
        if message is None and working:
            working = next(work, StopIteration) is not StopIteration
            continue
        if message is None:
            message = mailbox.wait(accept)
        handle(*message)
        received += 1
    if close:
        mailbox.close()
