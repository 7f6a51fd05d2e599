"""How errbound compiles its kernels: one place for numba's options, its cache, its threading layer,
and what a process does the first time it needs a kernel.

- Every kernel is ``@kernel`` (numba's ``njit`` with ``cache=True``, ``nogil=True``, never
  fastmath). Kernels compile on first use, per signature, and the result is cached on disk.
- The cache lives beside the sources when the package is writable (numba's default), else in
  ``$NUMBA_CACHE_DIR``, else ``$XDG_CACHE_HOME/errbound/numba`` (``~/.cache/...``), else in
  a per-user folder of the temporary directory: a read-only install (modules, containers,
  shared prefixes) compiles once per user and machine, not once per run.
- Many processes starting together on a cold node (``mpiexec -n 64``) do not all compile the
  same kernels: the first use of a codec path in a process (``first_use``) takes a lock file
  in the cache folder unless a stamp says the path was compiled already; whoever gets the
  lock first compiles, the others then load from the cache.
- A first use that compiles for more than a second says so once, through the ``errbound``
  logger (``logging.getLogger("errbound").setLevel(logging.ERROR)`` silences it).
- numba's ``workqueue`` threading layer (the fallback where neither OpenMP nor TBB is
  available) aborts the process when two threads run parallel kernels at once: under it,
  parallel kernels run one at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numba

log = logging.getLogger("errbound")
NOTICE_AFTER_S = 1.0
PACKAGE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- the cache


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".errbound-probe-{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
        return True
    except OSError:
        return False


def _choose_cache_dir() -> Path | None:
    """Where numba keeps compiled kernels (None: beside the sources, numba's own default)."""
    if os.environ.get("NUMBA_CACHE_DIR"):
        return Path(os.environ["NUMBA_CACHE_DIR"])
    if _writable(PACKAGE / "__pycache__"):
        return None
    candidates = []
    if os.environ.get("XDG_CACHE_HOME"):
        candidates.append(Path(os.environ["XDG_CACHE_HOME"]) / "errbound" / "numba")
    candidates.append(Path.home() / ".cache" / "errbound" / "numba")
    candidates.append(Path(tempfile.gettempdir()) / f"errbound-numba-{os.getuid()}")
    for folder in candidates:
        if _writable(folder):
            return folder
    return None


CACHE_DIR = _choose_cache_dir()
if CACHE_DIR is not None:
    numba.config.CACHE_DIR = str(CACHE_DIR)
#: stamps and the compile lock live here
STATE_DIR = (CACHE_DIR or PACKAGE / "__pycache__") / "errbound-jit"


def cache_location() -> str:
    """Where compiled kernels are cached (for messages and ``errbound warmup``)."""
    return str(CACHE_DIR) if CACHE_DIR is not None else f"beside the sources in {PACKAGE}"


# --------------------------------------------------------------------------- kernels


_parallel_lock = threading.Lock()
_layer_checked = False
_serialize_parallel = True  # until the first parallel launch shows which layer numba chose


def _guarded(dispatcher):
    """A parallel kernel that runs alone while the threading layer is not thread-safe."""

    @functools.wraps(dispatcher.py_func)
    def call(*args):
        global _layer_checked, _serialize_parallel
        if not _serialize_parallel:
            return dispatcher(*args)
        with _parallel_lock:
            result = dispatcher(*args)
            if not _layer_checked:
                _layer_checked = True
                _serialize_parallel = numba.threading_layer() == "workqueue"
            return result

    call.dispatcher = dispatcher
    return call


def kernel(fn=None, *, parallel: bool = False, inline: str = "never"):
    """``numba.njit`` with errbound's options: cached, ``nogil``, no fastmath; ``parallel``
    kernels are guarded against non-thread-safe threading layers."""

    def decorate(f):
        dispatcher = numba.njit(cache=True, nogil=True, parallel=parallel, inline=inline)(f)
        return _guarded(dispatcher) if parallel else dispatcher

    return decorate if fn is None else decorate(fn)


def dispatcher_of(obj):
    """The numba dispatcher behind a kernel (a guarded parallel kernel wraps one)."""
    return getattr(obj, "dispatcher", obj)


# --------------------------------------------------------------------------- first use


_done: set[tuple] = set()
_first_lock = threading.Lock()  # one first use at a time per process
_active = threading.local()  # inside a first use on this thread: nested ones ride along


def _stamp(key: tuple) -> Path:
    versions = f"{_errbound_version()}-numba{numba.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    return STATE_DIR / ("-".join(str(k) for k in key) + f".{versions}.stamp")


@functools.cache
def _errbound_version() -> str:
    from . import __version__

    return __version__


@contextlib.contextmanager
def _compile_lock(what: str) -> Iterator[None]:
    try:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        handle = open(STATE_DIR / "compile.lock", "a+b")  # noqa: SIM115 - held for the block
    except OSError:  # nowhere to lock: compile without coordination
        yield
        return
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.warning("errbound: waiting for another process that is compiling errbound's kernels (%s)", what)
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(handle, fcntl.LOCK_UN)
        handle.close()


class _Notice:
    """Says once, after NOTICE_AFTER_S, that a first use is compiling (if it still is)."""

    def __init__(self, what: str):
        self.what = what
        self.compiled = 0
        self.timer = threading.Timer(NOTICE_AFTER_S, self._say)
        self.timer.daemon = True

    def _say(self) -> None:
        if self.compiled:
            log.warning(
                "errbound: compiling the kernels of the %s (first use with the numba cache %s); the next "
                "calls are fast. `errbound warmup` compiles ahead of time.",
                self.what,
                cache_location(),
            )

    def listener(self):
        notice = self

        class Listener(numba.core.event.Listener):
            def on_start(self, event):
                notice.compiled += 1

            def on_end(self, event):
                pass

        return Listener()


@contextlib.contextmanager
def first_use(key: tuple, what: str) -> Iterator[None]:
    """Run the block as this process's first use of a codec path (``key``) if it is one:
    under the compile lock unless a stamp shows the path compiled already, with the notice,
    and stamped afterwards. A first use inside another (compress decoding what it wrote)
    rides along with the outer one."""
    if key in _done or getattr(_active, "on", False):
        yield
        _done.add(key)
        return
    with _first_lock:
        stamp = _stamp(key)
        notice = _Notice(what)
        lock = contextlib.nullcontext() if stamp.exists() else _compile_lock(what)
        _active.on = True
        try:
            with lock, numba.core.event.install_listener("numba:compile", notice.listener()):
                notice.timer.start()
                t0 = time.perf_counter()
                try:
                    yield
                finally:
                    notice.timer.cancel()
                if notice.compiled:
                    log.info("errbound: compiled the %s kernels in %.1f s", what, time.perf_counter() - t0)
        finally:
            _active.on = False
        _done.add(key)
        with contextlib.suppress(OSError):
            stamp.parent.mkdir(parents=True, exist_ok=True)
            stamp.touch()
