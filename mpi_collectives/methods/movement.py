"""The data-movement collectives of CompressedComm (Bcast, Ibcast, Gather, Scatter, Allgather,
Alltoall): how each reads mpi4py's arguments, and which path it takes (see
:class:`..comm.CompressedComm`)."""

from __future__ import annotations

from mpi4py import MPI

from ..buffers import Buffer, is_in_place, parse, root_index
from ..movement import collectives as movement


class MovementMethods:
    """Bcast, Ibcast, Gather, Scatter, Allgather and Alltoall (a mixin of CompressedComm)."""

    def _bcast_view(self, buf, root: int) -> Buffer | None:
        return parse(buf, writable=self.Get_rank() != root)

    def Bcast(self, buf, root: int = 0, *, consistent: bool | None = None) -> None:
        """mpi4py's Bcast; receivers get the root's data within the bound. With
        ``consistent=True`` (default: the constructor's) the root's buffer becomes what they got."""
        if not self._active():
            return super().Bcast(buf, root)
        root = self._root("Bcast", root)
        self._guard.next_call()
        args = (buf, root)

        def run():
            return MPI.Intracomm.Bcast(self, buf, root)

        view = self._bcast_view(buf, root)
        call = self._call("Bcast", view, root=root, message=buf)
        if not self._large(view):
            return self._run("Bcast", call, run, args)
        keep = self._keep(view, consistent)
        self._run(
            "Bcast",
            call,
            run,
            args,
            self._bcast_work(view, root, keep),
            lambda: movement.bcast_maxima(self._settings, view, self.Get_rank(), root),
            view.block_bytes,
            view.block_bytes,
        )

    def _keep(self, view: Buffer, consistent: bool | None) -> bool:
        keep = self._settings.consistent if consistent is None else bool(consistent)
        # a read-only root buffer cannot take the decoded values; it stays exact (deciding
        # this locally keeps the root on the compressed path with everyone else)
        return keep and view.flat.flags.writeable and not view.problem

    def _bcast_work(self, view: Buffer, root: int, keep: bool, channel=None):
        def work(agreed) -> bool:
            done = movement.bcast(
                self._mailbox(channel), self._layout, view, root, self._settings, keep, self.stats, agreed
            )
            if done:
                self.stats.add(calls=1)
            return done

        return work

    def Ibcast(self, buf, root: int = 0, *, consistent: bool | None = None) -> MPI.Request:
        """Nonblocking Bcast; the returned request's Wait() completes it. On a communicator
        that may compress, every call runs on the worker thread through the guard (see
        Iallreduce)."""
        guard = self._worker_guard
        if guard is None:
            return super().Ibcast(buf, root)
        index = root_index(root, self.Get_size())
        if index is None:  # no rank: every rank's Wait() raises, as the blocking Bcast does

            def refused() -> None:
                guard.next_call()
                guard.refuse_root("Bcast", root)

            return self._worker.submit(refused)
        root = index
        view = self._bcast_view(buf, root)
        call = self._call("Bcast", view, root=root, message=buf)
        args = (buf, root)

        def run():
            return MPI.Intracomm.Bcast(guard.comm, buf, root)

        if not self._large(view):

            def plain_job() -> None:
                guard.next_call()
                guard.plain("Bcast", call, run, args)

            return self._worker.submit(plain_job)
        work = self._bcast_work(view, root, self._keep(view, consistent), channel=guard.channel)

        def job() -> None:
            guard.next_call()
            maxima = lambda: movement.bcast_maxima(self._settings, view, self.Get_rank(), root)  # noqa: E731
            outcome = guard.compressed(call, maxima, work)
            if not outcome.done:
                run()

        return self._worker.submit(job)

    def Gather(self, sendbuf, recvbuf, root: int = 0) -> None:
        """mpi4py's Gather; blocks from other nodes arrive within the bound, the others exact."""
        if not self._active():
            return super().Gather(sendbuf, recvbuf, root)
        root = self._root("Gather", root)
        self._guard.next_call()
        args = (sendbuf, recvbuf, root)

        def run():
            return MPI.Intracomm.Gather(self, sendbuf, recvbuf, root)

        send = recv = None
        ok = False
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
        template = recv if send is None else send
        problem = (recv.problem if recv is not None else 0) or (send.problem if send is not None else 0)
        call = self._call("Gather", template if ok else None, root=root, problem=problem)
        if not ok:
            return self._run("Gather", call, run, args)
        own = send.flat if send is not None else recv.block(root)

        def work(agreed) -> bool:
            done = movement.gather(self._mailbox(), self._layout, send, recv, root, self._settings, self.stats, agreed)
            self.stats.add(calls=int(done))
            return done

        self._run(
            "Gather",
            call,
            run,
            args,
            work,
            lambda: movement.gather_maxima(self._settings, own, (own.size,))[:2],
            template.block_bytes,
            template.block_bytes * self.Get_size(),
        )

    def Scatter(self, sendbuf, recvbuf, root: int = 0) -> None:
        """mpi4py's Scatter; blocks for other nodes arrive within the bound, the others exact."""
        if not self._active():
            return super().Scatter(sendbuf, recvbuf, root)
        root = self._root("Scatter", root)
        self._guard.next_call()
        args = (sendbuf, recvbuf, root)

        def run():
            return MPI.Intracomm.Scatter(self, sendbuf, recvbuf, root)

        send = recv = None
        ok = False
        rank = self.Get_rank()
        if rank == root:
            send = parse(sendbuf, blocks=self.Get_size())
            recv = None if is_in_place(recvbuf) else parse(recvbuf, writable=True)
            ok = self._large(send) and (
                is_in_place(recvbuf)
                or (recv is not None and send.count == recv.count and send.flat.dtype == recv.flat.dtype)
            )
        elif not is_in_place(recvbuf):
            recv = parse(recvbuf, writable=True)
            ok = self._large(recv)
        template = send if recv is None else recv
        problem = (recv.problem if recv is not None else 0) or (send.problem if send is not None else 0)
        call = self._call("Scatter", template if ok else None, root=root, problem=problem)
        if not ok:
            return self._run("Scatter", call, run, args)

        def work(agreed) -> bool:
            done = movement.scatter(self._mailbox(), self._layout, send, recv, root, self._settings, self.stats, agreed)
            self.stats.add(calls=int(done))
            return done

        def maxima():
            if rank != root:
                return movement.gather_maxima(self._settings, template.flat[:0], (0,))[:2]
            return movement.gather_maxima(self._settings, send.flat, (send.count,))[:2]

        self._run(
            "Scatter",
            call,
            run,
            args,
            work,
            maxima,
            template.block_bytes,
            template.block_bytes * self.Get_size(),
        )

    def Allgather(self, sendbuf, recvbuf) -> None:
        """mpi4py's Allgather; every block within the bound, the same bytes on every rank."""
        self._gather_like("Allgather", sendbuf, recvbuf, 1)

    def Alltoall(self, sendbuf, recvbuf) -> None:
        """mpi4py's Alltoall; blocks from other nodes within the bound, the others exact."""
        self._gather_like("Alltoall", sendbuf, recvbuf, self.Get_size())

    def _gather_like(self, what: str, sendbuf, recvbuf, send_blocks: int) -> None:
        plain_method = getattr(MPI.Intracomm, what)
        if not self._active():
            return plain_method(self, sendbuf, recvbuf)
        self._guard.next_call()
        args = (sendbuf, recvbuf)

        def run():
            return plain_method(self, sendbuf, recvbuf)

        send, recv = self._gather_views(sendbuf, recvbuf, send_blocks)
        problem = (recv.problem if recv is not None else 0) or (send.problem if send is not None else 0)
        call = self._call(what, recv, problem=problem, message=recvbuf, blocks=self.Get_size())
        if recv is None:
            return self._run(what, call, run, args)
        own = send.flat if send is not None else (recv.block(self.Get_rank()) if what == "Allgather" else recv.flat)
        shape = send.block_shape if send is not None else recv.block_shape

        def work(agreed) -> bool:
            function = movement.allgather if what == "Allgather" else movement.alltoall
            done = function(self._mailbox(), self._layout, send, recv, self._settings, self.stats, agreed)
            self.stats.add(calls=int(done))
            return done

        self._run(
            what,
            call,
            run,
            args,
            work,
            lambda: movement.gather_maxima(self._settings, own, shape),
            recv.block_bytes,
            recv.flat.nbytes,
        )

    def _gather_views(self, sendbuf, recvbuf, send_blocks: int) -> tuple[Buffer | None, Buffer | None]:
        """(send or None if in place, recv) for Allgather/Alltoall, recv None if not compressible."""
        recv = parse(recvbuf, blocks=self.Get_size(), writable=True)
        if not self._large(recv):
            return None, None
        if is_in_place(sendbuf):
            return None, recv
        send = parse(sendbuf, blocks=send_blocks)
        if send is None or send.count != recv.count or send.flat.dtype != recv.flat.dtype:
            return None, None
        return send, recv
