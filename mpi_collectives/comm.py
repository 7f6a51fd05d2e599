"""CompressedComm: an ``mpi4py.MPI.Intracomm`` whose large float collectives travel compressed.

Dispatch only: each uppercase collective decides locally whether its message can take a
compressed path (contiguous float32/float64, at least ``min_bytes`` per message, two or
more ranks); if not, mpi4py's own method runs with the caller's arguments untouched.
The compressed paths live in :mod:`.reduce` and :mod:`.movement`; they start with one small
Allreduce that checks that all ranks agree (count, datatype, op, root) and end, where the
contract cannot be met more cheaply (a zero or sub-ulp bound), with plain MPI on every rank.
"""

from __future__ import annotations

from mpi4py import MPI

from . import compute, movement, reduction
from . import settings as agreement
from .buffers import Buffer, is_in_place, parse
from .policy import Adaptive
from .settings import Settings
from .stats import Stats
from .transport.nonblocking import CompressedRequest, Worker

# Compressing pays from about this size on a 1 Gbit/s link (measured on the netbed, 2 ranks,
# real data: Allreduce 0.55x at 128 KiB, 2.9x at 256 KiB; every collective >= 1.1x from
# 512 KiB; 4 ranks on 2 cores need ~2 MiB). Faster links move it up: adapt=True finds it.
DEFAULT_MIN_BYTES = 512 * 1024


def _as_float(value):
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return value  # Settings.problem() reports it, on every rank


class CompressedComm(MPI.Intracomm):
    """A drop-in ``MPI.Intracomm`` with error-bounded compressed collectives.

    ``CompressedComm(comm, abs=1e-3)`` or ``rel=1e-4``: the bound applies to the *final*
    result of every compressed collective, |result - exact| <= bound element-wise on every
    rank (``rel``: times the global value range, which costs one small extra Allreduce).
    ``codec`` compresses Bcast/Scatter/Gather/Allgather/Alltoall blocks (reductions always
    use errbound's exact integer codes). Messages under ``min_bytes``, non-float data,
    derived datatypes and other ops go to plain MPI unchanged. ``consistent=True`` makes
    Bcast's root keep what the other ranks receive. ``algorithm`` forces the Allreduce
    algorithm ("ring", "doubling" on power-of-two rank counts) instead of "auto";
    ``bcast_algorithm`` the Bcast tree ("binomial", pipelined "chain" or "binary").
    ``segment_bytes`` is the chunk size of the pipelined algorithms (0: the default; a value
    at least the message size turns pipelining off); it changes speed, never results.
    ``adapt`` (on by default) times both paths per collective and size and keeps the faster
    one (see :mod:`mpi_collectives.policy`), so a link too fast for the compressor to pay
    never makes a collective slower than plain MPI; ``adapt=False`` always compresses
    messages of ``min_bytes`` or more.

    Construction is collective; different settings on different ranks raise
    :class:`~mpi_collectives.errors.SettingsMismatchError` on every rank. ``Dup()`` and
    ``Split()`` return CompressedComms with the same settings; every other method, the
    lowercase (pickle) ones included, is mpi4py's own. ``stats`` counts the bytes this rank
    sent in compressed collectives against what plain MPI would have sent.
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
            _as_float(abs),
            _as_float(rel),
            codec,
            min_bytes,
            bool(consistent),
            algorithm,
            segment_bytes,
            bcast_algorithm,
            bool(adapt),
        )
        try:
            agreement.check_settings(obj, settings)
        except Exception:
            MPI.Intracomm.Free(obj)
            raise
        obj._settings = settings
        # ranks on one host share its cores; counted by host name, not by MPI's shared-memory
        # split, which is one rank per "node" when shared memory is off (MPIR_CVAR_NOLOCAL,
        # as on the netbed), although the ranks still share the cores
        hosts = MPI.Intracomm.allgather(obj, MPI.Get_processor_name())
        compute.configure(hosts.count(hosts[obj.Get_rank()]))
        # compressed paths talk on private duplicates: their point-to-point messages can never
        # meet a user's receive, and the nonblocking worker never shares a communicator
        obj._internal = MPI.Intracomm(MPI.Intracomm.Dup(obj))
        obj._background = MPI.Intracomm(MPI.Intracomm.Dup(obj))
        obj._worker = Worker()
        obj._adaptive = Adaptive(settings.adapt)
        obj.stats = Stats()
        return obj

    # -- properties and communicator management ----------------------------------------------

    @property
    def settings(self) -> Settings | None:
        """The settings every rank agreed on (None for a plain communicator made by mpi4py)."""
        return self._settings

    def _derive(self, comm: MPI.Intracomm) -> MPI.Intracomm:
        if comm == MPI.COMM_NULL:
            return comm
        s = self._settings
        derived = CompressedComm(
            comm,
            abs=s.abs,
            rel=s.rel,
            codec=s.codec,
            min_bytes=s.min_bytes,
            consistent=s.consistent,
            algorithm=s.algorithm,
            segment_bytes=s.segment_bytes,
            bcast_algorithm=s.bcast_algorithm,
            adapt=s.adapt,
        )
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
            self._internal.Free()
            self._background.Free()
            self._settings = None
        super().Free()

    # -- dispatch helpers ----------------------------------------------------------------------

    def _large(self, buf: Buffer | None) -> bool:
        return buf is not None and buf.count > 0 and buf.block(0).nbytes >= self._settings.min_bytes

    def _choose(self, what: str, buf: Buffer, compressed, plain) -> None:
        """Run the compressed path, or with adapt=True whichever has been faster for this size
        (every rank passes a block of the same size, so every rank decides the same)."""
        self._adaptive.run(self._internal, what, buf.block(0).nbytes, compressed, plain)

    def _active(self) -> bool:
        return self._settings is not None and self.Get_size() > 1

    def _reduction(self, sendbuf, recvbuf, blocks: int = 1):
        """(x, out) views when this reduction can be compressed, else None."""
        if is_in_place(sendbuf):
            recv = parse(recvbuf, blocks=blocks, writable=True)
            return None if recv is None else (recv, recv)
        send = parse(sendbuf, blocks=blocks)
        recv = parse(recvbuf, writable=True)
        if send is None or recv is None or send.flat.dtype != recv.flat.dtype:
            return None
        if blocks == 1 and send.count != recv.count:
            return None  # let mpi4py raise its usual count mismatch
        return send, recv

    # -- reductions ----------------------------------------------------------------------------

    def _allreduce(self, comm: MPI.Intracomm, send: Buffer, recv: Buffer, op: MPI.Op, what: str) -> bool:
        plan = reduction.plan(comm, what, send.flat, agreement.op_code(op), self._settings, send.block_shape)
        if plan is None:
            return False
        reduction.allreduce(comm, send.flat, recv.flat, plan, self._settings, self.stats)
        self.stats.add(calls=1)
        return True

    def Allreduce(self, sendbuf, recvbuf, op: MPI.Op = MPI.SUM) -> None:
        """mpi4py's Allreduce; SUM/MAX/MIN of large float buffers within the bound, the same
        bits on every rank."""
        views = self._reduction(sendbuf, recvbuf) if self._active() else None
        if views is None or not self._large(views[0]):
            return super().Allreduce(sendbuf, recvbuf, op)

        def compressed() -> None:
            if not self._allreduce(self._internal, *views, op, "Allreduce"):
                MPI.Intracomm.Allreduce(self, sendbuf, recvbuf, op)

        self._choose("Allreduce", views[0], compressed, lambda: MPI.Intracomm.Allreduce(self, sendbuf, recvbuf, op))

    def Iallreduce(self, sendbuf, recvbuf, op: MPI.Op = MPI.SUM) -> MPI.Request:
        """Nonblocking Allreduce; the returned request's Wait() completes it."""
        views = self._reduction(sendbuf, recvbuf) if self._active() else None
        if views is None or not self._large(views[0]):
            return super().Iallreduce(sendbuf, recvbuf, op)
        comm = self._background

        def work() -> None:
            if not self._allreduce(comm, *views, op, "Iallreduce"):
                comm.Allreduce(sendbuf, recvbuf, op)

        return self._worker.submit(work)

    def Reduce(self, sendbuf, recvbuf, op: MPI.Op = MPI.SUM, root: int = 0) -> None:
        """mpi4py's Reduce; the root's result meets the bound. Other ranks' recvbuf is untouched."""
        rank = self.Get_rank()
        views = None
        if self._active() and 0 <= root < self.Get_size():
            if rank == root:
                views = self._reduction(sendbuf, recvbuf)
            elif not is_in_place(sendbuf):
                send = parse(sendbuf)
                views = None if send is None else (send, None)
        if views is None or not self._large(views[0]):
            return super().Reduce(sendbuf, recvbuf, op, root)
        send, recv = views

        def compressed() -> None:
            plan = reduction.plan(
                self._internal, "Reduce", send.flat, agreement.op_code(op), self._settings, send.block_shape, root
            )
            if plan is None:
                return MPI.Intracomm.Reduce(self, sendbuf, recvbuf, op, root)
            reduction.reduce(
                self._internal, send.flat, None if recv is None else recv.flat, plan, root, self._settings, self.stats
            )
            self.stats.add(calls=1)

        self._choose("Reduce", send, compressed, lambda: MPI.Intracomm.Reduce(self, sendbuf, recvbuf, op, root))

    def Reduce_scatter_block(self, sendbuf, recvbuf, op: MPI.Op = MPI.SUM) -> None:
        """mpi4py's Reduce_scatter_block; each rank's block meets the bound."""
        views = self._reduction(sendbuf, recvbuf, blocks=self.Get_size()) if self._active() else None
        if views is not None:
            send, recv = views
            out = recv.block(0) if send is recv else recv.flat
            if send.count == 0 or out.size != send.count or send.flat.nbytes < self._settings.min_bytes:
                views = None  # empty, small, or a count mismatch that mpi4py reports
        if views is None:
            return super().Reduce_scatter_block(sendbuf, recvbuf, op)

        def compressed() -> None:
            plan = reduction.plan(
                self._internal,
                "Reduce_scatter_block",
                send.flat,
                agreement.op_code(op),
                self._settings,
                send.block_shape,
            )
            if plan is None:
                return MPI.Intracomm.Reduce_scatter_block(self, sendbuf, recvbuf, op)
            reduction.reduce_scatter_block(
                self._internal, send.flat, out, plan, send.count, send.block_shape, self._settings, self.stats
            )
            self.stats.add(calls=1)

        self._choose(
            "Reduce_scatter_block",
            send,
            compressed,
            lambda: MPI.Intracomm.Reduce_scatter_block(self, sendbuf, recvbuf, op),
        )

    # -- data movement -------------------------------------------------------------------------

    def _bcast_view(self, buf, root: int, consistent: bool | None) -> tuple[Buffer | None, bool]:
        if not self._active() or not 0 <= root < self.Get_size():
            return None, False
        keep = self._settings.consistent if consistent is None else bool(consistent)
        view = parse(buf, writable=self.Get_rank() != root)
        if not self._large(view):
            return None, False
        # a read-only root buffer cannot take the decoded values; it stays exact (deciding
        # this locally keeps the root on the compressed path with everyone else)
        return view, keep and view.flat.flags.writeable

    def Bcast(self, buf, root: int = 0, *, consistent: bool | None = None) -> None:
        """mpi4py's Bcast; receivers get the root's data within the bound. With
        ``consistent=True`` (default: the constructor's) the root's buffer becomes what they got."""
        view, keep = self._bcast_view(buf, root, consistent)
        if view is None:
            return super().Bcast(buf, root)

        def compressed() -> None:
            if not movement.bcast(self._internal, view, root, self._settings, keep, self.stats):
                MPI.Intracomm.Bcast(self, buf, root)

        self._choose("Bcast", view, compressed, lambda: MPI.Intracomm.Bcast(self, buf, root))

    def Ibcast(self, buf, root: int = 0, *, consistent: bool | None = None) -> MPI.Request:
        """Nonblocking Bcast; the returned request's Wait() completes it."""
        view, keep = self._bcast_view(buf, root, consistent)
        if view is None:
            return super().Ibcast(buf, root)
        comm = self._background

        def work() -> None:
            if not movement.bcast(comm, view, root, self._settings, keep, self.stats):
                comm.Bcast(buf, root)

        return self._worker.submit(work)

    def Gather(self, sendbuf, recvbuf, root: int = 0) -> None:
        """mpi4py's Gather; blocks from other ranks arrive within the bound, the root's own exact."""
        send = recv = None
        ok = False
        if self._active() and 0 <= root < self.Get_size():
            if self.Get_rank() == root:
                recv = parse(recvbuf, blocks=self.Get_size(), writable=True)
                send = None if is_in_place(sendbuf) else parse(sendbuf)
                ok = self._large(recv) and (
                    is_in_place(sendbuf)
                    or (send is not None and send.count == recv.count and send.flat.dtype == recv.flat.dtype)
                )
            elif not is_in_place(sendbuf):
                send = parse(sendbuf)
                ok = self._large(send)
        if not ok:
            return super().Gather(sendbuf, recvbuf, root)

        def compressed() -> None:
            if not movement.gather(self._internal, send, recv, root, self._settings, self.stats):
                MPI.Intracomm.Gather(self, sendbuf, recvbuf, root)

        self._choose(
            "Gather",
            recv if send is None else send,
            compressed,
            lambda: MPI.Intracomm.Gather(self, sendbuf, recvbuf, root),
        )

    def Scatter(self, sendbuf, recvbuf, root: int = 0) -> None:
        """mpi4py's Scatter; other ranks' blocks arrive within the bound, the root's own exact."""
        send = recv = None
        ok = False
        if self._active() and 0 <= root < self.Get_size():
            if self.Get_rank() == root:
                send = parse(sendbuf, blocks=self.Get_size())
                recv = None if is_in_place(recvbuf) else parse(recvbuf, writable=True)
                ok = self._large(send) and (
                    is_in_place(recvbuf)
                    or (recv is not None and send.count == recv.count and send.flat.dtype == recv.flat.dtype)
                )
            elif not is_in_place(recvbuf):
                recv = parse(recvbuf, writable=True)
                ok = self._large(recv)
        if not ok:
            return super().Scatter(sendbuf, recvbuf, root)

        def compressed() -> None:
            if not movement.scatter(self._internal, send, recv, root, self._settings, self.stats):
                MPI.Intracomm.Scatter(self, sendbuf, recvbuf, root)

        self._choose(
            "Scatter",
            send if recv is None else recv,
            compressed,
            lambda: MPI.Intracomm.Scatter(self, sendbuf, recvbuf, root),
        )

    def Allgather(self, sendbuf, recvbuf) -> None:
        """mpi4py's Allgather; every block within the bound, the same bytes on every rank."""
        send, recv = self._gather_views(sendbuf, recvbuf, send_blocks=1)
        if recv is None:
            return super().Allgather(sendbuf, recvbuf)

        def compressed() -> None:
            if not movement.allgather(self._internal, send, recv, self._settings, self.stats):
                MPI.Intracomm.Allgather(self, sendbuf, recvbuf)

        self._choose("Allgather", recv, compressed, lambda: MPI.Intracomm.Allgather(self, sendbuf, recvbuf))

    def Alltoall(self, sendbuf, recvbuf) -> None:
        """mpi4py's Alltoall; blocks from other ranks within the bound, a rank's own block exact."""
        send, recv = self._gather_views(sendbuf, recvbuf, send_blocks=self.Get_size())
        if recv is None:
            return super().Alltoall(sendbuf, recvbuf)

        def compressed() -> None:
            if not movement.alltoall(self._internal, send, recv, self._settings, self.stats):
                MPI.Intracomm.Alltoall(self, sendbuf, recvbuf)

        self._choose("Alltoall", recv, compressed, lambda: MPI.Intracomm.Alltoall(self, sendbuf, recvbuf))

    def _gather_views(self, sendbuf, recvbuf, send_blocks: int) -> tuple[Buffer | None, Buffer | None]:
        """(send or None if in place, recv) for Allgather/Alltoall, recv None if not compressible."""
        if not self._active():
            return None, None
        recv = parse(recvbuf, blocks=self.Get_size(), writable=True)
        if not self._large(recv):
            return None, None
        if is_in_place(sendbuf):
            return None, recv
        send = parse(sendbuf, blocks=send_blocks)
        if send is None or send.count != recv.count or send.flat.dtype != recv.flat.dtype:
            return None, None
        return send, recv

    def __repr__(self) -> str:
        if self._settings is None:
            return super().__repr__()
        s = self._settings
        bound = f"abs={s.abs:g}" if s.abs is not None else f"rel={s.rel:g}"
        return f"<CompressedComm size={self.Get_size()} {bound} codec={s.codec} min_bytes={s.min_bytes}>"


__all__ = ["CompressedComm", "CompressedRequest", "DEFAULT_MIN_BYTES"]
