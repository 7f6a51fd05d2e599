"""The private communicators a compressed collective talks on, and what keeps one rank's
failure from leaving the others waiting.

A channel holds two duplicates of the user's communicator: ``data`` carries the algorithms'
point-to-point messages (and nothing else: no collective ever runs on it), ``control`` the
small agreements every compressed collective starts and ends with, and the alarms.

* Every wait polls (``wait``): a short spin, then sleeps between tests, because MPICH
  busy-polls inside blocking calls and takes the CPU from ranks that compress. While an
  algorithm waits it also checks for alarms.
* An exception inside one rank's compressed work sends an alarm to every other rank;
  a rank that sees one leaves its work (``Abandoned``). Every rank then ends the collective
  with the same agreement, which says that it failed, and ``settle`` drains what is left
  on ``data`` (the receivers take every message sent to them, counted per peer, so no send
  is left pending: MPICH over TCP cannot finalize with an unreceived large message) before
  every rank raises the same error. The channel is clean again afterwards.
* The main thread's channel also has a one-sided window (``Window``) where each rank
  publishes which collective it is in and how it was called; a rank that waits too long in
  a start agreement reads it to tell a late rank from one that took the plain path.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable, Sequence

import numpy as np
from mpi4py import MPI

# A rank with nothing to compute sleeps this long between polls instead of blocking in MPI:
# MPICH busy-polls while it blocks, and where ranks share cores (4 ranks on 2 on the bed)
# that takes the CPU from the ranks that compress. Measured, 4 ranks, 64 MiB: Allreduce
# 897 -> 676 ms and 293 -> 260 ms of CPU per rank.
POLL_SLEEP = 5e-5
# ... but the first few polls spin: a small agreement completes in microseconds, and one
# sleep would make it many times slower (measured, 2 ranks on one node: 2.7 us blocking,
# 209 us with a sleep per test). Only a few: a rank that spins while its neighbours still
# compute takes their CPU where ranks share cores.
SPIN_POLLS = 20

TAG_ALARM = 7
SCRATCH_LIMIT = 512 << 20  # larger work arrays are not kept between calls


class Abandoned(Exception):
    """Another rank failed; this rank leaves the collective's work (never seen by users)."""


def wait_until(done: Callable[[], bool], check: Callable[[], None] | None = None, idle=None) -> None:
    """Poll done() until it is true: spin SPIN_POLLS times, then sleep POLL_SLEEP between polls.
    check() runs before every poll (it may raise Abandoned); idle(seconds waited) while sleeping."""
    polls = 0
    start = 0.0
    while not done():
        if check is not None:
            check()
        polls += 1
        if polls < SPIN_POLLS:
            continue
        if idle is not None:
            if not start:
                start = time.perf_counter()
            idle(time.perf_counter() - start)
        time.sleep(POLL_SLEEP)


class Channel:
    """The duplicates one thread's compressed collectives use, with per-peer message counts."""

    def __init__(self, parent: MPI.Intracomm, window: bool = False):
        self.data = MPI.Intracomm(MPI.Intracomm.Dup(parent))
        self.control = MPI.Intracomm(MPI.Intracomm.Dup(parent))
        self.rank, self.size = parent.Get_rank(), parent.Get_size()
        self.sent = np.zeros(self.size, np.int64)  # messages sent on data, per destination
        self.matched = np.zeros(self.size, np.int64)  # messages matched on data, per source
        self.pending_sends: list[tuple[MPI.Request, object]] = []  # with the buffers they read
        self.pending_receives: list[tuple[MPI.Request, np.ndarray]] = []
        self.posted: list[tuple[MPI.Request, int]] = []  # receives posted for a given source
        self.alarms_sent = np.zeros(self.size, np.int64)
        self.alarm_requests: list[tuple[MPI.Request, bytes]] = []
        self.window = Window(self.control) if window else None
        self._status = MPI.Status()
        self._scratch: dict[str, np.ndarray] = {}
        self.orphans: list[tuple[MPI.Request, np.ndarray]] = []  # agreements left open (straddles)
        self.node_of: tuple[int, ...] | None = None  # each rank's node (set by the communicator)
        self.stats = None

    def count_compressed(self, dest: int, nbytes: int) -> None:
        """Compressed bytes sent to `dest`: those to a rank of this rank's node are counted apart
        (the two-level algorithms never send any)."""
        if self.stats is not None and self.node_of is not None and self.node_of[dest] == self.node_of[self.rank]:
            self.stats.add(in_node=nbytes)

    def scratch(self, name: str, count: int, dtype) -> np.ndarray:
        """A work array kept from call to call (a fresh one costs page faults on first touch:
        measured 10 ms per 64 MiB). Valid until the next scratch() of the same name; never
        read by a message still in flight once the collective that used it has returned."""
        dtype = np.dtype(dtype)
        nbytes = count * dtype.itemsize
        if nbytes > SCRATCH_LIMIT:
            return np.empty(count, dtype)
        found = self._scratch.get(name)
        if found is None or found.nbytes < nbytes:
            found = self._scratch[name] = np.empty(nbytes, np.uint8)
        return found[:nbytes].view(dtype)

    # -- alarms --------------------------------------------------------------------------------

    def check(self) -> None:
        """Raise Abandoned if another rank has sent an alarm."""
        if self.control.Iprobe(MPI.ANY_SOURCE, TAG_ALARM):
            raise Abandoned

    def alarm(self, text: str) -> None:
        """Tell every other rank that this one failed (they stop waiting for it)."""
        payload = text.encode("utf-8", "replace")[:4000]
        for rank in range(self.size):
            if rank != self.rank:
                buf = np.frombuffer(payload, np.uint8)
                self.alarm_requests.append((self.control.Isend(buf, rank, TAG_ALARM), payload))
                self.alarms_sent[rank] += 1

    # -- agreements ----------------------------------------------------------------------------

    def allreduce_max(self, vec: np.ndarray, idle=None) -> np.ndarray:
        """MAX of a small float64 vector over all ranks, on the control communicator (polled:
        ranks that arrive early do not spin in MPI). If idle() raises, the agreement stays
        open (an orphan, completed when the missing ranks join it)."""
        self._reap_orphans()
        request = self.control.Iallreduce(MPI.IN_PLACE, vec, MPI.MAX)
        try:
            wait_until(request.Test, idle=idle)
        except BaseException:
            self.orphans.append((request, vec))
            raise
        return vec

    def _reap_orphans(self) -> None:
        self.orphans = [(r, v) for r, v in self.orphans if not r.Test()]

    def wait(self, requests: Sequence[MPI.Request]) -> None:
        """Complete requests of an algorithm on data, leaving for Abandoned on an alarm."""
        wait_until(lambda: MPI.Request.Testall(list(requests)), self.check)

    # -- after a failure -----------------------------------------------------------------------

    def settle(self, own_error: str | None) -> str:
        """Every rank, after an end agreement that reported a failure: receive whatever was sent
        to this rank and never received, complete this rank's sends, and return the error of
        the lowest failing rank (the same text on every rank)."""
        counts = np.stack([self.sent, self.alarms_sent], axis=1).astype(np.int64)
        incoming = np.empty_like(counts)
        self.control.Alltoall(counts, incoming)
        for request, _ in self.pending_receives:
            request.Wait()  # matched already: its message is on its way
        self.pending_receives.clear()
        for request, source in self.posted:
            if not request.Test():  # its sender may never send it: cancel, unless it matched meanwhile
                request.Cancel()
                status = MPI.Status()
                request.Wait(status)
                if status.Is_cancelled():
                    self.matched[source] -= 1
        self.posted.clear()
        for source in range(self.size):
            for _ in range(int(incoming[source, 0] - self.matched[source])):
                _receive_and_drop(self.data, source, MPI.ANY_TAG)
        texts = {}
        for source in range(self.size):
            for _ in range(int(incoming[source, 1])):
                status = MPI.Status()
                message = self.control.Mprobe(source, TAG_ALARM, status)
                buf = np.empty(status.Get_count(MPI.BYTE), np.uint8)
                message.Recv(buf)
                texts[source] = buf.tobytes().decode("utf-8", "replace")
        MPI.Request.Waitall([r for r, _ in self.pending_sends] + [r for r, _ in self.alarm_requests])
        self.pending_sends.clear()
        self.alarm_requests.clear()
        self.sent[:] = self.matched[:] = self.alarms_sent[:] = 0
        failing = sorted(set(texts) | ({self.rank} if own_error is not None else set()))
        first = failing[0] if failing else None
        if first is None:
            return "a rank failed"
        return own_error if first == self.rank else texts[first]

    def reset_counts(self) -> None:
        """After a collective that completed everywhere: every message was received."""
        self.sent[:] = 0
        self.matched[:] = 0
        self.pending_sends.clear()
        self.pending_receives.clear()
        self.posted.clear()

    def free(self) -> None:
        if self.window is not None:
            self.window.free()
        self.data.Free()
        self.control.Free()


def _receive_and_drop(comm: MPI.Intracomm, source: int, tag: int) -> None:
    status = MPI.Status()
    message = comm.Mprobe(source, tag, status)
    try:
        buf = np.empty(status.Get_count(MPI.BYTE), np.uint8)
    except MemoryError:  # memory is what failed: let MPI truncate the message into one byte
        buf = np.empty(1, np.uint8)
        try:
            message.Recv(buf)
        except MPI.Exception:
            pass
        return
    message.Recv(buf)


# ---------------------------------------------------------------------------------------------
# Where each rank is: published in a one-sided window, read by ranks that wait too long.

PLAIN, COMPRESSED = 1, 2
_FIELDS = 8  # seq, path, kind, count, itemsize, op, root, spare
# the last calls: a rank may have moved on by the time another reads (with 4, a Bcast root
# that went on through 4 more small Bcasts left its record of the straddled one overwritten,
# and the receivers waited for it forever); 4 KiB per rank
_SLOTS = 64
# flag words first: a doorbell (nonzero: some flag arrived), then one slot of seq, kind,
# detail, spare per source rank: several ranks flag one target (two refused buffers, a
# straddle beside a refused buffer), and with one shared slot the last writer's kind won
# beside another's detail, or a clear on the target tore a flag in two
_SLOT_WORDS = 4
FLAG_STRADDLE, FLAG_BUFFER = 1, 2


_LIVE: dict[int, Window] = {}  # windows not freed yet, in creation order (the same on every rank)


def _free_at_exit() -> None:
    """Free the windows of communicators the program never freed, before mpi4py finalizes MPI
    (an unfreed window makes MPICH's UCX layer print warnings at exit). Collective, in the
    order the windows were made, which is the same on every rank."""
    if MPI.Is_initialized() and not MPI.Is_finalized():
        for window in list(_LIVE.values()):
            window.free()


class Window:
    """A few int64 words per rank: flags that other ranks set, then this rank's last calls.

    Records are written so that a reader never takes a half-written one for a whole one: the
    sequence number is written last (a record being written has -1 there), with
    ``Win_sync`` between the steps, and a reader takes a call record only where two reads one
    after the other agree (a record rewritten between or during them differs in one of them).
    A flag's words are put first and its sequence number after them, in a second put that
    starts only once the first has completed at the target; the target synchronizes its copy
    of the window before it reads the flag's words."""

    def __init__(self, comm: MPI.Intracomm):
        self.comm = comm
        self.size = comm.Get_size()
        self.rank = comm.Get_rank()
        self.records_at = 1 + _SLOT_WORDS * self.size
        words = self.records_at + _SLOTS * _FIELDS
        self.win = MPI.Win.Allocate(8 * words, 8, comm=comm)
        self.mem = np.frombuffer(self.win.tomemory(), np.int64)
        self.mem[:] = 0
        self.mem[self.records_at :: _FIELDS] = -1  # no call yet
        self.taken = [0] * self.size  # per source rank, the last flag's seq taken
        comm.Barrier()  # every rank's words are initialised before anyone reads them
        self.win.Lock_all(MPI.MODE_NOCHECK)
        if not _LIVE:
            atexit.register(_free_at_exit)  # runs before mpi4py's finalizer (a C-level exit hook)
        _LIVE[id(self)] = self

    def publish(self, seq: int, path: int, kind: int, count: int, itemsize: int, op: int, root: int) -> None:
        """This rank's call number seq: which path, which collective, how it was called."""
        at = self.records_at + (seq % _SLOTS) * _FIELDS
        mem, sync = self.mem, self.win.Sync
        mem[at] = -1  # being written
        sync()
        mem[at + 1 : at + 7] = (path, kind, count, itemsize, op, root)
        sync()
        mem[at] = seq
        sync()

    def take_flags(self, limit: int) -> list[tuple[int, int, int, int]]:
        """The flags other ranks set here for calls up to number ``limit`` and not taken
        before, as (seq, kind, detail, source rank), lowest source first; flags for later
        calls stay for their calls. The doorbell is cleared before the slots are read, so a
        flag that arrives meanwhile rings it again."""
        mem = self.mem
        mem[0] = 0
        self.win.Sync()
        found, later = [], False
        for source in range(self.size):
            at = 1 + _SLOT_WORDS * source
            seq = int(mem[at])
            if seq <= self.taken[source]:
                continue
            if seq > limit:
                later = True
                continue
            kind, detail = int(mem[at + 1]), int(mem[at + 2])  # put before seq, completed first
            self.taken[source] = seq
            found.append((seq, kind, detail, source))
        if later:
            mem[0] = 1
        return found

    def _get(self, rank: int) -> np.ndarray:
        words = np.empty(_SLOTS * _FIELDS, np.int64)
        self.win.Get([words, MPI.INT64_T], rank, target=(self.records_at, _SLOTS * _FIELDS, MPI.INT64_T))
        self.win.Flush(rank)
        return words.reshape(_SLOTS, _FIELDS)

    def read(self, rank: int) -> list[tuple[int, ...]]:
        """The calls `rank` published (one-sided: it need not take part). A record that was
        being written while it was read is left out (the caller reads again later)."""
        first, second = self._get(rank), self._get(rank)
        return [
            tuple(int(v) for v in a[:7])
            for a, b in zip(first, second, strict=True)
            if a[0] >= 0 and np.array_equal(a[:7], b[:7])
        ]

    def call_of(self, rank: int, seq: int) -> tuple[tuple[int, ...] | None, bool]:
        """(what `rank` published for its call number seq, or None; whether it is past that
        call with the record no longer kept: it returned from it)."""
        records = self.read(rank)
        found = [s for s in records if s[0] == seq]
        if found:
            return found[0], False
        return None, bool(records) and min(s[0] for s in records) > seq

    def own(self, seq: int) -> tuple[int, ...] | None:
        """What this rank published for its call number seq, if it is still kept."""
        at = self.records_at + (seq % _SLOTS) * _FIELDS
        found = tuple(int(v) for v in self.mem[at : at + 7])
        return found if found[0] == seq else None

    def set_flag(self, rank: int, seq: int, kind: int, detail: int) -> None:
        """Set this rank's flag slot in rank's window (one-sided), completed at the target
        before this returns: the kind and detail first, the sequence number once they have
        arrived, then the doorbell."""
        at = 1 + _SLOT_WORDS * self.rank
        self.win.Put([np.array([kind, detail], np.int64), MPI.INT64_T], rank, target=(at + 1, 2, MPI.INT64_T))
        self.win.Flush(rank)
        self.win.Put([np.array([seq], np.int64), MPI.INT64_T], rank, target=(at, 1, MPI.INT64_T))
        self.win.Flush(rank)
        self.win.Put([np.array([1], np.int64), MPI.INT64_T], rank, target=(0, 1, MPI.INT64_T))
        self.win.Flush(rank)

    def free(self) -> None:
        if _LIVE.pop(id(self), None) is None:
            return
        self.win.Unlock_all()
        self.win.Free()
