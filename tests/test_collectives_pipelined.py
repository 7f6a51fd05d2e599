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


def _simulate(policy, calls: int, compressed_cost, plain_cost) -> list[str]:
    """Drive a policy as CompressedComm does: compressed calls end with an agreement that
    carries their time and the pending plain timing. Costs may be callables of the call number."""
    from mpi_collectives.guard import Outcome

    path = []
    for call in range(calls):
        choice = policy.choose("Allreduce", 1 << 20)
        if choice.compressed:
            cost = compressed_cost(call) if callable(compressed_cost) else compressed_cost
            policy.compressed_done(choice, Outcome(True, cost, policy.pending_plain(choice), -1.0))
            path.append("c")
        else:
            policy.plain_done(choice, plain_cost(call) if callable(plain_cost) else plain_cost)
            path.append("p")
    return path


@pytest.mark.parametrize("compressed_cost, plain_cost, steady", [(1.0, 3.0, "c"), (3.0, 1.0, "p")])
def test_the_first_call_follows_the_cost_model_then_the_other_path_is_re_timed(compressed_cost, plain_cost, steady):
    from mpi_collectives.policy import Adaptive

    policy = Adaptive(True, lambda what, nbytes, itemsize: (compressed_cost, plain_cost))
    path = _simulate(policy, 130, compressed_cost, plain_cost)
    other = "p" if steady == "c" else "c"
    assert path[:16] == [steady] * 16  # no exploring: the model is sure, and right
    assert [i for i, p in enumerate(path) if p == other] == [16, 32, 64, 128]
    assert _simulate(Adaptive(False, None), 3, 1.0, 0.1) == ["c"] * 3  # adapt=False: always compressed


def test_a_wrong_first_choice_is_corrected_by_the_measured_times():
    from mpi_collectives.policy import Adaptive

    # the model expects compression to win 1 s to 3 s; it takes 5 s: plain MPI is timed at
    # once, compressed once more (agreeing plain's 2 s), and plain MPI is kept
    policy = Adaptive(True, lambda what, nbytes, itemsize: (1.0, 3.0))
    path = _simulate(policy, 40, 5.0, 2.0)
    assert path[:4] == ["c", "p", "c", "p"]
    assert path[4:16] == ["p"] * 12 and path[16] == "c" and path[17:32] == ["p"] * 15


def test_a_slow_first_compressed_call_does_not_hand_the_key_to_plain_mpi():
    from mpi_collectives.policy import Adaptive

    # the first compressed call pays one-off costs (10 s), the model's plain estimate is
    # optimistic (3 s, measured 18 s): the verifying call sees compression win
    costs = iter([10.0] + [7.0] * 40)
    policy = Adaptive(True, lambda what, nbytes, itemsize: (1.0, 3.0))
    path = _simulate(policy, 10, lambda call: next(costs), 18.0)
    assert path == ["c", "p", "c"] + ["c"] * 7


@pytest.mark.parametrize("compressed_cost, steady", [(0.95, "p"), (0.85, "c")])
def test_close_estimates_explore_both_paths_and_keep_plain_unless_clearly_slower(compressed_cost, steady):
    from mpi_collectives.policy import MARGIN, Adaptive

    assert 0.85 < MARGIN < 0.95
    policy = Adaptive(True, lambda what, nbytes, itemsize: (1.0, 1.1))
    path = _simulate(policy, 12, compressed_cost, 1.0)
    assert path[:4] == ["p", "c", "p", "c"]  # ends on a compressed call: it agrees the plain times
    assert path[4:12] == [steady] * 8


def test_without_a_model_both_paths_are_explored_first():
    from mpi_collectives.policy import Adaptive

    first_plain = iter([5.0] + [1.0] * 40)  # the first plain call pays a one-off cost
    path = _simulate(Adaptive(True, None), 10, 2.0, lambda call: next(first_plain))
    assert path == ["c", "p", "p", "c"] + ["p"] * 6  # the decision sees the second plain time


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
