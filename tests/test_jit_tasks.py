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


@pytest.fixture
def two_threads(monkeypatch):
    """Split work over two threads whatever this machine's core count."""
    monkeypatch.setattr(jit, "threads", lambda: 2)


def test_run_tasks_from_several_threads_at_once_gives_every_caller_its_own_result(two_threads):
    """One caller holds the crew; the others meanwhile go to the pool."""
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

    threads = [threading.Thread(target=caller, args=(k,), daemon=True) for k in range(1, 5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
        assert not t.is_alive(), "run_tasks hung"
    assert not errors and sorted(results) == [1, 2, 3, 4]


def test_work_started_inside_a_span_runs_inline_on_a_crew_thread_and_on_the_pool_from_the_caller(two_threads):
    size = 1 << 18
    seen, outs = [], {}

    def outer(first, stop):
        name = threading.current_thread().name
        seen.append((name, jit._usable_threads()))
        out = np.zeros(size, np.int64)
        jit.run_tasks(_mark, size, out, 1, task_size=1)  # the crew is busy: pool, or inline
        outs[name] = bool(np.all(out == 1))

    done = threading.Event()

    def go():
        jit._crew.run([(outer, (0, 1)), (outer, (1, 2))])
        done.set()

    threading.Thread(target=go, daemon=True).start()
    assert done.wait(60), "nested run_tasks hung"
    usable = dict(seen)
    crew = [name for name in usable if name.startswith("errbound-crew")]
    assert len(crew) == 1 and usable[crew[0]] == 1  # a crew thread runs nested work inline
    assert [v for name, v in usable.items() if name not in crew] == [2]  # the caller may use the pool
    assert all(outs.values()) and len(outs) == 2


INTERRUPTED = r"""
import threading, time, numpy as np
from errbound import jit

class InterruptedOnce:
    # a done lock whose first wait is cut short, as Ctrl-C cuts a real one
    def __init__(self, lock):
        self.lock, self.fired = lock, False
    def acquire(self, *args):
        if not self.fired:
            self.fired = True
            raise KeyboardInterrupt
        return self.lock.acquire(*args)

def slow(first, stop, out):
    time.sleep(0.3)
    out[first:stop] = 1

def mark(first, stop, out):
    out[first:stop] = 2

crew = jit._crew
crew.run([(mark, (0, 1, np.zeros(2))), (mark, (1, 2, np.zeros(2)))])  # hire the member
crew._members[0][1] = InterruptedOnce(crew._members[0][1])
first = np.zeros(2)
try:
    crew.run([(mark, (0, 1, first)), (slow, (1, 2, first))])
    raise SystemExit("no KeyboardInterrupt")
except KeyboardInterrupt:
    pass
second = np.zeros(4)
assert crew.run([(mark, (0, 2, second)), (mark, (2, 4, second))])
assert list(second) == [2, 2, 2, 2], second  # every span ran, none was skipped
time.sleep(0.5)
assert list(first) == [2, 1], first  # the interrupted run's span finished on its own
third = np.zeros(2)
assert crew.run([(mark, (0, 1, third)), (mark, (1, 2, third))]) and list(third) == [2, 2]
print("ok")
"""


def test_an_interrupted_wait_retires_the_crew_so_no_later_run_takes_its_done_signal():
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-c", INTERRUPTED], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr + res.stdout


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_gets_its_own_crew():
    import os

    out = np.zeros(10, np.int64)
    jit._crew.run([(_mark, (0, 5, out, 1)), (_mark, (5, 10, out, 1))])  # the parent's crew exists
    import warnings

    with warnings.catch_warnings():  # Python 3.12+ warns about forking with threads running
        warnings.simplefilter("ignore", DeprecationWarning)
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
