"""``adapt=True``: per collective and message size, take whichever of the compressed path and
plain MPI is faster on this machine, from the first call on.

Compression pays only where the link is slower than the compressor, which depends on the
link, the cores each rank has, the layout and the data. A program that calls a collective
a few times cannot afford to explore (the issue that introduced this: one node, two ranks,
a 4 MiB Allreduce took 0.6 s compressed against 0.04 s plain, and the first call 4 s), so
the *first* choice comes from the cost model (:mod:`.costmodel`), fed with what construction
measured (:mod:`.probe`): the node structure, the link between nodes, the compressor's
speed on this machine; the compression ratio starts from a prior and follows the ratio
that compressed calls achieve. Measurements then correct the choice:

* every compressed call ends with an agreement (:mod:`.guard`) that carries the slowest
  rank's time; a compressed path that runs slower than the model's estimate of plain MPI
  gives way to plain MPI at the next call, and the call after that is compressed again and
  agrees the plain time, so the choice rests on two measurements (measured on the bed: the
  first compressed Reduce of a size paid one-off costs, and MPICH's plain Reduce took twice
  the model's estimate, so an unverified switch kept the 2-3x slower plain path);
* plain calls are timed on each rank, and their times agreed at the next compressed call;
* where the model cannot tell the paths apart (estimates within ``CLOSE``), the first four
  calls alternate between them (ending on a compressed call, which agrees the plain times);
* the path not taken is timed again at calls 16, 32, 64 and then every 64th, so a changed
  machine or load is noticed, at a cost of at most 1/64 of the difference once settled.

The compressed path is kept only where it is at least ``MARGIN`` faster: on a machine whose
timings move by 10 % from call to call (the 2-core bed), a plain min-vs-min choice kept
compressed paths that were 3-12 % slower than plain MPI at sizes where the two are close.

Every decision depends only on the call count and on agreed numbers, so every rank decides
the same. A job whose ranks all share one node never gets here: it runs plain MPI.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from .guard import Outcome

_KEEP = 4  # an estimate is the best of the last few timings: noise only slows a run
CLOSE = 1.25  # estimates within this factor of each other: explore both
_PERIOD = 64
MARGIN = 0.9  # compressed is chosen where its time is below this share of plain's
EXPLORE = 4

# (collective, message bytes, float size) -> (compressed seconds, plain seconds) predicted, or None
Estimate = Callable[[str, int, int], "tuple[float, float] | None"]


def _probe(call: int) -> bool:
    """Whether call number `call` times the path that is currently slower."""
    return call >= 16 and (call & (call - 1) == 0 if call <= _PERIOD else call % _PERIOD == 0)


@dataclass
class _Key:
    estimate: tuple[float, float] | None  # the model's (compressed, plain), from its first call
    calls: int = 0
    compressed: list[float] = field(default_factory=list)  # agreed timings (slowest rank)
    plain: list[float] = field(default_factory=list)
    pending_plain: float = -1.0  # this rank's best plain time since the last agreement
    explore: bool = False
    explore_first: bool = True  # the path the exploring calls start with
    verify_at: int = -1  # a compressed call that checks a measured-vs-predicted switch to plain

    def value(self, times: list[float], index: int) -> float:
        if times:
            return min(times)
        return self.estimate[index] if self.estimate is not None else math.nan

    def prefers_compressed(self) -> bool:
        c, p = self.value(self.compressed, 0), self.value(self.plain, 1)
        if math.isnan(c) or math.isnan(p):
            return not math.isnan(c) or math.isnan(p)  # nothing known: compress (and time it)
        return c < MARGIN * p


@dataclass
class Choice:
    key: tuple[str, int]
    compressed: bool


class Adaptive:
    """The per-communicator record of timings and the decisions made from them."""

    def __init__(self, enabled: bool, estimate: Estimate | None = None):
        self.enabled = enabled
        self.estimate = estimate
        self._keys: dict[tuple[str, int], _Key] = {}

    @staticmethod
    def size_class(nbytes: int) -> int:
        return round(2 * math.log2(max(nbytes, 1)))  # half-octave classes

    def _key(self, what: str, nbytes: int, model_bytes: int = 0, itemsize: int = 4) -> tuple[tuple[str, int], _Key]:
        name = (what, self.size_class(nbytes))
        key = self._keys.get(name)
        if key is None:
            estimate = None
            if self.estimate is not None and self.enabled:
                estimate = self.estimate(what, model_bytes or nbytes, itemsize)
            key = _Key(estimate)
            if estimate is None:
                key.explore = True
            else:
                c, p = estimate
                key.explore = p / CLOSE < c < p * CLOSE
            self._keys[name] = key
        return name, key

    def choose(self, what: str, nbytes: int, model_bytes: int = 0, itemsize: int = 4) -> Choice:
        """The path for the next call of this collective and block size (compressed if
        disabled); model_bytes: the message as the cost model counts it (default nbytes)."""
        name, key = self._key(what, nbytes, model_bytes, itemsize)
        if not self.enabled:
            return Choice(name, True)
        call = key.calls
        key.calls += 1
        if key.explore and call < EXPLORE:
            if call == 0:
                key.explore_first = key.prefers_compressed()
            # end on a compressed call, which agrees the plain timings: p c p c or c p p c
            pattern = (True, False, False, True) if key.explore_first else (False, True, False, True)
            return Choice(name, pattern[call])
        if call <= key.verify_at:
            return Choice(name, call == key.verify_at)
        prefers = key.prefers_compressed()
        if not prefers and key.verify_at < 0 and key.compressed and not key.plain and key.estimate is not None:
            # the compressed path measured slower than the model's estimate of plain MPI (a
            # first call pays one-off costs; MPI's own algorithms may be slower than the
            # model's): time plain MPI now and compressed once more, then decide on both
            key.verify_at = call + 1
            return Choice(name, False)
        return Choice(name, prefers != _probe(call))

    def plain_done(self, choice: Choice, seconds: float) -> None:
        key = self._keys[choice.key]
        key.pending_plain = seconds if key.pending_plain < 0 else min(key.pending_plain, seconds)

    def pending_plain(self, choice: Choice) -> float:
        """This rank's plain timing to agree at this compressed call (-1: none)."""
        key = self._keys[choice.key]
        pending, key.pending_plain = key.pending_plain, -1.0
        return pending

    def compressed_done(self, choice: Choice, outcome: Outcome) -> None:
        """Record what the end agreement of a compressed call says."""
        key = self._keys[choice.key]
        if outcome.done:
            key.compressed = (key.compressed + [outcome.seconds])[-_KEEP:]
        if outcome.plain_seconds >= 0:
            key.plain = (key.plain + [outcome.plain_seconds])[-_KEEP:]

    def settled(self, what: str, nbytes: int) -> str:
        """'compressed', 'plain' or 'exploring' (for tests and reports)."""
        name, key = self._key(what, nbytes)
        if key.explore and key.calls < EXPLORE:
            return "exploring"
        return "compressed" if key.prefers_compressed() else "plain"
