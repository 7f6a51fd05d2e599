"""mpi_collectives: the contract arithmetic in-process, and every collective under real mpiexec.

The MPI tests start ``mpiexec -n 2|3|4`` (the one installed beside this Python by the
``mpich`` wheel) on the helper scripts in ``tests/mpi/``; each prints JSON that is checked
here. Every launch has a timeout, and a timed-out job is killed as a whole process group,
so a hang fails a test instead of blocking the suite.
"""

from __future__ import annotations

import array
import json
import math
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

MPI = pytest.importorskip("mpi4py.MPI", reason="mpi4py is not installed: pip install -e '.[mpi]'")

from conftest import SHARED_DATA  # noqa: E402

from mpi_collectives import CompressedComm, SettingsError, buffers, settings  # noqa: E402
from mpi_collectives.reduction import codes as reduction_codes  # noqa: E402
from mpi_collectives.reduction.grid import reduction_grid  # noqa: E402
from mpi_collectives.reduction.reduce import even_segments  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = Path(__file__).resolve().parent / "mpi"
MPIEXEC = Path(sys.executable).parent / "mpiexec"
TIMEOUT = 180

needs_mpiexec = pytest.mark.skipif(not MPIEXEC.exists(), reason=f"no mpiexec beside {sys.executable}")


def run(
    cmd: list[str], timeout: float = TIMEOUT, cwd: Path = ROOT, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run cmd in its own process group; on timeout kill the group (mpiexec and every rank)."""
    # one numba thread per rank: ranks already fill the cores, and idle OpenMP threads spin
    env = {
        **os.environ,
        "NUMBA_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]),
        **(env or {}),
    }
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"timed out after {timeout} s (a hang): {' '.join(cmd)}\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def mpirun(n: int, *args: str, timeout: float = TIMEOUT, nodes: int = 0) -> subprocess.CompletedProcess:
    """mpiexec -n n python args; nodes=K: MPICH's clique emulation, rank i on node i mod K."""
    env = {"MPIR_CVAR_NUM_CLIQUES": str(nodes)} if nodes else None
    return run([str(MPIEXEC), "-n", str(n), sys.executable, *args], timeout=timeout, env=env)


def json_of(done: subprocess.CompletedProcess):
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def compiled() -> None:
    """Compile errbound's kernels once, in one process, before many ranks would all do it."""
    warm = (
        "import numpy as np, errbound\nfrom errbound import quantized as qz\n"
        "for dt in (np.float32, np.float64):\n"
        "    x = np.linspace(0, 1, 5000, dtype=dt).reshape(50, 100)\n"
        "    errbound.decompress(errbound.compress(x, codec='fz', abs=1e-3))\n"
        "    for it in (np.int32, np.int64):\n"
        "        q = qz.quantize(x.reshape(-1), 2.0**-10, it)\n"
        "        for shape in ((5000,), (50, 100), (5, 10, 100)):\n"
        "            qz.decode_codes(qz.encode_codes(q.codes, shape))\n"
        "        qz.dequantize(q.codes, 2.0**-10, dt)\n"
    )
    done = run([sys.executable, "-c", warm], timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


# ------------------------------------------------------------------ the contract, in-process


def simulate_sum(inputs: list[np.ndarray], code: int, bound: float) -> np.ndarray | None:
    """What N ranks compute, without the transport: quantize, add codes exactly, decode once."""
    dtype = inputs[0].dtype
    gmax = max(float(np.max(np.abs(x))) for x in inputs)
    grid = reduction_grid(code, len(inputs), bound, gmax, dtype)
    if grid is None:
        return None
    codes = [reduction_codes.quantize_codes(x, grid) for x in inputs]
    total = codes[0].copy()
    for c in codes[1:]:
        reduction_codes.COMBINE[code](total, c, out=total)
    return grid.decode(total, dtype)


@given(
    nranks=st.integers(1, 8),
    dtype=st.sampled_from([np.float32, np.float64]),
    scale=st.sampled_from([1e-30, 1e-3, 1.0, 300.0, 1e5, 1e30]),
    bound_fraction=st.sampled_from([1e-9, 1e-6, 1e-4, 1e-2, 0.5]),
    code=st.sampled_from([settings.SUM, settings.MAX, settings.MIN]),
    seed=st.integers(0, 2**16),
)
def test_quantized_reduction_meets_the_bound_on_the_final_result(nranks, dtype, scale, bound_fraction, code, seed):
    rng = np.random.default_rng(seed)
    inputs = [(scale * np.cumsum(rng.standard_normal(2000)) / 30).astype(dtype) for _ in range(nranks)]
    bound = bound_fraction * scale
    result = simulate_sum(inputs, code, bound)
    if result is None:  # sub-ulp bound: plain MPI takes over, which is exact enough by definition
        largest = nranks * max(float(np.max(np.abs(x))) for x in inputs)
        assert bound <= 2 * float(np.spacing(dtype(largest))) * nranks or largest / bound > 2**50
        return
    stacked = np.stack(inputs).astype(np.longdouble)
    exact = {settings.SUM: stacked.sum(0), settings.MAX: stacked.max(0), settings.MIN: stacked.min(0)}[code]
    assert np.max(np.abs(result.astype(np.longdouble) - exact)) <= bound


def test_steps_below_one_are_reciprocals_of_integers_so_integers_stay_exact():
    grid = reduction_grid(settings.SUM, 3, 1e-3, 10.0, np.dtype(np.float32))
    assert grid.divisor > 0 and grid.step == 1 / grid.divisor and grid.int_dtype == np.int32
    assert 2 * 1e-3 / 3 * 0.99 < grid.step <= 2 * 1e-3 / 3  # close to the largest allowed step
    inputs = [np.arange(100, dtype=np.float32) * (r + 1) for r in range(3)]
    assert np.array_equal(simulate_sum(inputs, settings.SUM, 1e-3), np.arange(100, dtype=np.float32) * 6)
    for code in (settings.MAX, settings.MIN):
        inputs64 = [np.arange(100.0) * (r + 1) - 50 for r in range(3)]
        expected = np.max(inputs64, 0) if code == settings.MAX else np.min(inputs64, 0)
        assert np.array_equal(simulate_sum(inputs64, code, 1e-6), expected)


def test_steps_above_one_are_8_bit_multiples_of_powers_of_two():
    grid = reduction_grid(settings.SUM, 4, 1000.0, 1e6, np.dtype(np.float64))
    multiple = math.ldexp(grid.step, 8 - math.frexp(grid.step)[1])
    assert grid.divisor == 0 and multiple == int(multiple) and 128 <= multiple < 256
    assert 500 * (1 - 1 / 128) <= grid.step <= 500


def test_wide_codes_switch_to_int64_and_unreachable_bounds_fall_back():
    assert reduction_grid(settings.SUM, 4, 1e-9, 1e3, np.dtype(np.float64)).int_dtype == np.int64
    assert reduction_grid(settings.SUM, 4, 1e-12, 1e6, np.dtype(np.float32)) is None  # below an ulp
    assert reduction_grid(settings.SUM, 4, 0.0, 1.0, np.dtype(np.float64)) is None
    assert reduction_grid(settings.SUM, 4, 1.0, 1e38, np.dtype(np.float32)) is None  # would overflow


def test_buffer_specs_that_compress_and_those_that_pass_through():
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    assert buffers.parse(a).block_shape == (3, 4)
    assert buffers.parse([a, MPI.FLOAT]).count == 12
    assert buffers.parse([a, 5, MPI.FLOAT]).flat.size == 5
    assert buffers.parse(a, blocks=3).block_shape == (4,)
    assert buffers.parse(np.asfortranarray(a)).block_shape == (4, 3)  # memory order
    assert buffers.parse(array.array("d", [1.0, 2.0])).flat.dtype == np.float64
    assert buffers.parse([np.zeros(8, np.uint8), MPI.DOUBLE]).flat.size == 1  # bytes as MPI sees them
    # mpi4py's (count, displ): the message starts displ values in (another rank may pass the
    # same message plainly, and both must take the same path)
    shifted = buffers.parse([a, (4, 2), MPI.FLOAT])
    assert shifted.count == 4 and np.shares_memory(shifted.flat, a)
    np.testing.assert_array_equal(shifted.flat, a.ravel()[2:6])
    assert buffers.parse([a, (12, 0), MPI.FLOAT]).count == buffers.parse(a).count == 12
    np.testing.assert_array_equal(buffers.parse([a, 4, 2, MPI.FLOAT]).flat, shifted.flat)
    assert buffers.parse([a.ravel(), (3, 2)], blocks=3).flat.size == 9  # a count per block
    for spec in (
        np.arange(4),
        [a, MPI.INT],
        [a, (4, 9), MPI.FLOAT],
        [a, (4, -1), MPI.FLOAT],
        [a, 4, 9, MPI.FLOAT],
        [a, 13, MPI.FLOAT],
        MPI.FLOAT.Create_vector(2, 1, 2),
        a.astype(">f4"),
    ):
        assert buffers.parse(spec) is None, spec
    # messages errbound does not compress still tell their MPI signature (values per block,
    # bytes per value), so that a compressing rank can complete a plain rank's call
    assert buffers.signature(np.arange(6)) == (6, 8)
    assert buffers.signature([np.zeros(8, np.int32), (3, 2), MPI.INT]) == (3, 4)
    assert buffers.signature([np.zeros(12, np.int16), MPI.SHORT], blocks=3) == (4, 2)
    assert buffers.signature([np.zeros(7, np.int16), MPI.SHORT], blocks=3) is None
    assert buffers.signature([a, 4, 0, MPI.FLOAT]) == (4, 4)
    assert buffers.signature([a, 4, 0, 1, MPI.FLOAT]) is None
    # float buffers that cannot be used as they are: described, with the problem, so that the
    # rank takes the same path as the others and the collective fails on all of them
    strided = buffers.parse(a[:, ::2])
    assert strided.problem == buffers.NOT_CONTIGUOUS and strided.count == 6
    frozen = buffers.parse(np.frombuffer(b"\0" * 8, np.float32), writable=True)
    assert frozen.problem == buffers.READ_ONLY and frozen.count == 2
    assert buffers.parse(np.frombuffer(b"\0" * 8, np.float32)).problem == 0  # read-only is fine to send


def test_stand_ins_read_bytes_buffers_as_mpi4py_does():
    """A refused bytes/bytearray buffer is described through the buffer protocol, and the
    stand-in that completes the collective for the other ranks runs (it raised mpi4py's
    ValueError for a bytes receive buffer beside a float send buffer)."""
    from mpi_collectives import rescue

    comm, x = MPI.COMM_SELF, np.arange(4.0)
    for what, args in [
        ("Allreduce", (x, bytes(32), MPI.SUM)),
        ("Allreduce", (x, bytearray(32), MPI.MAX)),
        ("Allreduce", (MPI.IN_PLACE, bytes(32), MPI.SUM)),
        ("Reduce", (x, bytes(32), MPI.SUM, 0)),
        ("Reduce_scatter_block", (x, bytes(32), MPI.SUM)),
        ("Bcast", (bytes(32), 0)),
        ("Allgather", (x, bytes(32))),
        ("Alltoall", (bytes(32), bytearray(32))),
        ("Gather", (x, bytes(32), 0)),
        ("Scatter", (bytes(32), np.empty(4), 0)),
    ]:
        problem, join = rescue.stand_in(what, comm, args)
        join()  # completes without an exception of its own
        assert problem in (buffers.READ_ONLY, rescue.UNUSABLE), (what, problem)
    assert rescue.stand_in("Allreduce", comm, (x, bytes(32), MPI.SUM))[0] == buffers.READ_ONLY
    # one array as send and receive buffer: MPI refuses it, the stand-in names it
    problem, join = rescue.stand_in("Allreduce", comm, (x, x, MPI.SUM))
    join()
    assert problem == buffers.ALIASED


def test_segments_cover_the_array_and_follow_rows():
    segs = even_segments(17 * 96 * 192, 4, (17, 96, 192))
    assert segs.starts[0] == 0 and segs.starts[-1] == 17 * 96 * 192
    assert all(s % (96 * 192) == 0 for s in segs.starts)
    assert [shape[0] for shape in segs.shapes] == [4, 4, 4, 5]
    tiny = even_segments(3, 4, (3,))
    assert tiny.starts == [0, 0, 1, 2, 3] and tiny.shapes[0] == (0,)


def test_one_rank_passes_through_and_invalid_settings_raise():
    comm = CompressedComm(MPI.COMM_SELF, abs=1e-3, min_bytes=0, adapt=False)
    x = np.linspace(0, 1, 1000)
    out = np.empty_like(x)
    comm.Allreduce(x, out, MPI.SUM)
    assert np.array_equal(out, x) and comm.stats.calls == 0
    dup = comm.Dup()
    assert isinstance(dup, CompressedComm) and dup.settings == comm.settings
    dup.Free()
    comm.Free()
    for bad in (
        {},
        {"abs": 1, "rel": 1},
        {"abs": -1.0},
        {"rel": math.nan},
        {"abs": 1, "codec": "x"},
        {"abs": 1, "min_bytes": -1},
        {"abs": 1, "algorithm": "star"},
    ):
        with pytest.raises(SettingsError):
            CompressedComm(MPI.COMM_SELF, **bad)


def test_the_runner_takes_every_setting_under_its_own_name():
    """python -m mpi_collectives builds its CompressedComm from Settings' field names: every
    setting has an option, and the parsed options are the constructor's keywords."""
    from mpi_collectives.__main__ import parse_args

    args = parse_args(["--rel", "1e-3", "--algorithm", "ring", "--segment-bytes", "4096", "app.py"])
    keywords = {name: getattr(args, name) for name in settings.KEYWORDS}
    assert keywords["algorithm"] == "ring" and keywords["segment_bytes"] == 4096 and keywords["rel"] == 1e-3
    comm = CompressedComm(MPI.COMM_SELF, **keywords)
    assert comm.settings.keywords() == {**keywords, "abs": None}
    comm.Free()


# ------------------------------------------------------------------ real MPI runs


@pytest.fixture(scope="module", params=[2, 3, 4])
def collective_results(request, compiled) -> list[dict]:
    data = [str(SHARED_DATA)] if SHARED_DATA.is_dir() else []
    return json_of(mpirun(request.param, str(SCRIPTS / "collectives.py"), *data))


@pytest.mark.mpi
@needs_mpiexec
def test_every_collective_meets_the_bound_on_every_rank(collective_results):
    over = [(c["case"], c["err"]) for c in collective_results if not c["err"] <= 1.0]
    assert not over


@pytest.mark.mpi
@needs_mpiexec
def test_results_are_byte_identical_across_ranks(collective_results):
    assert [c["case"] for c in collective_results if not c["identical"]] == []


@pytest.mark.mpi
@needs_mpiexec
def test_pass_through_and_exact_parts_equal_plain_mpi(collective_results):
    assert [c["case"] for c in collective_results if not c["exact"]] == []
    assert sum(c["case"].startswith("pass-through") for c in collective_results) >= 6


@pytest.mark.mpi
@needs_mpiexec
def test_each_case_took_the_expected_path(collective_results):
    assert [c["case"] for c in collective_results if not c["compressed"]] == []


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("nranks", [2, 3])
def test_bad_input_raises_the_same_clear_error_on_every_rank(nranks, compiled):
    results = json_of(mpirun(nranks, str(SCRIPTS / "bad_input.py"), timeout=90))
    expected = {
        "settings differ": "SettingsMismatchError",
        "invalid settings on one rank": "SettingsError",
        "both abs and rel": "SettingsError",
        "unknown codec": "SettingsError",
        "bitwise op on float data": "UnsupportedOperationError",
        "ops differ": "MismatchError",
        "Allreduce sizes differ": "MismatchError",
        "Reduce roots differ": "MismatchError",
        "Bcast sizes differ": "MismatchError",
        "Allgather sizes differ": "MismatchError",
        "Iallreduce sizes differ": "MismatchError",
        "communicator still works": "ok",
    }
    assert set(results) == set(expected)
    for case, error in expected.items():
        per_rank = results[case]
        assert len(per_rank) == nranks
        assert all(r == per_rank[0] for r in per_rank), (case, per_rank)  # same class and message
        assert per_rank[0][0] == error, (case, per_rank[0])


@pytest.fixture(scope="session")
def mpi4py_tests(tmp_path_factory) -> Path:
    """mpi4py's own test folder, from the sdist of the installed version (never stored here)."""
    import mpi4py

    where = tmp_path_factory.mktemp("mpi4py-sdist")
    done = run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-binary",
            ":all:",
            "--no-deps",
            f"mpi4py=={mpi4py.__version__}",
            "-d",
            str(where),
        ],
        timeout=300,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot download the mpi4py sdist: {done.stderr[-500:]}")
    (sdist,) = where.glob("mpi4py-*.tar.gz")
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if "/test/" in m.name and m.name.endswith(".py")]
        tar.extractall(where, members=members, filter="data")
    (folder,) = where.glob("mpi4py-*/test")
    return folder


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("nranks", [2, 3])
def test_mpi4py_own_collective_tests_pass_on_a_compressed_comm(nranks, mpi4py_tests, compiled):
    summary = json_of(
        mpirun(nranks, str(SCRIPTS / "mpi4py_suite.py"), str(mpi4py_tests), "test_cco_buf", "test_cco_nb_buf")
    )
    for rank in summary:
        assert rank["failures"] == 0 and rank["errors"] == 0, rank["problems"]
        assert rank["run"] >= 140 and rank["skipped"] == 0
        assert rank["compressed_calls"] > 100  # their float messages really took compressed paths


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("nranks", [2, 3])
def test_ranks_of_a_host_compile_each_kernel_once_between_them(tmp_path, nranks):
    """With an empty numba cache, construction compiles the collectives' kernels on the
    ranks of the host together: each kernel signature compiles on one rank (the others load
    it from the cache), and the work is split between them; the first compressed calls
    compile nothing more. One rank says so, once (a notice as soon as anything compiles:
    ERRBOUND_COMPILE_NOTICE_S=0). A second job compiles nothing."""
    command = [str(MPIEXEC), "-n", str(nranks), sys.executable, str(SCRIPTS / "cold_comm.py")]
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba"), "ERRBOUND_COMPILE_NOTICE_S": "0"}
    done = run(command, timeout=600, env=env)
    ranks = json_of(done)
    compiled = [rank["construction"] for rank in ranks]
    everything = [signature for rank in compiled for signature in rank]
    assert len(everything) > 10 and len(set(everything)) == len(everything), compiled
    assert sum(1 for rank in compiled if rank) > 1, compiled
    # the first compressed calls compile nothing (with 2 ranks a float64 sum's grid took a
    # code width the warm-up lacked, with 3 a row longer than the quantizer's row ring: both
    # compiled inside the first timed call until this test caught them)
    assert [rank["calls"] for rank in ranks] == [[]] * nranks, ranks
    assert done.stderr.count("compiling the kernels of the compressed collectives") == 1, done.stderr[-3000:]
    again = json_of(run(command, timeout=600, env=env))
    assert again == [{"construction": [], "calls": []}] * nranks, again


@pytest.mark.mpi
@needs_mpiexec
def test_a_warm_up_that_fails_on_one_rank_raises_the_same_error_on_every_rank(tmp_path):
    """Every rank of a host now compiles part of the warm-up: a rank whose part fails (here
    an injected full disk) must not leave the others waiting in the next collective."""
    command = [str(MPIEXEC), "-n", "3", sys.executable, str(SCRIPTS / "cold_comm.py"), "fail-on", "1"]
    got = json_of(run(command, timeout=600, env={"NUMBA_CACHE_DIR": str(tmp_path / "numba")}))
    assert len(got) == 3 and all(g == got[0] for g in got), got
    kind, message = got[0]
    assert kind == "CollectiveFailedError" and "rank 1" in message and "No space left" in message, got


@pytest.mark.mpi
@needs_mpiexec
def test_window_readers_never_see_a_half_written_record():
    """One rank publishes call records as fast as it can while another reads them for 2 s:
    every record read is whole (the old write order could not be caught tearing here; the
    invariant is checked all the same)."""
    report = json_of(mpirun(2, str(SCRIPTS / "window_records.py"), "2", timeout=120))
    assert report["read"] > 1000 and report["torn records"] == 0, report


@pytest.mark.mpi
@needs_mpiexec
def test_dropin_runner_replaces_comm_world_of_an_unmodified_program(compiled):
    app = SCRIPTS / "plain_app.py"
    result = json_of(
        run(
            [
                str(MPIEXEC),
                "-n",
                "2",
                sys.executable,
                "-m",
                "mpi_collectives",
                "--rel",
                "1e-3",
                "--no-adapt",
                str(app),
                "label",
                "--flag",
            ]
        )
    )
    assert result["type"] == "CompressedComm" and result["same_object"] and result["name"] == "__main__"
    assert result["argv"] == [str(app), "label", "--flag"]
    assert 0 < result["err"] <= 1e-3 * result["range"]


@pytest.mark.mpi
@needs_mpiexec
def test_dropin_runner_aborts_the_job_when_one_rank_fails(compiled):
    done = run(
        [
            str(MPIEXEC),
            "-n",
            "2",
            sys.executable,
            "-m",
            "mpi_collectives",
            "--abs",
            "1e-3",
            str(SCRIPTS / "plain_app.py"),
            "fail",
        ],
        timeout=60,
    )
    assert done.returncode != 0 and "deliberate failure" in done.stderr


@pytest.mark.mpi
@needs_mpiexec
@pytest.mark.parametrize("nranks", [2, 3, 4])
def test_real_fields_meet_the_bound_with_identical_results(nranks, shared_data, compiled):
    fields = "echam5_temperature_17x96x192.f32,mpas_surface-pressure_163842.f64,icon-r2b4_precip_20480.f32"
    rows = json_of(
        mpirun(nranks, str(SCRIPTS / "real_fields.py"), str(shared_data), "--fields", fields, "--rel", "1e-3,1e-5")
    )
    assert len(rows) == 3 * 2 * 4
    for row in rows:
        assert row["err"] <= 1.0 and row["identical"], row
        assert row["ratio"] > 1.5, row


@pytest.mark.mpi
@needs_mpiexec
def test_heat_example_runs_within_the_bound(compiled):
    done = mpirun(2, str(ROOT / "examples" / "heat_mpi.py"), "--steps", "4", "--every", "1")
    assert done.returncode == 0, done.stderr[-3000:]
    worst = float(done.stdout.strip().splitlines()[-1].split(":")[1].split()[0])
    assert 0 < worst <= 1.0
