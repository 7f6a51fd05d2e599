"""errbound.jit's parallel work: spans handed to the crew (or, when another thread has it, the
pool) cover every task exactly once, failures reach the caller after every span has ended,
and the crew keeps working afterwards."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from errbound import jit


def _mark(first, stop, out, value):
    for i in range(first, stop):
        out[i] += value


def test_crew_spans_cover_every_task_once():
    out = np.zeros(1000, np.int64)
    spans = [(_mark, (a, b, out, 1)) for a, b in ((0, 250), (250, 600), (600, 1000))]
    assert jit._crew.run(spans)
    assert np.all(out == 1)


def test_a_failing_crew_span_raises_in_the_caller_after_every_span_ended_and_the_crew_works_on():
    finished = []

    def slow(first, stop):
        time.sleep(0.05)
        finished.append((first, stop))

    def fail(first, stop):
        raise ValueError(f"span {first}")

    with pytest.raises(ValueError, match="span 1"):
        jit._crew.run([(slow, (0, 1)), (fail, (1, 2)), (slow, (2, 3))])
    assert sorted(finished) == [(0, 1), (2, 3)]  # nothing still running when the error arrived
    out = np.zeros(10, np.int64)
    assert jit._crew.run([(_mark, (0, 5, out, 2)), (_mark, (5, 10, out, 2))])
    assert np.all(out == 2)


def test_run_tasks_from_several_threads_at_once_gives_every_caller_its_own_result():
    """One caller holds the crew; the others meanwhile go to the pool (or run inline)."""
    size = 1 << 18
    results, errors = {}, []

    def caller(k):
        try:
            for _ in range(20):
                out = np.zeros(size, np.int64)
                jit.run_tasks(_mark, size, out, k, task_size=1)
                assert np.all(out == k)
            results[k] = True
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(repr(exc))

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and sorted(results) == [1, 2, 3, 4]


def test_work_started_inside_a_span_runs_inline():
    seen = []

    def outer(first, stop):
        seen.append(jit._usable_threads())

    jit._crew.run([(outer, (0, 1)), (outer, (1, 2))])
    assert 1 in seen  # the crew thread's share: nested work there would wait on itself


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_crew():
    import os

    out = np.zeros(10, np.int64)
    jit._crew.run([(_mark, (0, 5, out, 1)), (_mark, (5, 10, out, 1))])  # the parent's crew exists
    pid = os.fork()
    if pid == 0:  # child: the parent's crew threads are gone; a hang here fails the test by timeout
        try:
            child = np.zeros(10, np.int64)
            ok = jit._crew.run([(_mark, (0, 5, child, 1)), (_mark, (5, 10, child, 1))]) and np.all(child == 1)
            os._exit(0 if ok else 1)
        except BaseException:  # noqa: BLE001
            os._exit(2)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            return
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    pytest.fail("the forked child hung on the parent's crew")
