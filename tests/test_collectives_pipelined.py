"""mpi_collectives' pipelined algorithms: chunking, the decode kernels, and real mpiexec runs that
compare pipelined results with unpipelined ones bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("mpi4py.MPI", reason="mpi4py is not installed: pip install -e '.[mpi]'")

from conftest import SHARED_DATA  # noqa: E402
from test_mpi_collectives import SCRIPTS, compiled, json_of, mpirun, needs_mpiexec  # noqa: E402, F401

from errbound import quantized as qz  # noqa: E402
from mpi_collectives import CompressedComm, SettingsError  # noqa: E402
from mpi_collectives.movement.collectives import bcast_algorithm  # noqa: E402
from mpi_collectives.reduction import grid as grid_kernels  # noqa: E402
from mpi_collectives.settings import Settings  # noqa: E402
from mpi_collectives.transport import chunks  # noqa: E402


def test_chunks_cover_the_range_in_whole_rows():
    parts = chunks.split(12_000, 36_000, 1000, (10, 100), target=5000)
    assert [p.start for p in parts][0] == 12_000 and parts[-1].stop == 36_000
    assert all(a.stop == b.start for a, b in zip(parts[:-1], parts[1:], strict=True))
    assert all(p.size % 1000 == 0 and p.shape == (p.size // 1000, 10, 100) for p in parts)
    assert len(parts) == 5
    flat = chunks.split(3, 1003, 1000, (10, 100), target=300)  # not whole rows: flat chunks
    assert all(p.shape == (p.size,) for p in flat) and sum(p.size for p in flat) == 1000
    assert len(chunks.split(0, 0, 1, (), 100)) == 1  # an empty block is one empty chunk
    assert len(chunks.split(0, 10, 1, (), 1 << 40)) == 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_decode_kernels_give_the_bits_of_errbound_and_numpy(dtype):
    rng = np.random.default_rng(5)
    codes = rng.integers(-(2**25), 2**25, 300_001).astype(np.int32)
    out = np.empty(codes.size, dtype)
    qz.dequantize(codes, 0.37 / 2, out=out)  # in place, as the collectives decode
    assert np.array_equal(out, qz.dequantize(codes, 0.37 / 2, dtype))
    assert np.array_equal(out, (codes.astype(np.float64) * 0.37).astype(dtype))
    grid_kernels.divide_into(codes, 77, out)
    assert np.array_equal(out, (codes / 77.0).astype(dtype))


def test_bcast_algorithm_follows_the_cost_model():
    auto = Settings(1.0, None, "fz", 0, False, "auto")
    assert bcast_algorithm(auto, 4, 1) == "binomial"
    assert bcast_algorithm(auto, 4, 64) == "chain"
    assert bcast_algorithm(auto, 512, 16) == "binary"
    forced = Settings(1.0, None, "fz", 0, False, "auto", 0, "binary")
    assert bcast_algorithm(forced, 4, 64) == "binary"


class _FakeClock:
    """Time that moves only when a path runs: compressed calls take `compressed` seconds."""

    def __init__(self, compressed: float, plain: float):
        self.now, self.cost = 0.0, {"compressed": compressed, "plain": plain}

    def __call__(self) -> float:
        return self.now

    def path(self, name: str, record: list):
        def run():
            self.now += self.cost[name]
            record.append(name[0])

        return run


@pytest.mark.parametrize("compressed_cost, plain_cost, steady", [(1.0, 3.0, "c"), (3.0, 1.0, "p")])
def test_adapt_keeps_the_faster_path_and_re_times_the_other(compressed_cost, plain_cost, steady):
    from mpi4py import MPI

    from mpi_collectives.policy import Adaptive

    clock = _FakeClock(compressed_cost, plain_cost)
    policy, calls = Adaptive(True, clock), []
    for _ in range(130):
        policy.run(MPI.COMM_SELF, "Allreduce", 1 << 20, clock.path("compressed", calls), clock.path("plain", calls))
    other = "p" if steady == "c" else "c"
    assert calls[:4] == ["c", "p", "c", "p"]  # explores both, twice
    probes = [i for i in range(4, 130) if calls[i] == other]
    assert probes == [16, 32, 64, 128]
    off = Adaptive(False, clock)
    calls.clear()
    off.run(MPI.COMM_SELF, "Allreduce", 1 << 20, clock.path("compressed", calls), clock.path("plain", calls))
    assert calls == ["c"]


@pytest.mark.parametrize("compressed_cost, steady", [(0.95, "p"), (0.85, "c")])
def test_adapt_keeps_plain_mpi_unless_compression_is_clearly_faster(compressed_cost, steady):
    from mpi4py import MPI

    from mpi_collectives.policy import MARGIN, Adaptive

    assert 0.85 < MARGIN < 0.95
    clock = _FakeClock(compressed_cost, 1.0)
    policy, calls = Adaptive(True, clock), []
    for _ in range(16):
        policy.run(MPI.COMM_SELF, "Allreduce", 1 << 20, clock.path("compressed", calls), clock.path("plain", calls))
    assert calls[:8] == ["c", "p"] * 4  # a near tie: a second round of exploring
    assert calls[8:] == [steady] * 8


def test_adapt_decides_on_both_exploring_plain_timings():
    # the first plain call pays a one-off cost; the second is the real one and is faster
    # than compressing: the first decision must already see it
    from mpi4py import MPI

    from mpi_collectives.policy import Adaptive

    clock = _FakeClock(2.0, 1.0)
    plain_costs = iter([5.0, 1.0] + [1.0] * 20)
    policy, calls = Adaptive(True, clock), []

    def plain():
        clock.now += next(plain_costs)
        calls.append("p")

    for _ in range(10):
        policy.run(MPI.COMM_SELF, "Allreduce", 1 << 20, clock.path("compressed", calls), plain)
    assert calls == ["c", "p", "c", "p"] + ["p"] * 6


def test_new_settings_are_checked():
    from mpi4py import MPI

    for bad in ({"segment_bytes": -1}, {"segment_bytes": 1.5}, {"bcast_algorithm": "star"}):
        with pytest.raises(SettingsError):
            CompressedComm(MPI.COMM_SELF, abs=1.0, **bad)


@pytest.fixture(scope="module", params=[2, 3, 4])
def pipelined_results(request, compiled) -> list[dict]:  # noqa: F811 - the imported fixture
    data = [str(SHARED_DATA)] if SHARED_DATA.is_dir() else []
    return json_of(mpirun(request.param, str(SCRIPTS / "pipelined.py"), *data))


@pytest.mark.mpi
@needs_mpiexec
def test_pipelined_collectives_meet_the_bound_with_identical_results(pipelined_results):
    assert [(c["case"], c["err"]) for c in pipelined_results if not c["err"] <= 1.0] == []
    assert [c["case"] for c in pipelined_results if not c["identical"]] == []


@pytest.mark.mpi
@needs_mpiexec
def test_pipelined_results_equal_unpipelined_bit_for_bit(pipelined_results):
    assert [c["case"] for c in pipelined_results if not c["same"]] == []
    assert [c["case"] for c in pipelined_results if not c["chunks"]] == []  # they really were cut
