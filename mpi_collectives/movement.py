"""Collectives that move data without combining it: each block is compressed once, at its
source, with errbound; compressed bytes are what travels and what is forwarded.

With ``rel``, the bound is rel times the value range of all the data the collective moves
(the root's buffer for Bcast and Scatter; every rank's blocks for Gather, Allgather and
Alltoall, found by the same small Allreduce that checks sizes, datatypes and roots).
"""

from __future__ import annotations

import numpy as np
from mpi4py import MPI

import errbound

from . import bounds, exchange
from .bounds import Settings
from .buffers import Buffer
from .compute import compute
from .errors import MismatchError
from .stats import Stats


def _compress(values: np.ndarray, shape: tuple[int, ...], bound: float, codec: str) -> bytes:
    with compute():
        return errbound.compress(values.reshape(shape), codec=codec, abs=bound)


def _decompress_into(payload, target: np.ndarray) -> None:
    with compute():
        values = errbound.decompress(payload)
    if values.size != target.size or values.dtype != target.dtype:
        raise MismatchError(f"received {values.size} {values.dtype} values for a block of "
                            f"{target.size} {target.dtype}")
    target[...] = np.ravel(values, order="K")


def _range(settings: Settings, *arrays: np.ndarray) -> list[float]:
    """[max, -min] of the finite values, for the agreement vector (only rel needs them)."""
    lo, hi = np.inf, -np.inf
    if settings.rel is not None:
        for a in arrays:
            a_lo, a_hi, _ = bounds.finite_stats(a)
            lo, hi = min(lo, a_lo), max(hi, a_hi)
    return [hi, -lo]


def _bound(comm, what: str, settings: Settings, count: int, dtype: np.dtype, root: int,
           *local: np.ndarray) -> float:
    hi, neg_lo = bounds.agree(comm, what, {"count": count, "datatype size": bounds.dtype_code(dtype),
                                           "root": root}, _range(settings, *local))
    return bounds.resolve_bound(settings, -neg_lo, hi)


def bcast(comm: MPI.Intracomm, buf: Buffer, root: int, settings: Settings, consistent: bool,
          stats: Stats) -> bool:
    """False: the bound is zero (rel on constant data) and the caller uses plain MPI."""
    rank = comm.Get_rank()
    mine = (buf.flat,) if rank == root else ()
    bound = _bound(comm, "Bcast", settings, buf.count, buf.flat.dtype, root, *mine)
    if not bound > 0:
        return False
    payload = _compress(buf.flat, buf.block_shape, bound, settings.codec) if rank == root else None
    payload, sends = exchange.bcast_bytes(comm, payload, root)
    stats.add(sent=sends * len(payload), raw=sends * buf.flat.nbytes, calls=1)
    if rank != root or consistent:
        _decompress_into(payload, buf.flat)
    return True


def gather(comm: MPI.Intracomm, send: Buffer | None, recv: Buffer | None, root: int,
           settings: Settings, stats: Stats) -> bool:
    """send is None at a root that gathers in place; recv is None except at the root."""
    rank = comm.Get_rank()
    own = send.flat if send is not None else recv.block(root)
    template = recv if rank == root else send
    bound = _bound(comm, "Gather", settings, template.count, own.dtype, root, own)
    if not bound > 0:
        return False
    payload = b""
    if rank != root:
        payload = _compress(send.flat, send.block_shape, bound, settings.codec)
        stats.add(sent=len(payload), raw=send.flat.nbytes)
    stats.add(calls=1)
    payloads = exchange.gather_bytes(comm, payload, root)
    if rank == root:
        for i, data in enumerate(payloads):
            if i != root:
                _decompress_into(data, recv.block(i))
        if send is not None:
            recv.block(root)[...] = send.flat
    return True


def scatter(comm: MPI.Intracomm, send: Buffer | None, recv: Buffer | None, root: int,
            settings: Settings, stats: Stats) -> bool:
    """send is None except at the root; recv is None at a root that scatters in place."""
    rank = comm.Get_rank()
    template = send if rank == root else recv
    mine = (send.flat,) if rank == root else ()
    bound = _bound(comm, "Scatter", settings, template.count, template.flat.dtype, root, *mine)
    if not bound > 0:
        return False
    payloads = None
    if rank == root:
        payloads = [b"" if i == root else _compress(send.block(i), send.block_shape, bound, settings.codec)
                    for i in range(comm.Get_size())]
        stats.add(sent=sum(map(len, payloads)), raw=send.flat.nbytes - send.block(root).nbytes)
    stats.add(calls=1)
    data = exchange.scatter_bytes(comm, payloads, root)
    if rank != root:
        _decompress_into(data, recv.flat)
    elif recv is not None:
        recv.flat[...] = send.block(root)
    return True


def allgather(comm: MPI.Intracomm, send: Buffer | None, recv: Buffer, settings: Settings,
              stats: Stats) -> bool:
    """Every rank decodes every block, its own included: the result is the same bytes everywhere."""
    rank, size = comm.Get_rank(), comm.Get_size()
    own = send.flat if send is not None else recv.block(rank)
    bound = _bound(comm, "Allgather", settings, recv.count, recv.flat.dtype, 0, own)
    if not bound > 0:
        return False
    shape = send.block_shape if send is not None else recv.block_shape
    payload = _compress(own, shape, bound, settings.codec)
    stats.add(sent=(size - 1) * len(payload), raw=(size - 1) * own.nbytes, calls=1)
    for i, data in enumerate(exchange.allgather_bytes(comm, payload)):
        _decompress_into(data, recv.block(i))
    return True


def alltoall(comm: MPI.Intracomm, send: Buffer | None, recv: Buffer, settings: Settings,
             stats: Stats) -> bool:
    """Block i of every rank to rank i; a rank's block to itself is copied exactly."""
    rank, size = comm.Get_rank(), comm.Get_size()
    source = send if send is not None else recv
    bound = _bound(comm, "Alltoall", settings, recv.count, recv.flat.dtype, 0, source.flat)
    if not bound > 0:
        return False
    payloads = [b"" if i == rank else _compress(source.block(i), source.block_shape, bound, settings.codec)
                for i in range(size)]
    stats.add(sent=sum(map(len, payloads)), raw=source.flat.nbytes - source.block(rank).nbytes, calls=1)
    received = exchange.alltoall_bytes(comm, payloads)
    if send is not None:
        recv.block(rank)[...] = send.block(rank)
    for i, data in enumerate(received):
        if i != rank:
            _decompress_into(data, recv.block(i))
    return True
