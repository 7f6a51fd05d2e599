"""Every collective of a CompressedComm either completes on every rank or raises the same
error on every rank, within seconds; none leaves the other ranks waiting.

A compressed collective runs as:

1. a *start agreement* (one small Allreduce on the channel's control communicator) of the
   call's signature: which collective, count, datatype size, op, root, which path this rank
   took, a buffer problem on this rank, and the values the bound needs (``rel``'s range).
   Different signatures raise :class:`MismatchError`, a problem :class:`InvalidBufferError`,
   on every rank, before any data moves;
2. the work; an exception on one rank sends an alarm, and the others stop waiting for it;
3. an *end agreement*: whether any rank failed (then every rank drains the channel and
   raises :class:`CollectiveFailedError` with the first failure's message) and, for
   ``adapt``, the slowest rank's time and traffic.

A plain call (plain MPI on the user's communicator) cannot take part in an agreement
without costing every small message a round trip, so two other things cover it:

* *straddling ranks*: if one rank's message is under ``min_bytes`` (plain MPI) and another's
  over (compressed), the compressed rank waits in its start agreement. After
  ``PEEK_AFTER`` seconds it reads, one-sided, what every rank published about its current
  call (:class:`.transport.channel.Window`): a rank still busy elsewhere is only late; one
  that is inside the same call on the plain path is straddling. The compressed ranks then
  set a flag in the plain ranks' windows, complete their plain call with a scratch message
  of the plain ranks' signature, and the plain ranks, finding the flag when their call
  returns, join the start agreement, which fails on every rank with the same message.
  A rank whose message is as large but not compressible (another datatype, a form
  errbound does not read) publishes its MPI signature too, and is completed the same way;
  every rank then raises a MismatchError that says so;
* *a buffer that mpi4py refuses* (read-only or non-contiguous) on one rank of a plain call:
  that rank sets the flag on every other rank, completes the collective with a scratch
  buffer of the same signature, and every rank raises the same :class:`InvalidBufferError`.

  Where several ranks refuse, every rank names the lowest of them.

A communicator that never compresses (one node, ``adapt=True``) runs mpi4py's own blocking
methods (:meth:`Guard.checked_plain`): nothing is published or agreed, and a call costs one
test of the flag after it returns (a load from memory) besides mpi4py's own work; the rescue
of a refused buffer works as above. Its nonblocking calls are mpi4py's own, unwrapped: a
refused buffer raises on its rank only, as with plain MPI.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
from mpi4py import MPI

from .errors import CollectiveFailedError, InvalidBufferError, MismatchError, UnsupportedOperationError
from .rescue import stand_in
from .settings import INVALID, op_name
from .transport.channel import COMPRESSED, FLAG_BUFFER, FLAG_STRADDLE, PLAIN, Abandoned, Channel

# collectives, as they travel in agreements and windows
KINDS = {
    "Allreduce": 1,
    "Reduce": 2,
    "Reduce_scatter_block": 3,
    "Bcast": 4,
    "Gather": 5,
    "Scatter": 6,
    "Allgather": 7,
    "Alltoall": 8,
}
NAMES = {v: k for k, v in KINDS.items()}

# buffer problems on one rank
READ_ONLY, NOT_CONTIGUOUS, UNUSABLE, LOCAL_FAILURE, ALIASED, BAD_ROOT = 1, 2, 3, 4, 5, 6
PROBLEMS = {
    READ_ONLY: "a read-only receive buffer",
    NOT_CONTIGUOUS: "a non-contiguous buffer",
    UNUSABLE: "a buffer that MPI cannot use",
    LOCAL_FAILURE: "an error before the collective started",
    ALIASED: "send and receive buffers that overlap (MPI.IN_PLACE is the way to reuse one)",
    BAD_ROOT: "a root that is not a rank of the communicator",
}
# the path a rank publishes while it reads the others' calls (refuse_root); a start
# agreement's peek counts it as not there yet
CHOOSING = 3
# MPI's errors for arguments it checks before a collective starts on the rank (aliased
# buffers, a bad count): the others are already inside it, so the rank stands in for them
_REFUSED_BY_MPI = (MPI.ERR_BUFFER, MPI.ERR_COUNT)

# each collective's arguments as rescue.stand_in takes them (mpi4py's defaults filled in)
_SIGNATURES: dict[str, Callable[..., tuple]] = {
    "Allreduce": lambda sendbuf, recvbuf, op=MPI.SUM: (sendbuf, recvbuf, op),
    "Reduce_scatter_block": lambda sendbuf, recvbuf, op=MPI.SUM: (sendbuf, recvbuf, op),
    "Reduce": lambda sendbuf, recvbuf, op=MPI.SUM, root=0: (sendbuf, recvbuf, op, root),
    "Bcast": lambda buf, root=0: (buf, root),
    "Gather": lambda sendbuf, recvbuf, root=0: (sendbuf, recvbuf, root),
    "Scatter": lambda sendbuf, recvbuf, root=0: (sendbuf, recvbuf, root),
    "Allgather": lambda sendbuf, recvbuf: (sendbuf, recvbuf),
    "Alltoall": lambda sendbuf, recvbuf: (sendbuf, recvbuf),
}

MAXIMA = 6  # values a collective may ask the start agreement for (their maxima over ranks)
# a start agreement: the signature (k values and their negatives), the problem key, the
# maxima, and the call number and its negative (MPI matches agreements by their order on the
# control communicator, not by call)
START_LENGTH = 2 * 6 + 1 + MAXIMA + 2
PEEK_AFTER = 1.0  # seconds in a start agreement before reading where the other ranks are
_EQUAL = ("kind", "count", "datatype size", "op", "root", "path")


@dataclass
class Call:
    """How this rank called a collective: what every rank must agree on."""

    what: str
    count: int  # values per block
    itemsize: int
    op: int = 0  # settings.SUM/MAX/MIN/..., 0 where there is none
    root: int = -1
    problem: int = 0  # a buffer problem on this rank (READ_ONLY, ...)

    @property
    def kind(self) -> int:
        return KINDS[self.what]


@dataclass
class Outcome:
    """What the end agreement of a compressed call says (the slowest rank's view)."""

    done: bool  # False: the work asked for plain MPI (every rank alike)
    seconds: float  # the slowest rank's time for the work
    plain_seconds: float  # the slowest rank's pending plain timing, -1 if none
    sent_share: float  # the largest share of bytes sent over bytes as floats, -1 if none


class Guard:
    """The call protocol of one thread's channel (the main thread's has a window)."""

    def __init__(self, comm: MPI.Intracomm, channel: Channel, min_bytes: int, stats):
        self.comm, self.channel, self.min_bytes, self.stats = comm, channel, min_bytes, stats
        self.rank, self.size = comm.Get_rank(), comm.Get_size()
        self.seq = 0
        self.last_agreement = 0.0  # seconds the last end agreement took
        # the last call whose open start agreement this rank joined after a straddle flag:
        # several compressing ranks flag it, and a flag that arrives after the join (a Bcast
        # receiver returns once the root's message is in, before the other ranks have
        # flagged it) must not make it join again, into the next call's agreement
        self.straddle_joined = 0

    def next_call(self) -> int:
        self.seq += 1
        return self.seq

    # -- plain calls -----------------------------------------------------------------------------

    def plain(self, what: str, call: Call | None, run: Callable[[], object], args: tuple = ()):
        """run() (plain MPI on the user's communicator), published as this rank's call when
        `call` is given; a refused buffer and a straddling compressed rank are handled here.
        args: the call's arguments, to stand in for a buffer mpi4py refuses."""
        window, seq = self.channel.window, self.seq
        if window is not None and call is not None:
            window.publish(seq, PLAIN, call.kind, call.count, call.itemsize, call.op, call.root)
        if window is not None and window.mem[0]:
            self._flagged(seq - 1, call)  # a flag from an earlier call
        try:
            result = run()
        except MPI.Exception as exc:
            if window is not None and window.mem[0]:
                self._flagged(seq, call)
            if window is not None and exc.Get_error_class() in _REFUSED_BY_MPI:
                self._stand_in_for(what, args, exc)
            raise
        except Exception as exc:  # noqa: BLE001 - mpi4py refused an argument before MPI started
            found = stand_in(what, self.comm, args) if window is not None else None
            if found is None:
                raise
            problem, join = found
            self._rescue_refused(what, problem, exc, join)
            raise  # not reached: _rescue_refused raises
        if window is not None and window.mem[0]:
            self._flagged(seq, call)
        return result

    def _flagged(self, limit: int, call: Call | None) -> None:
        """Other ranks set this rank's flags for calls up to number `limit` (flags for later
        calls wait for them). Inside the flagged call, raise what every rank raises; a call
        that this rank had already finished (a Bcast root's small message leaves at once) is
        only put right: plain MPI would not have failed there either."""
        self._settle_flags(self.channel.window.take_flags(limit))

    def _settle_flags(self, flags: list[tuple[int, int, int, int]], own_problem: tuple[int, int] | None = None) -> None:
        """Act on flags (seq, kind, detail, source): first join the open start agreement of
        every straddled call (as the plain path; once per call, however many compressing
        ranks flagged it), raising its MismatchError for this call; then, for a refused
        buffer in this call, raise the InvalidBufferError naming the lowest refusing rank
        (``own_problem``: this rank's (rank, detail) where it refused too)."""
        window = self.channel.window
        for flag_seq in sorted({f[0] for f in flags if f[1] == FLAG_STRADDLE}):
            if flag_seq <= self.straddle_joined:
                continue  # another compressing rank's flag for the agreement joined already
            self.straddle_joined = flag_seq
            detail = next(f[2] for f in flags if f[0] == flag_seq and f[1] == FLAG_STRADDLE)
            what = NAMES.get(detail, "the collective")
            published = window.own(flag_seq)
            if published is not None:
                _, _, kind_code, count, itemsize, op, root = published
                mine = Call(NAMES.get(kind_code, what), count, itemsize, op, root)
            else:
                mine = Call(what, -1, 0)
            vec = _start_vector(mine, PLAIN, 0, self.size, self.rank, [-math.inf] * MAXIMA, flag_seq)
            agreed = self.channel.allreduce_max(vec)
            if flag_seq == self.seq:
                _raise_disagreement(agreed, what, self.min_bytes, self.size)
                raise MismatchError(f"{what}: some ranks took the plain path and others the compressed one")
        refused = [(f[3], f[2]) for f in flags if f[0] == self.seq and f[1] == FLAG_BUFFER]
        if own_problem is not None:
            refused.append(own_problem)
        if refused:
            source, detail = min(refused)
            raise InvalidBufferError(_buffer_message(NAMES.get(detail >> 8, "the collective"), source, detail & 255))

    def refuse_root(self, what: str, root) -> NoReturn:
        """This rank passed a root that is no rank of the communicator: MPI would refuse it
        here only, and the others would wait inside the collective. Read every other rank's
        call from its window; where any is in a start agreement, join it with this rank's
        problem; where all run plain MPI, flag them and complete their call with a scratch
        message of their signature. Every rank raises (the same InvalidBufferError where
        the others agree among themselves)."""
        window, seq, kind = self.channel.window, self.seq, KINDS[what]
        problem = _buffer_message(what, self.rank, BAD_ROOT)
        if window is None:
            raise InvalidBufferError(problem)
        window.publish(seq, CHOOSING, kind, -1, 0, 0, -1)
        states: dict[int, tuple] = {}
        gone: set[int] = set()  # past this call, its record no longer kept: it returned
        while len(states) + len(gone) < self.size - 1:  # as long as MPI would wait for a late rank
            for rank in range(self.size):
                if rank != self.rank and rank not in states and rank not in gone:
                    found, past = window.call_of(rank, seq)
                    if found:
                        states[rank] = found
                    elif past:
                        gone.add(rank)
            time.sleep(0.001)
        # other ranks that passed no rank either (they publish CHOOSING too, before reading):
        # every rank names the lowest of them, as the flags and the agreement do
        choosing = [rank for rank, s in states.items() if s[1] == CHOOSING]
        problem = _buffer_message(what, min([self.rank, *choosing]), BAD_ROOT)
        joining = [s for s in states.values() if s[1] == COMPRESSED]
        if joining:  # their call as they published it, with this rank's problem
            _, _, their_kind, count, itemsize, op, their_root = joining[0]
            call = Call(NAMES.get(their_kind, what), count, itemsize, op, their_root, BAD_ROOT)
            self.compressed(call, lambda: [], lambda agreed: True)
            raise InvalidBufferError(problem)  # not reached: the agreement raises on every rank
        plain = {r: s for r, s in states.items() if s[1] == PLAIN}
        usable = [s for s in plain.values() if _can_stand_in(s)]
        if usable:
            for rank in plain:
                window.set_flag(rank, seq, FLAG_BUFFER, (kind << 8) | BAD_ROOT)
            _, _, their_kind, count, itemsize, op, their_root = usable[0]
            _scratch_join(self.comm, their_kind, count, itemsize, op, their_root, self.rank, self.size)
        raise InvalidBufferError(problem)

    def _stand_in_for(self, what: str, args: tuple, exc: Exception) -> None:
        """MPI refused this rank's arguments before the collective started here (its checks
        of aliasing and counts): as for a buffer mpi4py refuses, complete the others' call
        and raise the same InvalidBufferError everywhere. Returns where it cannot stand in."""
        found = stand_in(what, self.comm, args)
        if found is not None:
            self._rescue_refused(what, found[0], exc, found[1])

    def _rescue_refused(self, what: str, problem: int, exc: Exception, join: Callable[[], object]) -> None:
        """mpi4py refused this rank's buffer; the others are inside the plain collective."""
        window = self.channel.window
        detail = (KINDS[what] << 8) | problem
        for rank in range(self.size):
            if rank != self.rank:
                window.set_flag(rank, self.seq, FLAG_BUFFER, detail)
        join()  # the others' call completes (and every other refusing rank's flag has arrived)
        # a compressing rank's straddle flag (this rank is on the plain path): join its
        # agreement and raise its MismatchError, as the others do; else name the lowest
        # refusing rank, as every rank does
        try:
            self._settle_flags(window.take_flags(self.seq), (self.rank, detail))
        except (MismatchError, InvalidBufferError) as raised:
            raise raised from exc
        raise InvalidBufferError(_buffer_message(what, self.rank, problem)) from exc  # not reached

    def checked_plain(self, what: str, method: Callable) -> Callable:
        """``method`` (mpi4py's own) for a communicator that never compresses (one node): the
        call runs as it is, then one load from memory tests the flag that a rank whose
        buffer mpi4py refused sets on every other rank (it completes the collective with a
        scratch message, so the others return; then every rank raises the same
        InvalidBufferError). Nothing is published and nothing is agreed."""
        comm, mem, signature = self.comm, self.channel.window.mem, _SIGNATURES[what]

        def call(*args, **kwargs):
            self.seq += 1
            try:
                result = method(comm, *args, **kwargs)
            except MPI.Exception as exc:
                if mem[0]:
                    self._flagged(self.seq, None)
                if exc.Get_error_class() in _REFUSED_BY_MPI:
                    try:
                        full = signature(*args, **kwargs)
                    except TypeError:
                        raise exc from None
                    self._stand_in_for(what, full, exc)
                raise
            except Exception as exc:  # noqa: BLE001 - mpi4py refused an argument before MPI started
                try:
                    full = signature(*args, **kwargs)
                except TypeError:
                    raise exc from None  # not a call mpi4py could have taken either
                found = stand_in(what, comm, full)
                if found is None:
                    raise
                self._rescue_refused(what, found[0], exc, found[1])
            if mem[0]:
                self._flagged(self.seq, None)
            return result

        call.__name__, call.__doc__ = what, method.__doc__
        return call

    # -- compressed calls ------------------------------------------------------------------------

    def compressed(
        self,
        call: Call,
        maxima: Callable[[], Sequence[float]],
        work: Callable[[np.ndarray], bool],
        plain_seconds: float = -1.0,
    ) -> Outcome:
        """Agree on the call, run work(agreed maxima) on every rank, agree on how it went.
        Raises the same exception on every rank where the ranks disagree, a buffer is
        unusable or any rank failed. work() returns False to ask for plain MPI instead."""
        channel, seq = self.channel, self.seq
        window = channel.window
        if window is not None:
            window.publish(seq, COMPRESSED, call.kind, call.count, call.itemsize, call.op, call.root)
            if window.mem[0]:
                self._flagged(seq - 1, None)  # a flag left from an earlier call
        problem = call.problem
        try:
            local = [float(v) for v in maxima()] if not problem else []
        except Exception:  # noqa: BLE001 - reported on every rank by the agreement
            problem, local = LOCAL_FAILURE, []
        local += [-math.inf] * (MAXIMA - len(local))
        vec = _start_vector(call, COMPRESSED, problem, self.size, self.rank, local, seq)
        peek = _Peek(self, call, seq) if window is not None else None
        while True:
            try:
                agreed = channel.allreduce_max(vec.copy(), idle=peek)
            except _Straddle as exc:
                raise MismatchError(str(exc)) from None
            latest, earliest = agreed[-2], -agreed[-1]
            if latest > seq:  # ranks that are past this call: they returned from it on the plain path
                self._left_behind(call, seq)
            if earliest < seq:
                # ranks still in an earlier call completed their agreement with this one (a
                # Bcast root's small message leaves at once, and the root was here before the
                # others could look where it was): they raise for their call and come to this
                # one; agree again. A straddle flag for that call finds its agreement done.
                self.straddle_joined = max(self.straddle_joined, int(earliest))
                continue
            break
        _raise_disagreement(agreed, call.what, self.min_bytes, self.size)
        if agreed[2 * len(_EQUAL)] > 0:
            key = int(agreed[2 * len(_EQUAL)])
            rank, code = self.size - key // 16, key % 16
            if code == LOCAL_FAILURE:
                raise CollectiveFailedError(f"{call.what} failed on rank {rank} before it started")
            raise InvalidBufferError(_buffer_message(call.what, rank, code))
        if call.op == INVALID:
            raise UnsupportedOperationError(
                f"{call.what}: this reduction op is not defined for float data (use SUM, MAX, MIN, PROD or a user op)"
            )
        agreed_maxima = agreed[2 * len(_EQUAL) + 1 : 2 * len(_EQUAL) + 1 + MAXIMA]
        start = time.perf_counter()
        sent, raw = self.stats.sent, self.stats.raw
        error: BaseException | None = None
        text = None
        done, failed = True, False
        try:
            done = bool(work(agreed_maxima))
        except Abandoned:
            failed = True
        except Exception as exc:  # noqa: BLE001 - every rank raises it, below
            error, text, failed = exc, f"{call.what} failed on rank {self.rank}: {type(exc).__name__}: {exc}", True
            channel.alarm(text)
        elapsed = time.perf_counter() - start
        raw = self.stats.raw - raw
        sent_share = (self.stats.sent - sent) / raw if raw > 0 else -1.0
        end = np.array([float(failed), elapsed + self.last_agreement, plain_seconds, sent_share, float(not done)])
        began = time.perf_counter()
        channel.allreduce_max(end)
        self.last_agreement = time.perf_counter() - began
        if end[0] > 0:
            message = channel.settle(text)
            raise CollectiveFailedError(message) from error
        channel.reset_counts()
        return Outcome(end[4] == 0, float(end[1]), float(end[2]), float(end[3]))

    def _left_behind(self, call: Call, seq: int) -> NoReturn:
        """This call's start agreement completed with ranks already past it: they took the
        plain path and returned (a Bcast root, a Gather's senders). Complete their plain call
        with a scratch message of their signature, as a peek does (their messages would
        otherwise wait to be taken by this rank's next plain call), and raise what their
        published calls say, as every rank left here does."""
        window = self.channel.window
        mine = (seq, COMPRESSED, call.kind, call.count, call.itemsize, call.op, call.root)
        states = {self.rank: mine}
        if window is not None:
            for rank in range(self.size):
                found = window.call_of(rank, seq)[0] if rank != self.rank else None
                if found:
                    states[rank] = found
        plain = [s for s in states.values() if s[1] == PLAIN]
        if plain and _can_stand_in(plain[0]):
            _, _, kind, count, itemsize, op, root = plain[0]
            _scratch_join(self.comm, kind, count, itemsize, op, root, self.rank, self.size)
        _raise_for_states(states.values(), call.what, self.min_bytes, self.size)
        raise MismatchError(f"{call.what}: some ranks returned from it on the plain path while others compress")


class _Straddle(Exception):
    """Raised out of a start agreement that straddling plain ranks will never join in time."""


class _Peek:
    """The idle callback of a start agreement: after PEEK_AFTER seconds, and every second after
    that, read where every rank is. Ranks inside this call on the plain path (messages under
    min_bytes) get their plain call completed with a scratch message and a flag; this rank
    then leaves with the MismatchError that they will raise too (its agreement stays open
    until they join it)."""

    def __init__(self, guard: Guard, call: Call, seq: int):
        self.guard, self.call, self.seq = guard, call, seq
        self.next = PEEK_AFTER

    def __call__(self, waited: float) -> None:
        if waited < self.next:
            return
        self.next = waited + 1.0
        guard = self.guard
        window = guard.channel.window
        states = {
            guard.rank: (
                self.seq,
                COMPRESSED,
                self.call.kind,
                self.call.count,
                self.call.itemsize,
                self.call.op,
                self.call.root,
            )
        }
        gone = []
        for rank in range(guard.size):
            if rank == guard.rank:
                continue
            found, past = window.call_of(rank, self.seq)
            if found:
                states[rank] = found
            elif past:
                gone.append(rank)  # past this call (it returned on the plain path), its record gone
            else:
                return  # that rank has not reached this call yet: keep waiting
        if gone:
            raise _Straddle(
                f"{self.call.what}: rank(s) {gone} returned from it on the plain path (messages under "
                f"min_bytes={guard.min_bytes}) while this rank compresses, and went on through more "
                "calls than this rank can look back on"
            )
        plain = sorted(r for r, s in states.items() if s[1] == PLAIN)
        if not plain:
            return  # every rank is in the agreement: it will complete
        for rank in plain:
            window.set_flag(rank, self.seq, FLAG_STRADDLE, self.call.kind)
        _, _, kind, count, itemsize, op, root = states[plain[0]]
        what = self.call.what
        if _can_stand_in(states[plain[0]]):
            # complete the plain ranks' call with a scratch message of their signature
            _scratch_join(guard.comm, kind, count, itemsize, op, root, guard.rank, guard.size)
        else:  # a call this rank cannot stand in for (not a float message): the plain ranks
            # stay inside MPI, as they would with plain MPI; this rank does not wait for them
            raise _Straddle(
                f"{what}: rank(s) {plain} called it with a message that is not compressible "
                "(another datatype, or another collective) while this rank compresses"
            )
        try:
            _raise_for_states(states.values(), what, guard.min_bytes, guard.size)
        except MismatchError as exc:
            raise _Straddle(str(exc)) from None


# the scratch values for a plain rank's message of each value size: floats where errbound's
# own messages are, else unsigned integers (which SUM, MAX and MIN take)
_SCRATCH_TYPES = {1: np.uint8, 2: np.uint16, 4: np.float32, 8: np.float64}


def _can_stand_in(state: tuple) -> bool:
    """Whether a plain rank's published call can be completed with a scratch message."""
    _, _, kind, count, itemsize, _, _ = state
    return kind in NAMES and count >= 0 and itemsize in _SCRATCH_TYPES


def _raise_for_states(states, what: str, min_bytes: int, size: int) -> None:
    """_raise_disagreement over calls as the ranks published them, as an agreement of them
    would have it."""
    equal = np.array([[s[2], s[3], s[4], s[5], s[6], s[1]] for s in states], np.float64)
    _raise_disagreement(np.concatenate([equal.max(axis=0), -equal.min(axis=0)]), what, min_bytes, size)


def _scratch_join(comm: MPI.Intracomm, kind: int, count: int, itemsize: int, op: int, root: int, rank: int, size: int):
    from .settings import MAX, MIN, SUM

    dtype = _SCRATCH_TYPES[itemsize]
    mpi_op = {SUM: MPI.SUM, MAX: MPI.MAX, MIN: MPI.MIN}.get(op, MPI.SUM)
    one, many = np.zeros(count, dtype), np.zeros(count * size, dtype)
    what = NAMES[kind]
    if what == "Allreduce":
        MPI.Intracomm.Allreduce(comm, one, np.empty_like(one), mpi_op)
    elif what == "Reduce":
        MPI.Intracomm.Reduce(comm, one, np.empty_like(one) if rank == root else None, mpi_op, root)
    elif what == "Reduce_scatter_block":
        MPI.Intracomm.Reduce_scatter_block(comm, many, one, mpi_op)
    elif what == "Bcast":
        MPI.Intracomm.Bcast(comm, one, root)
    elif what == "Gather":
        MPI.Intracomm.Gather(comm, one, many if rank == root else None, root)
    elif what == "Scatter":
        MPI.Intracomm.Scatter(comm, many if rank == root else None, one, root)
    elif what == "Allgather":
        MPI.Intracomm.Allgather(comm, one, many)
    elif what == "Alltoall":
        MPI.Intracomm.Alltoall(comm, many, np.empty_like(many))


def _start_vector(
    call: Call, path: int, problem: int, size: int, rank: int, maxima: Sequence[float], seq: int
) -> np.ndarray:
    equal = [call.kind, call.count, call.itemsize, call.op, call.root, path]
    k = len(equal)
    vec = np.empty(START_LENGTH, np.float64)
    vec[:k] = equal
    vec[k : 2 * k] = [-v for v in equal]
    vec[2 * k] = (size - rank) * 16 + problem if problem else 0.0
    vec[2 * k + 1 : 2 * k + 1 + MAXIMA] = maxima
    vec[-2:] = seq, -seq
    return vec


def _raise_disagreement(agreed: np.ndarray, what: str, min_bytes: int, size: int) -> None:
    k = len(_EQUAL)
    bad = [i for i in range(k) if agreed[i] != -agreed[k + i]]
    if not bad:
        return

    def show(i: int, value: float) -> str:
        if _EQUAL[i] == "op":
            return op_name(int(value))
        if _EQUAL[i] == "kind":
            return NAMES.get(int(value), "another collective")
        return f"{value:g}"

    parts = [
        f"{_EQUAL[i]} ranges from {show(i, -agreed[k + i])} to {show(i, agreed[i])}" for i in bad if _EQUAL[i] != "path"
    ]
    if k - 1 in bad:
        count, itemsize = -agreed[k + 1], -agreed[k + 2]  # the smallest (equal where not in bad)
        if 1 in bad or 2 in bad or count * itemsize < min_bytes:
            parts.append(f"some ranks' messages are under min_bytes={min_bytes} (plain MPI) and others' are not")
        else:  # as large as the others': plain because errbound does not read it
            parts.append(
                "some ranks passed a message that is not compressible (not float32/float64 values, "
                "or a form errbound does not read: plain MPI) and others compress"
            )
    raise MismatchError(f"{what}: the ranks disagree: " + ", ".join(parts))


def _buffer_message(what: str, rank: int, problem: int) -> str:
    return f"{what}: rank {rank} passed {PROBLEMS.get(problem, 'an unusable buffer')}"
