"""Moving variable-length byte messages between ranks.

All traffic here runs on a private duplicate of the user's communicator, so no message can
match a user's receive (``ANY_SOURCE``/``ANY_TAG``) and no tag needs reserving.
Point-to-point messages are received with a matched probe (``Mprobe``) to learn their
length: one message per hop instead of a length message followed by the data.
Byte buffers travel as ``uint8`` numpy arrays or ``bytes``: no pickling, no extra copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from mpi4py import MPI

Payload = bytes | np.ndarray  # a compressed message: bytes, or a uint8 array

TAG_DOUBLING = 12
TAG_TREE = 13


def _as_bytes_buffer(payload: Payload):
    return payload if isinstance(payload, np.ndarray) else np.frombuffer(payload, np.uint8)


def recv_bytes(comm: MPI.Intracomm, source: int, tag: int) -> np.ndarray:
    """Receive one message of any length from `source`."""
    status = MPI.Status()
    message = comm.Mprobe(source, tag, status)
    buf = np.empty(status.Get_count(MPI.BYTE), np.uint8)
    message.Recv(buf)
    return buf


def sendrecv_bytes(comm: MPI.Intracomm, payload: Payload, dest: int, source: int, tag: int) -> np.ndarray:
    """Send `payload` to `dest` while receiving a message of any length from `source`."""
    request = comm.Isend(_as_bytes_buffer(payload), dest, tag)
    try:
        return recv_bytes(comm, source, tag)
    finally:
        request.Wait()


def bcast_bytes(comm: MPI.Intracomm, payload: Payload | None, root: int) -> tuple[Payload, int]:
    """Binomial-tree broadcast of a byte message known only at `root` (log2 N hops).
    Returns the message and how many times this rank sent it."""
    rank, size = comm.Get_rank(), comm.Get_size()
    relative = (rank - root) % size
    mask = 1
    while mask < size:  # receive from the parent: the rank that differs in the lowest set bit
        if relative & mask:
            payload = recv_bytes(comm, (rank - mask) % size, TAG_TREE)
            break
        mask <<= 1
    mask >>= 1
    requests = []
    while mask > 0:  # then forward to the children below that bit
        if relative + mask < size:
            requests.append(comm.Isend(_as_bytes_buffer(payload), (rank + mask) % size, TAG_TREE))
        mask >>= 1
    MPI.Request.Waitall(requests)
    return payload, len(requests)


def _offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate(([0], np.cumsum(lengths[:-1]))).astype(np.int64)


def _split(buf: np.ndarray, lengths: np.ndarray) -> list[np.ndarray]:
    ends = np.cumsum(lengths)
    return [buf[end - n : end] for n, end in zip(lengths.tolist(), ends.tolist(), strict=True)]


def gather_bytes(comm: MPI.Intracomm, payload: Payload, root: int) -> list[np.ndarray] | None:
    """Every rank's message, in rank order, at `root` (None elsewhere)."""
    mine = np.array([len(payload)], np.int64)
    lengths = np.empty(comm.Get_size(), np.int64) if comm.Get_rank() == root else None
    comm.Gather(mine, lengths, root)
    if comm.Get_rank() != root:
        comm.Gatherv(_as_bytes_buffer(payload), None, root)
        return None
    buf = np.empty(int(lengths.sum()), np.uint8)
    comm.Gatherv(_as_bytes_buffer(payload), [buf, (lengths, _offsets(lengths)), MPI.BYTE], root)
    return _split(buf, lengths)


def allgather_bytes(comm: MPI.Intracomm, payload: Payload) -> list[np.ndarray]:
    """Every rank's message, in rank order, on every rank."""
    lengths = np.empty(comm.Get_size(), np.int64)
    comm.Allgather(np.array([len(payload)], np.int64), lengths)
    buf = np.empty(int(lengths.sum()), np.uint8)
    comm.Allgatherv(_as_bytes_buffer(payload), [buf, (lengths, _offsets(lengths)), MPI.BYTE])
    return _split(buf, lengths)


def scatter_bytes(comm: MPI.Intracomm, payloads: Sequence[Payload] | None, root: int) -> np.ndarray:
    """Message i of `root`'s list to rank i."""
    mine = np.empty(1, np.int64)
    if comm.Get_rank() == root:
        lengths = np.array([len(p) for p in payloads], np.int64)
        comm.Scatter(lengths, mine, root)
        send = np.frombuffer(b"".join(bytes(p) if isinstance(p, np.ndarray) else p for p in payloads), np.uint8)
        buf = np.empty(int(mine[0]), np.uint8)
        comm.Scatterv([send, (lengths, _offsets(lengths)), MPI.BYTE], buf, root)
        return buf
    comm.Scatter(None, mine, root)
    buf = np.empty(int(mine[0]), np.uint8)
    comm.Scatterv(None, buf, root)
    return buf


def alltoall_bytes(comm: MPI.Intracomm, payloads: Sequence[Payload]) -> list[np.ndarray]:
    """Message i of every rank's list to rank i; returns the messages received, by source rank."""
    send_lengths = np.array([len(p) for p in payloads], np.int64)
    recv_lengths = np.empty(comm.Get_size(), np.int64)
    comm.Alltoall(send_lengths, recv_lengths)
    send = np.frombuffer(b"".join(bytes(p) if isinstance(p, np.ndarray) else p for p in payloads), np.uint8)
    buf = np.empty(int(recv_lengths.sum()), np.uint8)
    comm.Alltoallv(
        [send, (send_lengths, _offsets(send_lengths)), MPI.BYTE],
        [buf, (recv_lengths, _offsets(recv_lengths)), MPI.BYTE],
    )
    return _split(buf, recv_lengths)
