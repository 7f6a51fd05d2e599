"""mpi_collectives on nodes of several ranks, its runner's errors, and the misuse matrix, under
real mpiexec.

Nodes are MPICH's clique emulation (``MPIR_CVAR_NUM_CLIQUES=K``: rank i on node i mod K,
shared memory inside a node, TCP between nodes), which needs no network bed: 2 nodes x 2
ranks and 3 nodes x 2 ranks run the two-level algorithms on this machine. Every launch has a
timeout (a hang fails the test).
"""

from __future__ import annotations

import os
import sys

import pytest

pytest.importorskip("mpi4py.MPI", reason="mpi4py is not installed: pip install -e '.[mpi]'")

from conftest import SHARED_DATA  # noqa: E402
from test_mpi_collectives import (  # noqa: E402, F401 - fixtures
    MPIEXEC,
    ROOT,
    SCRIPTS,
    compiled,
    json_of,
    mpi4py_tests,
    mpirun,
    needs_mpiexec,
    run,
)

LAYOUTS = [(2, 4), (3, 6)]  # (nodes, ranks): 2 x 2 and 3 x 2
IDS = ["2x2", "3x2"]

MPI = pytest.importorskip("mpi4py.MPI")


def need_cliques() -> None:
    """Nodes of several ranks need MPICH's clique emulation (the mpich wheel's mpiexec)."""
    if "MPICH" not in MPI.Get_library_version():
        pytest.skip("MPIR_CVAR_NUM_CLIQUES is MPICH's")


pytestmark = [pytest.mark.mpi, needs_mpiexec, pytest.mark.usefixtures("compiled")]


@pytest.fixture(scope="module", params=LAYOUTS, ids=IDS)
def layout_report(request) -> tuple[int, int, dict]:
    need_cliques()
    nodes, ranks = request.param
    return nodes, ranks, json_of(mpirun(ranks, str(SCRIPTS / "layouts.py"), nodes=nodes))


def test_nodes_are_found_at_construction(layout_report):
    nodes, ranks, report = layout_report
    expected = [r % nodes for r in range(ranks)]
    assert all(found == expected for found in report["nodes"])  # every rank sees the same nodes
    assert f"{ranks} ranks on {nodes} node(s), 2 per node" in report["describe"]


def test_ranks_of_one_node_never_exchange_compressed_bytes(layout_report):
    _, ranks, report = layout_report
    for name in report["forced"][0]:
        per_rank = [traffic[name] for traffic in report["forced"]]
        assert all(in_node == 0 for in_node, _, _ in per_rank), (name, per_rank)
        assert sum(sent for _, sent, _ in per_rank) > 0, name  # compressed between nodes
        assert all(calls == 1 for _, _, calls in per_rank), name  # the compressed path ran


def test_default_settings_give_plain_mpi_bytes_where_the_model_keeps_plain(layout_report):
    """Between emulated nodes on one machine (loopback, ~18 Gbit/s) compression cannot pay: the
    cost model keeps plain MPI from the very first call, bit for bit."""
    _, _, report = layout_report
    default = report["default"]
    assert all(default["compressing"])
    assert set(default["compressed calls"]) == {0}
    assert all(all(same.values()) for same in default["same bytes as plain MPI"])


def test_one_node_runs_plain_mpi_from_the_first_call():
    report = json_of(mpirun(2, str(SCRIPTS / "layouts.py")))
    assert report["nodes"][0] == [0, 0] and "plain MPI (one node)" in report["describe"]
    default = report["default"]
    assert default["compressing"] == [False, False] and default["compressed calls"] == [0, 0]
    assert all(all(same.values()) for same in default["same bytes as plain MPI"])
    # forcing compression on one node treats every rank as a node: then it does compress
    assert all(sent > 0 for sent, _, _ in [t["Allreduce"] for t in report["forced"]])


@pytest.fixture(scope="module", params=LAYOUTS, ids=IDS)
def two_level_results(request) -> list[dict]:
    need_cliques()
    nodes, ranks = request.param
    data = [str(SHARED_DATA)] if SHARED_DATA.is_dir() else []
    return json_of(mpirun(ranks, str(SCRIPTS / "collectives.py"), *data, nodes=nodes, timeout=240))


def test_two_level_collectives_keep_the_error_contract(two_level_results):
    assert [(c["case"], c["err"]) for c in two_level_results if not c["err"] <= 1.0] == []
    assert [c["case"] for c in two_level_results if not c["identical"]] == []
    assert [c["case"] for c in two_level_results if not c["exact"]] == []
    assert [c["case"] for c in two_level_results if not c["compressed"]] == []


@pytest.mark.parametrize("nodes, ranks", LAYOUTS, ids=IDS)
def test_two_level_pipelines_equal_unpipelined_bit_for_bit(nodes, ranks):
    need_cliques()
    rows = json_of(mpirun(ranks, str(SCRIPTS / "pipelined.py"), nodes=nodes, timeout=240))
    assert [(c["case"], c["err"]) for c in rows if not c["err"] <= 1.0] == []
    assert [c["case"] for c in rows if not (c["identical"] and c["same"] and c["chunks"])] == []


@pytest.mark.parametrize("nodes, ranks", LAYOUTS, ids=IDS)
def test_mpi4py_own_collective_tests_pass_on_nodes(nodes, ranks, request):
    need_cliques()
    folder = request.getfixturevalue("mpi4py_tests")
    summary = json_of(
        mpirun(ranks, str(SCRIPTS / "mpi4py_suite.py"), str(folder), "test_cco_buf", nodes=nodes, timeout=300)
    )
    for rank in summary:
        assert rank["failures"] == 0 and rank["errors"] == 0, rank["problems"]
        assert rank["run"] >= 40 and rank["skipped"] == 0
        assert rank["compressed_calls"] > 50


def test_every_rank_decides_alike_where_the_ranks_measure_differently():
    """Rank 0 runs on one core (its cores per rank differ from the others'): the cost model's
    inputs are agreed at construction, so every rank takes the same path, estimate and
    algorithm for every collective over a size sweep that crosses the decision."""
    need_cliques()
    everyone = json_of(mpirun(4, str(SCRIPTS / "decisions.py"), nodes=2))
    machine, choices = everyone[0]["machine"], everyone[0]["choices"]
    assert all(rank["machine"] == machine for rank in everyone)
    assert all(rank["choices"] == choices for rank in everyone)
    own = [rank["own_cores"] for rank in everyone]
    assert machine["cores"] == min(own)
    if len(os.sched_getaffinity(0)) > 1:
        assert len(set(own)) > 1  # the ranks' own measurements really differed
    paths = {compressed for _, _, _, compressed, _, _ in choices}
    assert paths == {True, False}  # the sweep crosses from plain to compressed


# ------------------------------------------------------------------ misuse


@pytest.fixture(scope="module", params=[2, 3])
def misuse(request) -> tuple[int, dict]:
    return request.param, json_of(mpirun(request.param, str(SCRIPTS / "misuse.py"), timeout=200))


def test_misuse_raises_the_same_error_on_every_rank_never_hangs(misuse):
    """Each scenario's calls return or raise on every rank (a hang fails the launch's
    timeout); the compressing communicator and one with the default settings on one node
    (mpi4py's own methods) both work afterwards."""
    ranks, report = misuse
    works = report.pop("still works")
    assert len(report) == 44
    for name, per_rank in report.items():
        assert len(per_rank) == ranks
        if name.endswith("(valid)"):  # not misuse: it works as with plain MPI
            assert all(outcome[0] == "no exception" for outcome in per_rank), (name, per_rank)
            continue
        if name.endswith("(root small)"):
            # as with plain MPI, the root's small message leaves at once and the root returns;
            # the receivers, which expected more, raise
            assert per_rank[0][0] == "no exception"
            per_rank = per_rank[1:]
        elif name.endswith("may return)"):
            # plain MPI's calls (small messages, or one node): a Bcast root or a Reduce sender
            # returns once its message has left, and a Bcast receiver once it has arrived,
            # which may be before the refusing rank has flagged it; a rank that has not
            # returned by then raises too
            per_rank = [outcome for outcome in per_rank if outcome[0] != "no exception"]
            assert per_rank, name
        kinds = {(kind, message) for kind, message, _ in per_rank}
        assert len(kinds) == 1, (name, per_rank)  # the same class and message on every rank
        kind = per_rank[0][0]
        if "straddle" in name:
            assert kind == "MismatchError" and "min_bytes" in per_rank[0][1], name
        elif "not compressible" in name:  # plain MPI on that rank, its call completed by the others
            assert kind == "MismatchError" and "not compressible" in per_rank[0][1], (name, per_rank[0])
        elif "MemoryError" in name:
            assert kind == "CollectiveFailedError" and "MemoryError" in per_rank[0][1], name
        else:
            assert kind == "InvalidBufferError" and "rank" in per_rank[0][1], name
            if "aliased" in name:
                assert "overlap" in per_rank[0][1], (name, per_rank[0])
            if "root out of range" in name or "root that is not" in name:
                assert "root that is not a rank" in per_rank[0][1], (name, per_rank[0])
    assert all(works.values()), works  # the communicator works afterwards


# ------------------------------------------------------------------ the runner


def runner(*args: str, n: int = 3) -> tuple[int, str, str]:
    done = run(
        [str(MPIEXEC), "-n", str(n), sys.executable, "-m", "mpi_collectives", *args],
        timeout=60,
    )
    return done.returncode, done.stdout, done.stderr


@pytest.mark.parametrize(
    "args, says",
    [
        (["--rel", "-1", "tests/mpi/plain_app.py"], "the bound must be a positive finite number, got -1"),
        (["--rel", "abc", "tests/mpi/plain_app.py"], "'abc' is not a number"),
        (["tests/mpi/plain_app.py"], "one of the arguments --abs --rel is required"),
        (["--rel", "1e-3", "no/such/program.py"], "cannot open the program 'no/such/program.py'"),
        (["--rel", "1e-3", "--codec", "nope", "tests/mpi/plain_app.py"], "unknown codec 'nope'"),
        (["--abs", "1", "--min-bytes", "-5", "tests/mpi/plain_app.py"], "--min-bytes: must be 0 or more"),
    ],
)
def test_runner_reports_a_bad_command_once_without_a_traceback(args, says):
    status, out, err = runner(*args)
    assert status != 0
    lines = [line for line in err.splitlines() if "UCX" not in line and line.strip()]
    assert lines == [next(line for line in lines if says in line)], err  # one line, once
    assert lines[0].startswith("python -m mpi_collectives: error: ")
    assert "Traceback" not in err + out


def test_runner_reports_settings_that_differ_between_ranks_once():
    python = sys.executable
    command = [str(MPIEXEC)]
    for rel in ("1e-3", "1e-4"):
        command += [":"] if rel != "1e-3" else []
        command += ["-n", "1", python, "-m", "mpi_collectives", "--rel", rel, "tests/mpi/plain_app.py", "x"]
    done = run(command, timeout=60)
    lines = [line for line in done.stderr.splitlines() if "UCX" not in line and line.strip()]
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert len(lines) == 1 and "settings differ between ranks: rel: 0.001 on rank 0, 0.0001 on rank 1" in lines[0]


def test_runner_help_prints_once():
    status, out, err = runner("--help")
    assert status == 0 and out.count("usage: python -m mpi_collectives") == 1
    assert "--rel" in out and "Traceback" not in err
