"""CompressedComm: an ``mpi4py.MPI.Intracomm`` whose large float collectives travel compressed
between nodes.

Construction (collective) agrees on the settings, finds which ranks share a node
(:mod:`.topology`) and, where compression can run at all, compiles the kernels and measures
the machine (:mod:`.probe`) for the cost model that makes the first decision
(:mod:`.policy`). A job whose ranks all share one node runs plain MPI from the first call
(unless ``adapt=False`` forces compression, which then treats every rank as a node).

Each uppercase collective decides whether its message can take a compressed path
(contiguous float32/float64, at least ``min_bytes`` per block, SUM/MAX/MIN for reductions);
if not, mpi4py's own method runs with the caller's arguments untouched. The compressed
paths (:mod:`.reduction`, :mod:`.movement`) run inside :class:`.guard.Guard`, which makes
every failure, mismatch and unusable buffer raise the same error on every rank.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from mpi4py import MPI

from . import compute, costmodel, probe
from . import settings as agreement
from .buffers import Buffer, root_index, signature
from .guard import Call, Guard
from .methods import MovementMethods, ReductionMethods
from .policy import Adaptive
from .settings import Settings
from .stats import Stats
from .topology import Topology, discover
from .transport.channel import POLL_SLEEP, Channel
from .transport.mailbox import Mailbox
from .transport.nonblocking import CompressedRequest, Worker

# Compressing pays from about this size on a 1 Gbit/s link (measured on the netbed, 2 ranks,
# real data: Allreduce 0.55x at 128 KiB, 2.9x at 256 KiB; every collective >= 1.1x from
# 512 KiB; 4 ranks on 2 cores need ~2 MiB). Faster links move it up: adapt=True finds it.
DEFAULT_MIN_BYTES = 512 * 1024
_OPS = {
    "Allreduce": "allreduce",
    "Iallreduce": "allreduce",
    "Reduce": "reduce",
    "Reduce_scatter_block": "reduce_scatter_block",
    "Bcast": "bcast",
    "Ibcast": "bcast",
    "Gather": "gather",
    "Scatter": "scatter",
    "Allgather": "allgather",
    "Alltoall": "alltoall",
}


# the blocking collectives that may compress (the nonblocking ones: Iallreduce, Ibcast)
_BLOCKING = ("Allreduce", "Reduce", "Reduce_scatter_block", "Bcast", "Gather", "Scatter", "Allgather", "Alltoall")


def _plain_bcast(method):
    def bcast(buf, root: int = 0, *, consistent: bool | None = None):
        return method(buf, root)

    bcast.__name__, bcast.__doc__ = method.__name__, method.__doc__
    return bcast


def _as_float(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return value  # Settings.problem() reports it, on every rank


def prior_ratio(settings: Settings, itemsize: int, terms: int = 1) -> float:
    """The compression ratio to expect before anything was compressed: the bits of a code on
    a grid of 2 bound / terms over the value range, less ~4.5 bits that a Lorenzo prediction
    saves on smooth data (the shared fields at rel 1e-3: 6-10x measured, this gives 5.8-6)."""
    if settings.rel is None:
        return 4.0
    bits = math.log2(max(terms, 1) / (2 * settings.rel)) - 4.5
    return max(1.0, 8 * itemsize / (max(bits, 1.0) + 1.0))


class CompressedComm(ReductionMethods, MovementMethods, MPI.Intracomm):
    """A drop-in ``MPI.Intracomm`` with error-bounded compressed collectives.

    ``CompressedComm(comm, abs=1e-3)`` or ``rel=1e-4``: the bound applies to the *final*
    result of every compressed collective, |result - exact| <= bound element-wise on every
    rank (``rel``: times the global value range). ``codec`` compresses Bcast/Scatter/Gather/
    Allgather/Alltoall blocks (reductions always use errbound's exact integer codes).
    Messages under ``min_bytes``, non-float data, derived datatypes and other ops go to plain
    MPI unchanged, and so does everything between ranks of one node. ``consistent=True`` makes
    Bcast's root keep what the other ranks receive. ``algorithm`` forces the algorithm between
    nodes of Allreduce and Reduce ("ring"; "doubling" and "halving" on power-of-two node
    counts, doubling for Allreduce only; "tree") instead of "auto" (the cost model's choice); ``bcast_algorithm`` the Bcast tree ("binomial", pipelined "chain" or
    "binary"). ``segment_bytes`` is the chunk size of the pipelined algorithms (0: the default;
    a value at least the message size turns pipelining off); it changes speed, never results.
    ``adapt`` (on by default) takes, per collective and size, the path that the cost model
    predicts to be faster and corrects it from measured times (:mod:`mpi_collectives.policy`);
    a job on one node runs plain MPI. ``adapt=False`` always compresses messages of
    ``min_bytes`` or more, on one node too (every rank then counts as a node).

    Construction is collective; different settings on different ranks raise
    :class:`~mpi_collectives.errors.SettingsMismatchError` on every rank. ``nodes`` is the
    node structure found at construction. ``Dup()`` and ``Split()`` return CompressedComms
    with the same settings; every other method, the lowercase (pickle) ones included, is
    mpi4py's own. ``stats`` counts the bytes this rank sent in compressed collectives against
    what plain MPI would have sent.
    """

    _settings: Settings | None = None

    def __new__(
        cls,
        comm: MPI.Intracomm | None = None,
        *,
        abs: float | None = None,  # noqa: A002
        rel: float | None = None,
        codec: str = "fz",
        min_bytes: int = DEFAULT_MIN_BYTES,
        consistent: bool = False,
        algorithm: str = "auto",
        segment_bytes: int = 0,
        bcast_algorithm: str = "auto",
        adapt: bool = True,
    ) -> CompressedComm:
        if comm is None:
            # mpi4py makes new objects of type(self) this way (e.g. Idup): a plain communicator
            return super().__new__(cls)
        if not isinstance(comm, MPI.Intracomm) or comm == MPI.COMM_NULL:
            raise TypeError(f"CompressedComm needs an intracommunicator, got {comm!r}")
        obj = super().__new__(cls, MPI.Intracomm.Dup(comm))
        settings = Settings(
            abs=_as_float(abs),
            rel=_as_float(rel),
            codec=codec,
            min_bytes=min_bytes,
            consistent=bool(consistent),
            algorithm=algorithm,
            segment_bytes=segment_bytes,
            bcast_algorithm=bcast_algorithm,
            adapt=bool(adapt),
        )
        try:
            agreement.check_settings(obj, settings)
        except Exception:
            MPI.Intracomm.Free(obj)
            raise
        obj._settings = settings
        obj._setup()
        return obj

    def _setup(self) -> None:
        settings, size = self._settings, self.Get_size()
        self.nodes: Topology = discover(self)
        # ranks on one host share its cores (counted by host name: on the netbed every rank is
        # its own "node" for MPI, but they still share the machine's cores)
        hosts = MPI.Intracomm.allgather(self, MPI.Get_processor_name())
        compute.configure(hosts.count(hosts[self.Get_rank()]))
        self.stats = Stats()
        self._plain_only = size == 1 or (settings.adapt and self.nodes.single_node)
        # compression forced on one node: every rank counts as a node
        self._layout = self.nodes if self.nodes.nodes > 1 else Topology(tuple(range(size)), "forced")
        self._channel = Channel(self, window=True) if size > 1 else None
        self._guard = Guard(self, self._channel, settings.min_bytes, self.stats) if size > 1 else None
        if self._channel is not None:
            self._channel.node_of, self._channel.stats = self.nodes.node_of, self.stats
        self._worker = Worker()
        # the nonblocking calls' guard, made here (collective) wherever a call may compress
        self._worker_guard: Guard | None = None if self._plain_only else self._background()
        self._machine: dict[str, dict] = {}
        self._ratios: dict[tuple[str, int], float] = {}
        estimate = None
        if not self._plain_only:
            control = self._channel.control  # a plain communicator: the probes' messages stay private
            probe.warm_up_per_host(control, settings.codec)
            measured = {
                "speeds": probe.speeds(control, settings.codec),
                "link": probe.link(control, self._layout) if self._layout.nodes > 1 else {},
                "cores": probe.cores_per_rank(control),
                "agreement": probe.agreement_seconds(self._channel),
            }
            # every input of the cost model agreed: every rank then decides alike (review 1.2)
            self._machine = probe.agree(control, measured)
            estimate = self._estimate
        self._adaptive = Adaptive(settings.adapt, estimate)
        if self._plain_only and self._guard is not None:
            # one node: mpi4py's own methods from the first call, each behind one test of a
            # flag after it returns (a rank whose buffer mpi4py refuses sets it on the others;
            # see Guard.checked_plain); Bcast keeps its consistent= keyword
            for name in _BLOCKING:
                setattr(self, name, self._guard.checked_plain(name, getattr(MPI.Intracomm, name)))
            self.Bcast = _plain_bcast(self.Bcast)
            for name in ("Iallreduce", "Ibcast"):
                setattr(self, name, getattr(MPI.Intracomm, name).__get__(self, type(self)))
            self.Ibcast = _plain_bcast(self.Ibcast)

    # -- properties and communicator management ----------------------------------------------

    @property
    def settings(self) -> Settings | None:
        """The settings every rank agreed on (None for a plain communicator made by mpi4py)."""
        return self._settings

    @property
    def compressing(self) -> bool:
        """Whether any collective of this communicator may compress (False: one node, adapt)."""
        return self._settings is not None and not self._plain_only

    def _derive(self, comm: MPI.Intracomm) -> MPI.Intracomm:
        if comm == MPI.COMM_NULL:
            return comm
        derived = CompressedComm(comm, **self._settings.keywords())
        MPI.Intracomm.Free(comm)
        return derived

    def Dup(self, info: MPI.Info | None = None) -> MPI.Intracomm:
        """A duplicate with the same settings (collective)."""
        dup = MPI.Intracomm(super().Dup(info))
        return dup if self._settings is None else self._derive(dup)

    def Split(self, color: int = 0, key: int = 0) -> MPI.Intracomm:
        """Split as mpi4py does; each part is a CompressedComm with the same settings."""
        part = super().Split(color, key)
        return part if self._settings is None else self._derive(part)

    def Free(self) -> None:
        """Free this communicator and its internal duplicates (collective)."""
        if self._settings is not None:
            self._worker.stop()
            if self._channel is not None:
                self._channel.free()
            if self._worker_guard is not None:
                self._worker_guard.channel.free()
                self._worker_guard.comm.Free()
            self._settings = None
        super().Free()

    # -- the cost model --------------------------------------------------------------------------

    def _estimate(self, what: str, nbytes: int, itemsize: int = 4) -> tuple[float, float] | None:
        """(compressed, plain) seconds the cost model predicts for a message of nbytes."""
        op = _OPS[what]
        layout = self._layout
        family = "reduce" if op in costmodel.REDUCTIONS else "move"
        speeds, link = self._machine["speeds"], self._machine["link"]
        if layout.nodes > 1 and not link:
            return None
        terms = layout.size if op in costmodel.REDUCTIONS else 1
        ratio = self._ratios.get((family, itemsize)) or prior_ratio(self._settings, itemsize, terms)
        machine = costmodel.Machine(
            link=link["link"],
            encode=speeds[f"{family}_encode"],
            decode=speeds[f"{family}_decode"],
            ratio=ratio,
            cores=self._machine["cores"],
            latency=link["latency"],
            memory=link["memory"],
            quantize=speeds["quantize"],
        )
        k, ell = layout.nodes, layout.ranks_per_node
        # every compressed call also pays its two agreements and a few polls' sleeps
        fixed = 2 * self._machine["agreement"] + 6 * POLL_SLEEP
        compressed = costmodel.compressed_layout(op, nbytes, k, ell, machine) + fixed
        if ell == 1 and op in ("allreduce", "bcast", "allgather", "reduce_scatter_block", "reduce"):
            plain = costmodel.plain(op if op != "reduce" else "reduce_scatter_block", nbytes, k, machine.link)
        else:
            plain = costmodel.plain_layout(op, nbytes, k, ell, machine)
        return compressed, plain

    def _choose_algorithm(self, op: str, nodes: int, nbytes: int) -> str:
        """The algorithm between nodes for a reduction's share of nbytes (cost model)."""
        if not self._machine or not self._machine["link"]:
            return "ring"
        speeds, link = self._machine["speeds"], self._machine["link"]
        ratio = self._ratios.get(("reduce", 4)) or 4.0
        machine = costmodel.Machine(
            link=link["link"],
            encode=speeds["reduce_encode"],
            decode=speeds["reduce_decode"],
            ratio=ratio,
            cores=self._machine["cores"],
            latency=link["latency"],
            memory=link["memory"],
            quantize=speeds["quantize"],
        )
        return costmodel.reduction_algorithm(op, nbytes, nodes, self._layout.ranks_per_node, machine)[0]

    # -- dispatch --------------------------------------------------------------------------------

    def _active(self) -> bool:
        return self._settings is not None and self._guard is not None

    def _root(self, what: str, root) -> int:
        """``root`` as the int rank mpi4py reads (a numpy integer on some ranks and an int on
        others name one root); one that is no rank raises on every rank (Guard.refuse_root),
        where MPI would refuse it on this rank only and leave the others waiting."""
        index = root_index(root, self.Get_size())
        if index is None:
            self._guard.next_call()
            self._guard.refuse_root(what, root)  # raises
        return index

    def _large(self, buf: Buffer | None) -> bool:
        return buf is not None and buf.count > 0 and buf.block_bytes >= self._settings.min_bytes

    @staticmethod
    def _call(
        what: str, buf: Buffer | None, op: int = 0, root: int = -1, problem: int = 0, message=None, blocks: int = 1
    ) -> Call:
        """The call as agreements and windows carry it. A message that is not compressible
        (``buf`` None) runs plain MPI; given, ``message`` tells its MPI signature, so that a
        compressing rank meeting this one can complete this rank's call (guard._Peek)."""
        if buf is None:
            found = None if message is None else signature(message, blocks)
            count, itemsize = found if found is not None else (-1, 0)
            return Call(what, count, itemsize, op, root)
        return Call(what, buf.count, buf.flat.dtype.itemsize, op, root, problem or buf.problem)

    def _run(
        self,
        what: str,
        call: Call,
        run: Callable[[], object],
        args: tuple,
        work: Callable | None = None,
        maxima: Callable[[], list[float]] | None = None,
        key_bytes: int = 0,
        model_bytes: int = 0,
        force: bool = False,
    ) -> None:
        """Plain MPI, or the compressed `work` inside the guard, as the policy decides."""
        guard = self._guard
        if work is None:
            guard.plain(what, call, run, args)
            return
        if force:
            guard.compressed(call, maxima, work)
            return
        choice = self._adaptive.choose(what, key_bytes, model_bytes, call.itemsize)
        if not choice.compressed:
            start = time.perf_counter()
            guard.plain(what, call, run, args)
            self._adaptive.plain_done(choice, time.perf_counter() - start)
            return
        outcome = guard.compressed(call, maxima, work, self._adaptive.pending_plain(choice))
        self._adaptive.compressed_done(choice, outcome)
        if outcome.sent_share > 0:
            family = "reduce" if _OPS[what] in costmodel.REDUCTIONS else "move"
            self._ratios[(family, call.itemsize)] = 1.0 / outcome.sent_share
        if not outcome.done:
            run()  # the bound is zero or below the precision: plain MPI, on every rank alike

    def _mailbox(self, channel: Channel | None = None) -> Mailbox:
        return Mailbox(channel or self._channel)

    def __repr__(self) -> str:
        if self._settings is None:
            return super().__repr__()
        s = self._settings
        bound = f"abs={s.abs:g}" if s.abs is not None else f"rel={s.rel:g}"
        mode = "plain MPI (one node)" if self._plain_only else f"codec={s.codec} min_bytes={s.min_bytes}"
        return f"<CompressedComm {self.nodes.describe()}, {bound}, {mode}>"


__all__ = ["CompressedComm", "CompressedRequest", "DEFAULT_MIN_BYTES"]
