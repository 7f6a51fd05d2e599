"""The reductions of CompressedComm (Allreduce, Iallreduce, Reduce, Reduce_scatter_block): how
each reads mpi4py's arguments, and which path it takes (see :class:`..comm.CompressedComm`)."""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

from .. import reduction
from .. import settings as agreement
from ..buffers import ALIASED, Buffer, is_in_place, parse
from ..guard import Guard
from ..rescue import problem_of
from ..settings import INVALID, MAX, MIN, SUM
from ..transport.channel import Channel

_REDUCIBLE = (SUM, MAX, MIN, INVALID)  # INVALID: refused on every rank by the start agreement


class ReductionMethods:
    """Allreduce, Iallreduce, Reduce and Reduce_scatter_block (a mixin of CompressedComm)."""

    def _reduction_views(self, sendbuf, recvbuf, blocks: int = 1):
        """(x, out) views when this reduction can be compressed, else None."""
        if is_in_place(sendbuf):
            recv = parse(recvbuf, blocks=blocks, writable=True)
            return None if recv is None else (recv, recv)
        send = parse(sendbuf, blocks=blocks)
        if send is None:
            return None
        recv = parse(recvbuf, writable=True)
        if recv is not None and np.shares_memory(send.flat, recv.flat):
            # MPI refuses aliased buffers (on the plain path too): the same error on every rank
            return send, Buffer(send.flat[: send.count], send.count, 1, send.block_shape, ALIASED)
        if recv is None or send.flat.dtype != recv.flat.dtype or (blocks == 1 and send.count != recv.count):
            # a receive buffer that mpi4py would refuse on this rank only (bytes, another
            # type or count): this rank takes the others' path with the send buffer's
            # signature and a problem, and the collective fails on every rank
            problem = problem_of(sendbuf, recvbuf, writable=(1,))
            return send, Buffer(send.flat[: send.count], send.count, 1, send.block_shape, problem)
        return send, recv

    def _reduce_work(self, what: str, send: Buffer, out, code: int, mode: str, root: int = 0, channel=None):
        settings, size = self._settings, self.Get_size()

        def work(agreed) -> bool:
            plan = reduction.make_plan(agreed, code, size, send.flat, settings, send.block_shape)
            if plan is None:
                return False
            job = reduction.Reduction(
                self._mailbox(channel), self._layout, send.flat, plan, settings, self.stats, self._choose_algorithm
            )
            if mode == "allreduce":
                job.allreduce(out)
            elif mode == "reduce":
                job.reduce(out, root)
            else:
                job.reduce_scatter_block(out, send.count, send.block_shape)
            self.stats.add(calls=1)
            return True

        return work

    def Allreduce(self, sendbuf, recvbuf, op: MPI.Op = MPI.SUM) -> None:
        """mpi4py's Allreduce; SUM/MAX/MIN of large float buffers within the bound, the same
        bits on every rank."""
        if not self._active():
            return super().Allreduce(sendbuf, recvbuf, op)
        self._guard.next_call()
        args = (sendbuf, recvbuf, op)

        def run():
            return MPI.Intracomm.Allreduce(self, sendbuf, recvbuf, op)

        views = self._reduction_views(sendbuf, recvbuf)
        code = agreement.op_code(op)
        x = views[0] if views else None
        message = recvbuf if is_in_place(sendbuf) else sendbuf
        call = self._call("Allreduce", x, code, problem=views[1].problem if views else 0, message=message)
        if views is None or code not in _REDUCIBLE or not self._large(x):
            return self._run("Allreduce", call, run, args)
        self._run(
            "Allreduce",
            call,
            run,
            args,
            self._reduce_work("Allreduce", x, views[1].flat, code, "allreduce"),
            lambda: reduction.maxima(x.flat, code, x.block_shape),
            x.block_bytes,
            x.block_bytes,
            force=code == INVALID,
        )

    def Iallreduce(self, sendbuf, recvbuf, op: MPI.Op = MPI.SUM) -> MPI.Request:
        """Nonblocking Allreduce; the returned request's Wait() completes it.

        On a communicator that may compress, every call runs on the worker thread, in call
        order, through the same guard as the blocking collectives (on the worker's own
        communicators): a rank whose message is under min_bytes meets one whose message is
        over it, and a refused buffer, in an agreement, and Wait() raises the same error on
        every rank."""
        guard = self._worker_guard
        if guard is None:
            return super().Iallreduce(sendbuf, recvbuf, op)
        views = self._reduction_views(sendbuf, recvbuf)
        code = agreement.op_code(op)
        x = views[0] if views else None
        message = recvbuf if is_in_place(sendbuf) else sendbuf
        call = self._call("Allreduce", x, code, problem=views[1].problem if views else 0, message=message)
        args = (sendbuf, recvbuf, op)

        def run():
            return MPI.Intracomm.Allreduce(guard.comm, sendbuf, recvbuf, op)

        if views is None or code not in _REDUCIBLE or not (self._large(x) or code == INVALID):

            def plain_job() -> None:
                guard.next_call()
                guard.plain("Allreduce", call, run, args)

            return self._worker.submit(plain_job)
        work = self._reduce_work("Iallreduce", x, views[1].flat, code, "allreduce", channel=guard.channel)

        def job() -> None:
            guard.next_call()
            outcome = guard.compressed(call, lambda: reduction.maxima(x.flat, code, x.block_shape), work)
            if not outcome.done:
                run()

        return self._worker.submit(job)

    def _background(self) -> Guard:
        """The worker thread's guard: its own channel (with a window, for ranks that straddle
        min_bytes) and its own duplicate for plain calls; made at construction (collective)."""
        channel = Channel(self, window=True)
        channel.node_of, channel.stats = self.nodes.node_of, self.stats
        return Guard(MPI.Intracomm(MPI.Intracomm.Dup(self)), channel, self._settings.min_bytes, self.stats)

    def Reduce(self, sendbuf, recvbuf, op: MPI.Op = MPI.SUM, root: int = 0) -> None:
        """mpi4py's Reduce; the root's result meets the bound. Other ranks' recvbuf is untouched."""
        if not self._active():
            return super().Reduce(sendbuf, recvbuf, op, root)
        root = self._root("Reduce", root)
        self._guard.next_call()
        args = (sendbuf, recvbuf, op, root)

        def run():
            return MPI.Intracomm.Reduce(self, sendbuf, recvbuf, op, root)

        rank = self.Get_rank()
        views = None
        if rank == root:
            views = self._reduction_views(sendbuf, recvbuf)
        elif not is_in_place(sendbuf):
            send = parse(sendbuf)
            views = None if send is None else (send, None)
        code = agreement.op_code(op)
        x = views[0] if views else None
        problem = views[1].problem if views and views[1] is not None else 0
        message = recvbuf if is_in_place(sendbuf) else sendbuf
        call = self._call("Reduce", x, code, root, problem, message=message)
        if views is None or code not in _REDUCIBLE or not self._large(x):
            return self._run("Reduce", call, run, args)
        out = views[1].flat if views[1] is not None else None
        self._run(
            "Reduce",
            call,
            run,
            args,
            self._reduce_work("Reduce", x, out, code, "reduce", root),
            lambda: reduction.maxima(x.flat, code, x.block_shape),
            x.block_bytes,
            x.block_bytes,
            force=code == INVALID,
        )

    def Reduce_scatter_block(self, sendbuf, recvbuf, op: MPI.Op = MPI.SUM) -> None:
        """mpi4py's Reduce_scatter_block; each rank's block meets the bound."""
        if not self._active():
            return super().Reduce_scatter_block(sendbuf, recvbuf, op)
        self._guard.next_call()
        args = (sendbuf, recvbuf, op)

        def run():
            return MPI.Intracomm.Reduce_scatter_block(self, sendbuf, recvbuf, op)

        views = self._reduction_views(sendbuf, recvbuf, blocks=self.Get_size())
        code = agreement.op_code(op)
        ok = views is not None
        if ok:
            send, recv = views
            out = recv.block(0) if send is recv else recv.flat
            ok = send.count > 0 and out.size == send.count and send.flat.nbytes >= self._settings.min_bytes
        call = self._call("Reduce_scatter_block", views[0] if ok else None, code, problem=views[1].problem if ok else 0)
        if not ok or code not in _REDUCIBLE:
            return self._run("Reduce_scatter_block", call, run, args)
        self._run(
            "Reduce_scatter_block",
            call,
            run,
            args,
            self._reduce_work("Reduce_scatter_block", send, out, code, "reduce_scatter_block"),
            lambda: reduction.maxima(send.flat, code, send.block_shape),
            send.flat.nbytes,
            send.flat.nbytes,
            force=code == INVALID,
        )
