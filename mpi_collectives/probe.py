"""What construction measures, once per process, so that the first compressed call is neither
a compilation nor a guess.

* ``warm_up``: errbound's kernels compile (or load from numba's cache) on first use, which
  took seconds inside the first timed collective; they are run here on small arrays of both
  float types, every dimensionality the collectives use, rows longer than the quantizer's
  row ring, and both code widths, once per
  process, while construction is collective anyway; the ranks of a host split the work, each
  starting at its own part, and each kernel signature compiles once per host
  (``warm_up_per_host``).
* ``speeds``: one core's throughput of the compressed paths' compute on this machine (a
  smooth synthetic field of 2 MiB, cut in chunks as the pipelines cut them): quantize alone,
  quantize + encode and decode + write for reductions, the block codec for data movement.
  One rank per host measures while the others of the host sleep; every rank gets the result.
* ``agree``: every rank's measurements become the same numbers (the slowest rank's), so
  that the cost model decides the same on every rank.
* ``link``: the link between nodes (the lowest ranks of nodes 0 and 1 exchange 2 MiB both
  ways, best of three after a warm-up exchange; a 8-byte ping-pong for the latency) and the
  shared memory inside a node (two ranks of one node exchange 8 MiB).

Results are cached per process (the link per set of nodes), so Dup, Split and the
benchmark's many communicators pay once.
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time

import numpy as np
from mpi4py import MPI

from errbound import quantized as qz

from .compute import compute, threads_per_rank
from .errors import CollectiveFailedError
from .topology import Topology

_LOCK = threading.Lock()
_WARM: set[str] = set()
_SPEEDS: dict[str, float] | None = None
_LINKS: dict[tuple, dict[str, float]] = {}
_LINK_BYTES = 2 << 20
_MEMORY_BYTES = 8 << 20


def warm_up(codec: str = "fz", turn: tuple[int, int] = (0, 1)) -> None:
    """Run every kernel the collectives use once, on small arrays (numba compiles or loads them).

    ``turn=(i, n)``: this process is the i-th of n that warm up together on one numba cache
    (the ranks of a host): each runs its own share of the parts first, then the rest (by then
    mostly loaded), and the kernels compile once between them (``qz.first_use(shared=True)``);
    the first says that they compile."""
    with _LOCK:
        if codec in _WARM:
            return
        tasks = _warm_up_tasks(codec)
        index, count = turn
        # its own share first (every count-th part from its index: the parts of one rank share
        # the fewest signatures with the others'), then the rest, mostly loaded by then
        mine = list(range(index % len(tasks), len(tasks), max(count, 1)))
        order = mine + [i for i in range(len(tasks)) if i not in mine]
        with (
            qz.first_use(
                f"collectives-{codec}",
                "compressed collectives" + (f" (on {count} ranks of this host)" if count > 1 else ""),
                "Later runs load them from the cache (a job's first `CompressedComm` pays this once per machine).",
                shared=count > 1,
                say=index == 0,
            ),
            compute(),
        ):
            for i in order:
                tasks[i]()
        _WARM.add(codec)


_SHAPES = ((512,), (16, 32), (4, 8, 16), (2, 4, 8, 8))
# rows longer than the quantizer's row ring take kernels of their own: a 1-D message of over
# 64 Ki values (a 256 KiB float32 Allreduce) and a few such rows
_LONG = 1 << 16
_LONG_SHAPES = ((_LONG + 64,), (2, _LONG + 64))


def _warm_up_tasks(codec: str) -> list:
    """The warm-up in parts that compile different kernels or signatures: the quantized
    paths per float and code width, the block codec per float type, the reduction grid."""
    from .movement import blockcodec  # the block codec: imported here, not at start-up
    from .reduction import grid

    def quantized(dtype, int_dtype):
        for shape in _SHAPES + _LONG_SHAPES:
            n = math.prod(shape)
            x = np.cumsum(np.linspace(0.0, 1.0, n)).astype(dtype).reshape(shape)
            residuals = qz.quantize_residuals(x, 2.0**-10, out=np.empty(n, int_dtype))
            blob = qz.encode_codes(residuals, shape, predict=False)
            acc = np.zeros(n, int_dtype)
            qz.decode_codes(blob, add_to=acc)
            qz.decode_codes(qz.encode_codes(acc, shape), scratch_slot="collective-codes")
            out = np.empty(n, dtype)
            qz.dequantize_residuals(acc.copy(), shape, out, divisor=1024)
            qz.dequantize_residuals(acc.copy(), shape, out, eb=2.0**-10)
            codes = qz.quantize(x.reshape(-1), 2.0**-10, int_dtype, out=np.empty(n, int_dtype)).codes
            qz.predict(codes, shape, out=np.empty_like(codes))
            qz.dequantize(codes, 2.0**-10, out=out)

    def block_codec(dtype):
        for shape in _SHAPES + _LONG_SHAPES:
            n = math.prod(shape)
            flat = np.cumsum(np.linspace(0.0, 1.0, n)).astype(dtype)
            blockcodec.decode(blockcodec.encode(flat, shape, 1e-3, codec), np.empty(n, dtype))
            blockcodec.encode(flat, shape, 1e-3, codec, np.empty(n, dtype))

    def divide(int_dtype, dtype):
        grid.divide_into(np.arange(512, dtype=int_dtype), 7, np.empty(512, dtype))

    # a rank takes every count-th part first: with 2 ranks one takes the float32 parts and the
    # other the float64 ones, with 4 each takes one float and code width (the widths decide
    # the coders' signatures, the floats the quantizers'), so that they rarely wait on each other
    pairs = ((np.float32, np.int32), (np.float64, np.int64), (np.float32, np.int64), (np.float64, np.int32))
    tasks = [functools.partial(quantized, dtype, int_dtype) for dtype, int_dtype in pairs]
    tasks += [functools.partial(block_codec, np.float32), functools.partial(block_codec, np.float64)]
    # the grid's codes are as wide as the sums need, whatever the float type (both pairs each)
    tasks += [functools.partial(divide, np.int32, np.float32), functools.partial(divide, np.int64, np.float64)]
    tasks += [functools.partial(divide, np.int64, np.float32), functools.partial(divide, np.int32, np.float64)]
    return tasks


def warm_up_per_host(comm: MPI.Intracomm, codec: str = "fz") -> None:
    """warm_up() on every rank (collective), the ranks of each host together: numba's cache
    is per machine, so they split the host's compiles between them (each starts at its own
    share of the work; a kernel signature another rank compiles is waited for and loaded),
    and every kernel compiles once per host. errbound's first-use lock, where one process
    compiles while the others wait, covers its codecs' entry points, not the kernels of
    errbound.quantized and of this package that the collectives call directly."""
    names = comm.allgather(MPI.Get_processor_name())
    mine = names[comm.Get_rank()]
    on_host = [rank for rank, name in enumerate(names) if name == mine]
    failure = None
    try:
        warm_up(codec, (on_host.index(comm.Get_rank()), len(on_host)))
    except Exception as exc:  # noqa: BLE001 - raised on every rank below, not here alone
        failure = f"{type(exc).__name__}: {exc}"
    _quiet_wait(comm.Ibarrier())
    failures = [(rank, text) for rank, text in enumerate(comm.allgather(failure)) if text is not None]
    if failures:  # a rank that raised alone would leave the others waiting in its next collective
        rank, text = failures[0]
        raise CollectiveFailedError(f"compiling the collectives' kernels failed on rank {rank}: {text}")


def _field(count: int) -> np.ndarray:
    """A smooth 2-D field with some noise: compresses like simulation output at rel 1e-3."""
    rows = max(1, count // 512)
    rng = np.random.default_rng(7)
    y = np.linspace(0, 6 * np.pi, rows)[:, None]
    x = np.linspace(0, 4 * np.pi, 512)[None, :]
    field = np.sin(x) * np.cos(y) * 20 + np.cumsum(rng.standard_normal((rows, 512)), axis=1) * 0.05
    return field.astype(np.float32)


def measure_speeds(codec: str = "fz") -> dict[str, float]:
    """One core's bytes of floats per second for the compressed paths' compute (best of 3)."""
    from .movement import blockcodec

    x = _field(_LINK_BYTES // 4)
    flat = x.reshape(-1)
    rows = x.shape[0] // 4
    parts = [x[i : i + rows] for i in range(0, x.shape[0], rows)]
    bound = 1e-3 * float(np.ptp(flat))
    eb = bound / 4  # a reduction grid's half step for a few ranks
    out = np.empty_like(flat)

    def best(work) -> float:
        times = []
        for _ in range(3):
            start = time.perf_counter()
            work()
            times.append(time.perf_counter() - start)
        return flat.nbytes / min(times)

    with compute(threads=1):
        red = [qz.encode_codes(qz.quantize_residuals(p, eb), p.shape, predict=False) for p in parts]
        accs = [np.zeros(p.size, np.int32) for p in parts]

        def decode_all():
            at = 0
            for p, blob, acc in zip(parts, red, accs, strict=True):
                acc[:] = 0
                qz.decode_codes(blob, add_to=acc)
                qz.dequantize_residuals(acc, p.shape, out[at : at + p.size], eb=eb)
                at += p.size

        mov = [blockcodec.encode(p.reshape(-1), p.shape, bound, codec) for p in parts]

        def move_decode():
            at = 0
            for p, blob in zip(parts, mov, strict=True):
                blockcodec.decode(blob, out[at : at + p.size])
                at += p.size

        speeds = {
            "quantize": best(lambda: [qz.quantize(p, eb, np.int32) for p in parts]),
            "reduce_encode": best(
                lambda: [qz.encode_codes(qz.quantize_residuals(p, eb), p.shape, predict=False) for p in parts]
            ),
            "reduce_decode": best(decode_all),
            "move_encode": best(lambda: [blockcodec.encode(p.reshape(-1), p.shape, bound, codec) for p in parts]),
            "move_decode": best(move_decode),
        }
        sizes = sum(len(b) for b in mov), sum(len(b) for b in red)
    speeds["move_ratio_sample"] = flat.nbytes / sizes[0]
    speeds["reduce_ratio_sample"] = flat.nbytes / sizes[1]
    return speeds


def _quiet_wait(request: MPI.Request) -> None:
    while not request.Test():
        time.sleep(0.001)


def speeds(comm: MPI.Intracomm, codec: str = "fz") -> dict[str, float]:
    """measure_speeds() of the lowest rank of each host (the others sleep meanwhile), the
    slowest host's, on every rank (collective; measured once per process)."""
    global _SPEEDS
    names = comm.allgather(MPI.Get_processor_name())
    first_on_host = names.index(names[comm.Get_rank()]) == comm.Get_rank()
    mine = None
    if first_on_host:
        if _SPEEDS is None:
            _SPEEDS = measure_speeds(codec)
        mine = _SPEEDS
    _quiet_wait(comm.Ibarrier())  # the others sleep while a rank of their host measures
    everyone = comm.allgather(mine)
    found = [s for s in everyone if s is not None]
    return {k: min(s[k] for s in found) for k in found[0]}


def link(comm: MPI.Intracomm, layout: Topology) -> dict[str, float]:
    """{'link': bytes/s between nodes each way, 'latency': s one way, 'memory': bytes/s inside
    a node} (collective; cached per process and set of nodes)."""
    world = MPI.COMM_WORLD.Get_group()
    leaders = [layout.members[n][0] for n in range(layout.nodes)]
    key = (
        tuple(MPI.Group.Translate_ranks(comm.Get_group(), leaders, world)),
        tuple(MPI.Group.Translate_ranks(comm.Get_group(), list(layout.members[0][:2]), world)),
    )
    cached = comm.allreduce(int(key in _LINKS), MPI.MIN)
    if cached:
        return _LINKS[key]
    rank = comm.Get_rank()
    result = np.array([math.inf, 0.0, math.inf])
    pair = leaders[:2] if layout.nodes > 1 else []
    if rank in pair:
        other = pair[1 - pair.index(rank)]
        result[0], result[1] = _exchange(comm, other, _LINK_BYTES)
    local = list(layout.members[0][:2])
    if len(local) == 2 and rank in local:
        other = local[1 - local.index(rank)]
        result[2] = _exchange(comm, other, _MEMORY_BYTES)[0]
    agreed = np.empty(3)
    comm.Allreduce(np.array([-result[0], result[1], -result[2]]), agreed, MPI.MAX)
    found = {"link": -agreed[0], "latency": agreed[1], "memory": -agreed[2]}
    if not math.isfinite(found["link"]):
        found["link"] = math.inf  # one node: nothing between nodes
    if not math.isfinite(found["memory"]):
        found["memory"] = 4e9
    _LINKS[key] = found
    return found


def _exchange(comm: MPI.Intracomm, other: int, nbytes: int) -> tuple[float, float]:
    """(bytes/s each way, latency in s) between this rank and `other`, both sending at once."""
    send = np.ones(nbytes, np.uint8)
    recv = np.empty(nbytes, np.uint8)
    times = []
    for rep in range(4):  # the first exchange sets up the connection
        start = time.perf_counter()
        comm.Sendrecv(send, other, 77, recv, other, 77)
        if rep:
            times.append(time.perf_counter() - start)
    tiny, back = np.zeros(1), np.zeros(1)
    pings = []
    for _ in range(5):
        start = time.perf_counter()
        comm.Sendrecv(tiny, other, 78, back, other, 78)
        pings.append(time.perf_counter() - start)
    return nbytes / min(times), min(pings) / 2


def agreement_seconds(channel) -> float:
    """What one small agreement of a compressed collective takes (median of 5, the slowest
    rank's): every compressed call pays two, which the model adds to its estimate."""
    times = []
    for _ in range(5):
        start = time.perf_counter()
        channel.allreduce_max(np.zeros(21))  # a start agreement's length (guard.START_LENGTH)
        times.append(time.perf_counter() - start)
    return float(channel.control.allreduce(sorted(times)[2], MPI.MAX))


# how each measurement is agreed: the largest value for times, the smallest for speeds and cores
_LARGEST = {"latency", "agreement"}


def agree(comm: MPI.Intracomm, machine: dict) -> dict:
    """The measurements as every rank uses them (collective, one Allreduce): the slowest
    rank's speeds, link, memory and cores, the longest latency and agreement time. Each
    rank measures (or caches) its own, and the cost model must decide the same on every
    rank, or ranks would take different paths for one call."""
    names = []
    for key in sorted(machine):
        value = machine[key]
        if isinstance(value, dict):
            names += [(key, inner) for inner in sorted(value)]
        else:
            names.append((key, None))
    signs = np.array([1.0 if (inner or key) in _LARGEST else -1.0 for key, inner in names])
    values = np.array([machine[key][inner] if inner else machine[key] for key, inner in names], np.float64)
    agreed = np.empty_like(values)
    comm.Allreduce(signs * values, agreed, MPI.MAX)
    agreed *= signs
    result = {key: dict(value) if isinstance(value, dict) else value for key, value in machine.items()}
    for (key, inner), value in zip(names, agreed.tolist(), strict=True):
        if inner:
            result[key][inner] = value
        else:
            result[key] = value
    return result


def cores_per_rank(comm: MPI.Intracomm) -> float:
    """The cores of this host divided by the ranks on it (at most the threads each uses)."""
    names = comm.allgather(MPI.Get_processor_name())
    ranks = names.count(names[comm.Get_rank()])
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return min(cores / ranks, float(threads_per_rank()))
