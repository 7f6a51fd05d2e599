"""Scratch stand-ins for a plain call whose buffer mpi4py refused on this rank.

mpi4py checks its buffers before MPI is entered: a read-only receive buffer or a
non-contiguous array raises BufferError on that rank only, while the other ranks wait
inside the collective forever. :class:`..guard.Guard` then completes the collective on this
rank with scratch buffers of the same signature (count and datatype of every argument), so
the others return, and every rank raises the same InvalidBufferError.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from mpi4py import MPI

from .buffers import ALIASED, NOT_CONTIGUOUS, READ_ONLY, is_in_place

UNUSABLE = 3


def _array(msg):
    """(numpy array, MPI datatype) of a buffer argument, or None where it cannot be told."""
    buf, datatype = msg, None
    if isinstance(msg, (list, tuple)) and msg:
        buf = msg[0]
        datatype = msg[-1] if isinstance(msg[-1], MPI.Datatype) else None
        if len(msg) > 3 or (len(msg) == 3 and not isinstance(msg[1], int)):
            return None
    try:
        # bytes, bytearray, array.array: as the buffer protocol shows them to mpi4py (a bytes
        # object is read-only unsigned chars, not a numpy string)
        array = buf if isinstance(buf, np.ndarray) else np.asarray(memoryview(buf))
    except (TypeError, ValueError):
        return None
    if datatype is None:
        try:
            datatype = MPI.Datatype.fromcode(array.dtype.char)
        except (KeyError, ValueError):
            return None
    if isinstance(msg, (list, tuple)) and len(msg) == 3:
        count = msg[1]
        if count * datatype.Get_size() > array.nbytes:
            return None
        return np.zeros(count * datatype.Get_size(), np.uint8), datatype
    if array.nbytes % datatype.Get_size():
        return None
    return np.zeros(array.nbytes, np.uint8), datatype


def problem_of(*messages, writable: tuple = ()) -> int:
    """What is wrong with these buffer arguments (the writable ones must be writable)."""
    for i, msg in enumerate(messages):
        if is_in_place(msg):
            continue
        buf = msg[0] if isinstance(msg, (list, tuple)) and msg else msg
        if isinstance(buf, np.ndarray):
            if not (buf.flags.c_contiguous or buf.flags.f_contiguous):
                return NOT_CONTIGUOUS
            if i in writable and not buf.flags.writeable:
                return READ_ONLY
        else:
            try:
                view = memoryview(buf)
            except TypeError:
                continue
            if not view.contiguous:
                return NOT_CONTIGUOUS
            if i in writable and view.readonly:
                return READ_ONLY
    if len(messages) >= 2 and _overlap(messages[0], messages[1]):
        return ALIASED
    return UNUSABLE


def _overlap(send, recv) -> bool:
    """Whether a send and a receive buffer share memory (MPI refuses that: MPI.IN_PLACE)."""
    if is_in_place(send) or is_in_place(recv):
        return False
    arrays = []
    for msg in (send, recv):
        buf = msg[0] if isinstance(msg, (list, tuple)) and msg else msg
        try:
            arrays.append(buf if isinstance(buf, np.ndarray) else np.asarray(memoryview(buf)))
        except (TypeError, ValueError):
            return False
    return bool(np.shares_memory(*arrays))


def _scratch(msg, blocks: int = 1):
    """[bytes, count, datatype] of the same signature as msg; the count is per block, as
    mpi4py reads an explicit count for the side of a collective that has one block per rank."""
    found = _array(msg)
    if found is None:
        return None
    data, datatype = found
    count = data.nbytes // datatype.Get_size()
    if count % blocks:
        return None
    return [data, count // blocks, datatype]


def _like(scratch: list, blocks: int = 1) -> list:
    """A scratch message of the same datatype as `scratch`, with 1/blocks of its count."""
    data, count, datatype = scratch
    return [np.zeros(count // blocks * datatype.Get_size(), np.uint8), count // blocks, datatype]


def stand_in(what: str, comm: MPI.Intracomm, args: tuple) -> tuple[int, Callable[[], None]] | None:
    """(problem, a call that completes `what` with scratch buffers), or None if the arguments
    cannot be described."""
    plain = MPI.Intracomm
    if what in ("Allreduce", "Reduce_scatter_block"):
        sendbuf, recvbuf, op = args
        # mpi4py requires the receive buffer to match the send buffer; the others' call has the
        # send buffer's signature, so the stand-in takes it for both (a bytes receive buffer
        # beside a float send buffer would make the stand-in itself fail)
        send = None if is_in_place(sendbuf) else _scratch(sendbuf)
        if is_in_place(sendbuf):
            recv = _scratch(recvbuf)
        elif send is not None and what == "Allreduce":
            recv = _like(send)
        elif send is not None and send[1] % comm.Get_size() == 0:
            recv = _like(send, comm.Get_size())
        else:
            recv = None
        if recv is None:
            return None
        problem = problem_of(sendbuf, recvbuf, writable=(1,))
        if what == "Allreduce":
            return problem, lambda: plain.Allreduce(comm, MPI.IN_PLACE if send is None else send, recv, op)
        return problem, lambda: plain.Reduce_scatter_block(comm, MPI.IN_PLACE if send is None else send, recv, op)
    if what == "Reduce":
        sendbuf, recvbuf, op, root = args
        root_here = comm.Get_rank() == root
        send = None if is_in_place(sendbuf) else _scratch(sendbuf)
        if send is None and not is_in_place(sendbuf):
            return None
        recv = None
        if root_here:
            recv = _like(send) if send is not None else _scratch(recvbuf)
            if recv is None:
                return None
        problem = problem_of(sendbuf, recvbuf if root_here else None, writable=(1,))
        return problem, lambda: plain.Reduce(comm, MPI.IN_PLACE if send is None else send, recv, op, root)
    if what == "Bcast":
        buf, root = args
        scratch = _scratch(buf)
        if scratch is None:
            return None
        problem = problem_of(buf, writable=() if comm.Get_rank() == root else (0,))
        return problem, lambda: plain.Bcast(comm, scratch, root)
    if what in ("Allgather", "Alltoall", "Gather", "Scatter"):
        sendbuf, recvbuf = args[:2]
        root = args[2] if len(args) > 2 else None
        root_here = root is None or comm.Get_rank() == root
        needs_send = not (is_in_place(sendbuf) or (what == "Scatter" and not root_here))
        needs_recv = not (is_in_place(recvbuf) or (what == "Gather" and not root_here))
        size = comm.Get_size()
        send = _scratch(sendbuf, size if what in ("Alltoall", "Scatter") else 1) if needs_send else None
        recv = _scratch(recvbuf, size if what in ("Alltoall", "Allgather", "Gather") else 1) if needs_recv else None
        if (needs_send and send is None) or (needs_recv and recv is None):
            return None
        send_arg = send if needs_send else (MPI.IN_PLACE if is_in_place(sendbuf) else None)
        recv_arg = recv if needs_recv else (MPI.IN_PLACE if is_in_place(recvbuf) else None)
        problem = problem_of(sendbuf, recvbuf, writable=(1,))
        method = getattr(plain, what)
        if root is None:
            return problem, lambda: method(comm, send_arg, recv_arg)
        return problem, lambda: method(comm, send_arg, recv_arg, root)
    return None
