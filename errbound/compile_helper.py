"""A second process that compiles a codec path's kernels beside a cold first use.

A process's first use of a codec path on an empty cache compiles the path's kernels one after
another: 4-7 s for ``sz`` on this project's 2-core machines, most of it numba's own Python.
numba compiles under a process-wide lock, so threads cannot share that work, but processes
can (``errbound.compiling``: each kernel signature compiles in one process, the others wait for
it and load it). So where the process may use a second core, ``first_use`` starts one helper
process beside it, which compiles the path's kernels in the reverse of the order the first
use needs them (the encoder's, then the decoder's, as ``compile_plans.json`` records them)
while the first use compiles from the front; they meet in the middle. Where they would
meet inside one long kernel, the helper first takes one kernel out of turn (``helper_order``).
The first call pair of ``sz`` on a 64^3 array took 6.7 s alone and 4.3 s with the helper here.

- ``ERRBOUND_COMPILE_HELPER=0`` turns it off, ``=1`` on even with one usable core; by default
  it runs where the process may use two cores or more (``os.sched_getaffinity``: an MPI rank
  bound to one core starts none).
- One helper at a time per process (an encode's also compiles its path's decoder); none for
  a path whose helper finished before (a stamp in the cache folder), for a path too quick
  to compile to pay for a helper's start, or for paths without a plan. The helper stops
  after its current kernel when its parent is gone (a wait for another process's compile ends
  then too), and the parent ends it at exit: no process outlives the one that started it.
- The plans only say what to compile: a stale one (a kernel renamed, a signature changed)
  costs the helper's gain, never a result. ``tools/record_compile_plans.py`` writes them.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import importlib
import json
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

log = logging.getLogger("errbound")
PLANS = Path(__file__).with_name("compile_plans.json")
# a path whose kernels compiled faster than this alone (as recorded) gets no helper: starting
# one costs ~0.5 s of a core (an interpreter, numpy, numba and the kernel modules)
HELPER_FROM_S = 1.5

_helper: subprocess.Popen | None = None
_starter_pid = 0  # the process that started _helper (a forked child must not end it)
_helped_pid = 0  # in a helper: the process it helps


@functools.cache
def _plans() -> dict:
    try:
        return json.loads(PLANS.read_text())["plans"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def helper_order(key: tuple) -> list[list]:
    """The kernels [module, qualname, signature, seconds] a helper compiles for the first use
    ``key`` (direction, codec, dtype char, dimensions), in its order. An encode's path goes
    on into the decode (a stream is read back sooner or later, and many first calls are a
    round trip). The helper runs the path backwards, so that the two processes meet in the
    middle, but first takes the one kernel that, taken first, ends the simulated first use
    soonest (see _first_use_ends): where one kernel is a third of the path (`sperr`'s coder,
    2.8 of 6.4 s), running backwards the two processes reach it together and one of them
    waits for the other through all of it."""
    plans = _plans()
    name = " ".join(str(k) for k in key)
    path = list(plans.get(name, []))
    if key[0] == "encode":
        seen = {tuple(entry[:3]) for entry in path}
        decode = plans.get("decode " + " ".join(str(k) for k in key[1:]), [])
        path += [entry for entry in decode if tuple(entry[:3]) not in seen]
    backwards = path[::-1]
    best, best_end = backwards, _first_use_ends(path, backwards)
    for first in path:
        order = [first] + [entry for entry in backwards if entry is not first]
        end = _first_use_ends(path, order)
        if end < best_end - 1e-9:
            best, best_end = order, end
    return best


# seconds from a first use's start until its helper compiles (an interpreter, numpy, numba and
# the kernel modules), and to load a kernel the other process compiled; for planning only
HELPER_START_S = 0.7
LOAD_S = 0.03


def _first_use_ends(path: list[list], order: list[list]) -> float:
    """When a first use that compiles ``path`` in its order ends, its helper compiling
    ``order`` beside it from HELPER_START_S on, by the plan's seconds: each kernel compiles
    in whichever process comes to it first, and a process that needs a kernel the other is
    compiling waits for it and loads it (the helper too: it asks numba for every kernel)."""
    seconds = {tuple(entry[:3]): entry[3] for entry in path}
    taken: dict[tuple, float] = {}  # kernel -> when its compile ends
    helper_at, pending = HELPER_START_S, list(order)
    now = 0.0
    for entry in path:
        kernel = tuple(entry[:3])
        while pending and helper_at < now:  # the helper's work until this moment
            ahead = tuple(pending.pop(0)[:3])
            if ahead not in taken:
                helper_at += seconds[ahead]
                taken[ahead] = helper_at
            elif taken[ahead] > helper_at:
                helper_at = taken[ahead] + LOAD_S
        if kernel in taken:
            now = max(now, taken[kernel]) + LOAD_S
        else:
            now += entry[3]
            taken[kernel] = now
    return now


def usable_cores() -> int:
    """Cores this process may run on (its affinity: an MPI rank bound to one core has one)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_SETTINGS = {"0": False, "false": False, "no": False, "off": False, "1": True, "true": True, "yes": True, "on": True}


def enabled() -> bool:
    """ERRBOUND_COMPILE_HELPER: 0/false/no/off or 1/true/yes/on; unset (or anything else,
    which is logged): where the process may use two cores."""
    setting = os.environ.get("ERRBOUND_COMPILE_HELPER", "").strip().lower()
    if setting in _SETTINGS:
        return _SETTINGS[setting]
    if setting:
        log.warning("errbound: ERRBOUND_COMPILE_HELPER=%r is not 0/1/true/false: ignored", setting)
    return usable_cores() >= 2


def parent_gone() -> bool:
    """In a helper, whether the process it helps is gone (errbound.compiling's lock waits ask:
    a helper waiting for a third process's compile would else outlive its parent by that
    wait). False in any other process."""
    return _helped_pid != 0 and os.getppid() != _helped_pid


def _interpreter_flags() -> list[str]:
    """The flags of this interpreter that decide what it imports (isolated, no environment,
    no user site, no unsafe path), for the helper: run without them, it could import another
    numba or numpy than this process (from PYTHONPATH or the user's site) and cache kernels
    this process cannot use."""
    flags = sys.flags
    if flags.isolated:
        return ["-I"]
    chosen = [flag for flag, on in (("-E", flags.ignore_environment), ("-s", flags.no_user_site)) if on]
    if getattr(flags, "safe_path", False):  # Python 3.11+
        chosen.append("-P")
    return chosen


def _interpreter() -> str | None:
    """This process's Python, where it is one (an embedding application's executable is not)."""
    exe = sys.executable
    if exe and os.access(exe, os.X_OK) and Path(exe).name.lower().startswith(("python", "pypy")):
        return exe
    return None


def start_for(key: tuple, stamp, cache_dir: Path | None = None) -> bool:
    """Start a helper for the cold first use ``key`` where one pays (see the module's
    docstring); ``stamp(key)`` names a key's stamp file and ``cache_dir`` is the kernel cache
    folder (errbound.compiling's; None: beside the sources). True if one started."""
    global _helper, _starter_pid
    if not enabled():
        return False
    if _helper is not None and _starter_pid == os.getpid() and _helper.poll() is None:
        return False
    order = helper_order(key)
    exe = _interpreter()
    if exe is None or sum(entry[3] for entry in order) < HELPER_FROM_S or stamp(("helped", *key)).exists():
        return False
    env = {**os.environ, "ERRBOUND_COMPILE_HELPER": "0"}
    if cache_dir is not None:  # the same cache as this process, however it was chosen
        env["NUMBA_CACHE_DIR"] = str(cache_dir)
    # stamps the helper leaves when it is through: a later first use of these paths needs none
    helped = [key, ("decode", *key[1:])] if key[0] == "encode" else [key]
    marks = json.dumps([str(stamp(("helped", *k))) for k in helped])
    # `-c` puts the working folder first on sys.path: out, and this package's root in front
    code = (
        "import sys; sys.path[:] = [sys.argv[1]] + [p for p in sys.path if p not in ('', '.')]; "
        "from errbound.compile_helper import main; main(sys.argv[2:])"
    )
    root = str(Path(__file__).resolve().parents[1])
    try:
        _helper = subprocess.Popen(
            [exe, *_interpreter_flags(), "-c", code, root, json.dumps(list(key)), str(os.getpid()), marks],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            cwd=root,
        )
    except OSError as exc:
        log.debug("errbound: no compile helper (%s)", exc)
        return False
    _starter_pid = os.getpid()
    # reaped when it ends (else it stays a zombie until this process exits)
    threading.Thread(target=_helper.wait, name="errbound-helper-reaper", daemon=True).start()
    log.debug("errbound: compile helper %d started for %s", _helper.pid, key)
    return True


def stop() -> None:
    """End this process's helper if it still runs (at exit; a kernel it was compiling is
    neither saved nor half-saved: numba writes cache files whole, by renaming)."""
    if _helper is not None and _starter_pid == os.getpid() and _helper.poll() is None:
        _helper.terminate()
        try:
            _helper.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _helper.kill()


atexit.register(stop)


def wait(timeout: float | None = None) -> int | None:
    """Wait for this process's helper to finish; its exit status (None: none was started)."""
    if _helper is None or _starter_pid != os.getpid():
        return None
    return _helper.wait(timeout)


def main(argv: list[str]) -> None:
    """The helper: compile the kernels of helper_order(key) into the shared cache (the kernel
    modules import errbound.compiling, which chooses the cache and coordinates the compiles)."""
    from numba.core import registry, types

    global _helped_pid
    key, parent, marks = tuple(json.loads(argv[0])), int(argv[1]), json.loads(argv[2])
    _helped_pid = parent
    names = {name: getattr(types, name) for name in dir(types) if not name.startswith("_")}
    for module, qualname, signature, _ in helper_order(key):
        if os.getppid() != parent:  # the first use's process is gone
            return
        try:
            kernel = importlib.import_module(module)
            for part in qualname.split("."):
                kernel = getattr(kernel, part)
            if not isinstance(kernel, registry.CPUDispatcher):
                continue
            kernel.compile(eval(signature, {"__builtins__": {}}, names))  # noqa: S307 - our own package data
        except Exception as exc:  # noqa: BLE001 - a stale plan entry: the first use compiles it itself
            log.debug("errbound: compile helper skipped %s.%s%s (%s)", module, qualname, signature, exc)
    for mark in marks:
        with contextlib.suppress(OSError):
            Path(mark).parent.mkdir(parents=True, exist_ok=True)
            Path(mark).touch()
