"""``adapt=True``: per collective and message size, use whichever of the compressed path and plain
MPI has been faster on this machine.

Compression pays only where the link is slower than the compressor, which depends on the
link, the cores each rank has and the data; measured on the netbed, with 4 ranks sharing 2
cores, a 64 MiB Allreduce is 2.9x faster compressed at 1 Gbit/s and 1.2x at 2.5 Gbit/s,
where a 16 MiB one is as fast either way.
``min_bytes`` keeps small messages on plain MPI everywhere; this policy also finds, by timing
both paths, the sizes where compression loses on a fast link.

The choice must be the same on every rank, so it depends only on data all ranks share: the
number of calls so far for the (collective, size class) and timings that compressed calls
agree on with one small MAX Allreduce (their own time and that of the last plain call, as
the slowest rank saw them) while the policy explores, at a probe, and right after a timed
plain call. That agreement is part of the compressed path's cost, and charged to it (where
ranks outnumber cores a small Allreduce takes milliseconds: measured, without the charge,
4 ranks kept a 1 MiB Reduce_scatter_block compressed at 0.78x of plain MPI).

The compressed path is kept only where it was at least ``MARGIN`` faster: on a machine
whose timings move by 10 % from call to call (the 2-core bed), a plain min-vs-min choice
kept compressed paths that were 3-12 % slower than plain MPI at sizes where the two are
close (measured: Reduce_scatter_block at 1-4 MiB), while a near tie gains nothing worth
the risk.

Schedule per key: calls 0 and 2 compressed, 1 and 3 plain (two timings of each: a first call
may pay one-off costs; the last exploring plain call's time is agreed at once so that it
counts). Where the two are within ``CLOSE`` of each other, calls 4-7 alternate too: two
samples each decided 2-rank Allgather and Reduce_scatter_block at 4 MiB, 2.5 Gbit/s, for the
compressed path, which the benchmark then measured 3-10 % slower. Then the faster one, with
the other path timed again at calls 16, 32, 64 and then every 64th, so a changed machine or
load is noticed at a cost of at most 1/64 of the difference.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
from mpi4py import MPI

_KEEP = 4  # an estimate is the best of the last few timings: noise only slows a run
CLOSE = 1.25  # estimates within this factor of each other get a second round of exploring
_PERIOD = 64
MARGIN = 0.9  # compressed is chosen where its best time is below this share of plain's


def _probe(call: int) -> bool:
    """Whether call number `call` times the path that is currently slower."""
    return call >= 16 and (call & (call - 1) == 0 if call <= _PERIOD else call % _PERIOD == 0)


class _Key:
    def __init__(self) -> None:
        self.calls = 0
        self.compressed: list[float] = []
        self.plain: list[float] = []
        self.last_plain = -1.0  # this rank's latest plain time, not yet agreed
        self.agree_cost = 0.0  # what the last agreement took: charged to the compressed path
        self.explore_end = 4  # calls before this alternate between the paths

    @staticmethod
    def _best(times: list[float]) -> float:
        return min(times) if times else math.inf

    def prefers_compressed(self) -> bool:
        return self._best(self.compressed) < MARGIN * self._best(self.plain)

    def close(self) -> bool:
        c, p = self._best(self.compressed), self._best(self.plain)
        return p / CLOSE < c < p * CLOSE


class Adaptive:
    """The per-communicator record of timings and the decisions made from them."""

    def __init__(self, enabled: bool, clock: Callable[[], float] = time.perf_counter):
        self.enabled = enabled
        self._clock = clock
        self._keys: dict[tuple[str, int], _Key] = {}

    @staticmethod
    def _size_class(nbytes: int) -> int:
        return round(2 * math.log2(max(nbytes, 1)))  # half-octave classes

    def run(
        self, comm: MPI.Intracomm, what: str, nbytes: int, compressed: Callable[[], object], plain: Callable[[], object]
    ) -> object:
        """Call compressed() or plain() as the policy decides (compressed() when disabled)."""
        if not self.enabled:
            return compressed()
        key = self._keys.setdefault((what, self._size_class(nbytes)), _Key())
        call = key.calls
        key.calls += 1
        if call == 4 and key.close():  # agreed timings only: every rank extends alike
            key.explore_end = 8
        exploring = call < key.explore_end
        if exploring:
            use_compressed = call % 2 == 0
        else:
            use_compressed = key.prefers_compressed() != _probe(call)
        start = self._clock()
        if not use_compressed:
            result = plain()
            key.last_plain = self._clock() - start
            if exploring and call == key.explore_end - 1:
                # a last exploring call: agree on its time now, or the decision would weigh
                # compressed timings against one plain timing fewer, perhaps only the first,
                # which may pay one-off costs (measured: 64 MiB on 4 ranks at 2.5 Gbit/s
                # stayed compressed at 0.81x of plain MPI)
                self._agree(comm, key, -1.0)
            return result
        result = compressed()
        elapsed = self._clock() - start
        if not (exploring or _probe(call) or key.last_plain >= 0):
            return result  # settled and nothing new to tell: no agreement, no cost
        self._agree(comm, key, elapsed + key.agree_cost)
        return result

    def _agree(self, comm: MPI.Intracomm, key: _Key, compressed_time: float) -> None:
        """Record the slowest rank's compressed time (negative: none this call) and the
        pending plain time; what the agreement takes is charged to the compressed path."""
        times = np.array([compressed_time, key.last_plain])
        start = self._clock()
        comm.Allreduce(MPI.IN_PLACE, times, MPI.MAX)
        cost = self._clock() - start
        key.agree_cost = cost if compressed_time >= 0 else key.agree_cost + cost
        if times[0] >= 0:
            key.compressed = (key.compressed + [float(times[0])])[-_KEEP:]
        if times[1] >= 0:
            key.plain = (key.plain + [float(times[1])])[-_KEEP:]
            key.last_plain = -1.0
