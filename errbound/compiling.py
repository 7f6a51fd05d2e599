"""Compiled kernels between processes: where numba's cache lives, how processes that share it
compile each kernel once, and what a process does on its first use of a codec path.

- The cache lives beside the sources when the package is writable (numba's default), else in
  ``$NUMBA_CACHE_DIR``, else ``$XDG_CACHE_HOME/errbound/numba`` (``~/.cache/...``), else in
  a per-user folder of the temporary directory: a read-only install (modules, containers,
  shared prefixes) compiles once per user and machine, not once per run.
- Many processes starting together on a cold node (``mpiexec -n 64``) do not all compile the
  same kernels: the first use of a codec path in a process (``first_use``) takes the path's
  lock file in the cache folder unless a stamp says the path was compiled already; whoever
  gets the lock first compiles, the others then load from the cache. Below that, every
  kernel signature compiles in one process at a time (``compiled_once_per_cache``), so that
  work split between processes (the collectives' warm-up on a host's ranks, ``errbound
  warmup --jobs``) compiles each signature once and in parallel, and saves never collide.
- A first use that compiles for more than a second says so once, through the ``errbound``
  logger (``logging.getLogger("errbound").setLevel(logging.ERROR)`` silences it).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import logging
import os
import stat
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numba
import numba.core.caching
import numba.core.sigutils
from numba.core.compiler_lock import global_compiler_lock

from . import compile_helper

log = logging.getLogger("errbound")


def _seconds_from_environment(name: str, default: float) -> float:
    """A number of seconds from the environment; a value that is not one is ignored (with a
    warning), not an error at import."""
    text = os.environ.get(name, "")
    try:
        value = float(text) if text.strip() else default
    except ValueError:
        value = float("nan")
    if not value >= 0:  # also nan
        log.warning("errbound: ignoring %s=%r (not a number of seconds); using %s", name, text, default)
        return default
    return value


# a first use that compiles longer than this says so (ERRBOUND_COMPILE_NOTICE_S overrides it)
NOTICE_AFTER_S = _seconds_from_environment("ERRBOUND_COMPILE_NOTICE_S", 1.0)
PACKAGE = Path(__file__).resolve().parent


# --------------------------------------------------------------------------- the cache


def _writable(folder: Path, private: bool = False) -> bool:
    """Whether files can be made in ``folder`` (made if missing). ``private``: a folder in a
    temporary directory that other users share, which must be this user's alone (made with
    mode 0700): one that another user made first would hand this process their pickled
    kernels to load and their lock files to wait on."""
    try:
        folder.mkdir(mode=0o700 if private else 0o777, parents=True, exist_ok=True)
        if private:
            st = folder.lstat()
            if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o022:
                log.debug("errbound: %s is not this user's own folder: no kernel cache there", folder)
                return False
        # a unique probe: processes of containers that share the folder may share a pid
        handle, probe = tempfile.mkstemp(prefix=".errbound-probe-", dir=folder)
        os.close(handle)
        os.unlink(probe)
        return True
    except OSError:
        return False


def _user_cache_home(environ) -> list[Path]:
    """``$XDG_CACHE_HOME`` (only an absolute path counts, as the XDG specification says) and
    ``~/.cache`` where a home folder is known (a container's arbitrary user may have none)."""
    folders = []
    xdg = environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):
        folders.append(Path(xdg))
    try:
        folders.append(Path.home() / ".cache")
    except (RuntimeError, KeyError, OSError):
        pass
    return folders


def choose_cache_dir(environ=os.environ, package: Path = PACKAGE) -> tuple[Path | None, bool]:
    """(folder, caching): where numba keeps compiled kernels (None: beside the sources,
    numba's own default), and False where no folder at all can be written (then kernels are
    not cached: numba refuses ``cache=True`` with nowhere to write, at import)."""
    if environ.get("NUMBA_CACHE_DIR"):
        # absolute: the compile helper runs in another working folder and must share it
        return Path(os.path.abspath(environ["NUMBA_CACHE_DIR"])), True
    if _writable(package / "__pycache__"):
        return None, True
    candidates = [(home / "errbound" / "numba", False) for home in _user_cache_home(environ)]
    try:
        candidates.append((Path(tempfile.gettempdir()) / f"errbound-numba-{os.getuid()}", True))
    except OSError:  # no usable temporary directory at all
        pass
    for folder, private in candidates:
        if _writable(folder, private):
            return folder, True
    return None, False


CACHE_DIR, CACHING = choose_cache_dir()
if not CACHING:
    log.warning(
        "errbound: no writable folder for compiled kernels (the package folder, $XDG_CACHE_HOME, "
        "~/.cache and the temporary directory are not): every process compiles them again; "
        "set NUMBA_CACHE_DIR to a writable folder"
    )


def numba_cache() -> bool:
    """Whether kernels are cached (``njit(cache=...)``), with numba's cache folder set to
    errbound's first: where errbound moves it (a read-only install), the process's other numba
    code caches there too (README says so; NUMBA_CACHE_DIR wins). numba resets the folder to
    its own choice whenever any NUMBA_* variable changes (its config reload), and a kernel
    made after that would cache elsewhere."""
    if CACHE_DIR is not None and numba.config.CACHE_DIR != str(CACHE_DIR):
        numba.config.CACHE_DIR = str(CACHE_DIR)
    return CACHING


numba_cache()
#: stamps and the compile lock live here
STATE_DIR = (CACHE_DIR or PACKAGE / "__pycache__") / "errbound-jit"


def cache_location() -> str:
    """Where compiled kernels are cached (for messages and ``errbound warmup``)."""
    if not CACHING:
        return "nowhere (no writable folder; set NUMBA_CACHE_DIR)"
    return str(CACHE_DIR) if CACHE_DIR is not None else f"beside the sources in {PACKAGE}"


# --------------------------------------------------------------------------- compiles between processes


def compiled_once_per_cache(dispatcher):
    """Let processes that share the numba cache compile ``dispatcher`` together: each
    signature compiles in one of them while the others wait for it and then load it, and
    different signatures (and kernels) compile in different processes at once.

    numba alone is not safe there: its cache index holds every signature of a kernel and is
    rewritten whole on each save, before the data file; two processes saving different
    signatures at once may both take the same data file name, and a process reading between
    another's index and data writes may load a stale data file of another signature (the
    index can name another signature's machine code either way). Here a lock file per
    signature is held from the cache miss until the compile returns, the kernel's saves hold
    its lock exclusively and its loads shared, and a loaded result must carry the signature
    asked for. Returns ``dispatcher`` (for decorators); one without a disk cache is left alone."""
    cache = getattr(dispatcher, "_cache", None)
    if not isinstance(cache, numba.core.caching.FunctionCache) or isinstance(cache, _SharedCache):
        return dispatcher
    dispatcher._cache = _SharedCache(cache)
    compile_signature = dispatcher.compile

    def compile_releasing(sig):
        # numba's (re-entrant) compiler lock around the whole call, so that the signature
        # locks this call took are released before another thread of the process compiles
        with global_compiler_lock:
            outermost = not _taken
            start = time.perf_counter()
            _taken.append([])
            try:
                return compile_signature(sig)
            finally:  # after the save, or the failure: never keeps the other processes waiting
                for name in _taken.pop():
                    handle = _held.pop(name, None)
                    if handle is not None:
                        _unlock(handle)
                if outermost:  # a callee's load or compile is inside its caller's
                    _setup[0] += time.perf_counter() - start

    dispatcher.compile = compile_releasing
    return dispatcher


# seconds this process spent loading or compiling kernels, and the signatures it compiled
# (saved to the cache): see kernel_setup
_setup = [0.0, 0]


def kernel_setup() -> tuple[float, int]:
    """(seconds, signatures compiled): what this process has spent so far loading errbound's
    kernels from the cache or compiling them, and how many it compiled. Both grow only on a
    process's first use of a kernel signature; the CLI subtracts them from its timings, so
    that the speed it prints is the codec's, not the one-time set-up's."""
    return _setup[0], _setup[1]


# signature locks this process holds (by lock file name; one open file per name, as a second
# open of a file this process has locked would wait for itself), and the names each compile
# call on the stack took; both only touched under numba's compiler lock
_held: dict[str, object] = {}
_taken: list[list[str]] = []
# a wait on another process's compile longer than this says so (a compile takes seconds; a
# process stopped while compiling keeps the others waiting)
KERNEL_WAIT_NOTICE_S = 30.0
# the longest wait for a callee's signature lock while holding the caller's (see load_overload)
NESTED_WAIT_S = 10.0


class _SharedCache:
    """numba's FunctionCache for one kernel, with the locks of compiled_once_per_cache."""

    def __init__(self, cache):
        self._cache = cache
        index = cache._cache_file._index_path
        self._name = Path(index).name.removesuffix(".nbi") + "-" + _digest(index)
        self._waiting = f"for another process compiling kernel {self._name}"

    @staticmethod
    def _path(name: str) -> Path:
        return STATE_DIR / "kernels" / name

    def __getattr__(self, name):
        if name == "_cache":  # a copy without its state: not numba's cache either
            raise AttributeError(name)
        return getattr(self._cache, name)

    def load_overload(self, sig, target_context):
        found = self._load(sig, target_context)
        if found is not None or not _taken:  # a hit, or called outside a compile: no lock
            return found
        name = f"{self._name}.{_digest(str(sig))}.lock"
        if name in _held:  # this process is compiling it already (a nested call)
            return None
        # a miss: wait for whoever compiles this signature now, then look again. A process
        # that holds a signature lock already (this is a callee of what it compiles) waits
        # only so long: two processes taking two signatures' locks in opposite orders
        # (kernels calling each other, or sharing a cache index) would wait for each other
        # forever; past the limit it compiles the signature itself (the saves are serialized)
        handle = _lock(self._path(name), timeout=NESTED_WAIT_S if _held else None, waiting=self._waiting)
        if handle is None:  # nowhere to lock, or waited enough: compile without coordination
            return None
        try:
            found = self._load(sig, target_context)
        except BaseException:
            _unlock(handle)
            raise
        if found is not None:
            _unlock(handle)
            return found
        _held[name] = handle  # compiled here: released when the compile call returns or fails
        _taken[-1].append(name)
        return None

    def _load(self, sig, target_context):
        """numba's load, never during a save of this kernel, and only a result that is the
        signature asked for (anything else is a miss)."""
        handle = _lock(self._path(f"{self._name}.lock"), shared=True, waiting=self._waiting)
        try:
            found = self._cache.load_overload(sig, target_context)
        finally:
            if handle is not None:
                _unlock(handle)
        if found is not None:
            args, _ = numba.core.sigutils.normalize_signature(sig)
            if tuple(found.signature.args) != tuple(args):
                return None
        return found

    def save_overload(self, sig, data):
        _setup[1] += 1  # numba saves every signature it compiles (cache=True)
        handle = _lock(self._path(f"{self._name}.lock"), waiting=self._waiting)
        try:
            self._cache.save_overload(sig, data)
        finally:
            if handle is not None:
                _unlock(handle)


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


_folders: set[Path] = set()  # lock folders made by this process


def _lock(
    path: Path,
    shared: bool = False,
    timeout: float | None = None,
    waiting: str = "",
    say_after: float | None = None,
):
    """A lock on the lock file ``path``, waited for; a wait longer than ``say_after`` says so
    once ("waiting ``waiting``"). None where the folder cannot be written or its file system
    has no locks (some parallel file systems refuse flock: the caller then compiles without
    coordination, as numba alone would), or after ``timeout`` seconds. ``say_after``:
    KERNEL_WAIT_NOTICE_S unless given."""
    say_after = KERNEL_WAIT_NOTICE_S if say_after is None else say_after
    try:
        if path.parent not in _folders:
            path.parent.mkdir(parents=True, exist_ok=True)
            _folders.add(path.parent)
        handle = open(path, "a+b")  # noqa: SIM115 - held until _unlock
    except OSError:
        return None
    mode = (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB
    start, pause, said = time.monotonic(), 0.002, False
    while True:
        try:
            fcntl.flock(handle, mode)
            return handle
        except BlockingIOError:
            pass
        except OSError as exc:
            log.debug("errbound: no compile lock on %s (%s)", path, exc)
            handle.close()
            return None
        if compile_helper.parent_gone():  # a helper whose parent died: its work is moot
            handle.close()
            raise SystemExit(0)
        waited = time.monotonic() - start
        if timeout is not None and waited > timeout:
            handle.close()
            return None
        if not said and waited >= say_after:
            said = True
            log.warning(
                "errbound: waiting %s (lock %s%s)",
                waiting,
                path,
                f"; {waited:.0f} s so far: a process stopped while compiling keeps the others waiting"
                if waited >= 1
                else "",
            )
        time.sleep(pause)
        pause = min(2 * pause, 0.05)


def _unlock(handle) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(handle, fcntl.LOCK_UN)
    handle.close()


# --------------------------------------------------------------------------- first use


_done: set[tuple] = set()
_first_lock = threading.Lock()  # one first use at a time per process
_active = threading.local()  # inside a first use on this thread: nested ones ride along


def stamp_file(key: tuple) -> Path:
    """The stamp that says a path ``key`` was compiled into this cache (by errbound and numba version)."""
    versions = f"{_errbound_version()}-numba{numba.__version__}-py{sys.version_info[0]}{sys.version_info[1]}"
    return STATE_DIR / ("-".join(str(k) for k in key) + f".{versions}.stamp")


@functools.cache
def _errbound_version() -> str:
    from . import __version__

    return __version__


@contextlib.contextmanager
def _compile_lock(what: str, stamp: Path) -> Iterator[None]:
    """Hold the path's cross-process compile lock for the block, unless ``stamp`` appears while
    this process waits for it: then the holder compiled this path, and the block runs
    unlocked (loading from the cache), so that ranks do not take turns running their first
    calls. One lock per path: processes starting different paths (ranks compressing
    different variables) compile at once, each kernel signature still once between them
    (compiled_once_per_cache). Where nothing can be locked, the block runs without."""
    handle = _lock(
        stamp.with_name(stamp.name.removesuffix(".stamp") + ".lock"),
        waiting=f"for another process that is compiling the same kernels ({what})",
        say_after=0.0,
    )
    if handle is not None and stamp.exists():
        _unlock(handle)
        handle = None
    try:
        yield
    finally:
        if handle is not None:
            _unlock(handle)


WARMUP_HINT = "`errbound warmup` compiles ahead of time."


class _Notice:
    """Says once that a first use is compiling, as soon as it has both run NOTICE_AFTER_S
    and compiled something (a first use that only loads from the cache says nothing)."""

    def __init__(self, what: str, hint: str, quiet: bool = False):
        self.what = what
        self.hint = hint
        self.compiled = 0
        self.due = False
        self.said = quiet
        self.lock = threading.Lock()
        self.timer = threading.Timer(NOTICE_AFTER_S, self._expire)
        self.timer.daemon = True

    def _expire(self) -> None:
        with self.lock:
            self.due = True
        self._maybe_say()

    def _compiling(self) -> None:
        with self.lock:
            self.compiled += 1
        self._maybe_say()

    def _maybe_say(self) -> None:
        with self.lock:
            if not (self.due and self.compiled) or self.said:
                return
            self.said = True
        log.warning(
            "errbound: compiling the kernels of the %s (first use with the numba cache %s); the next "
            "calls are fast. %s",
            self.what,
            cache_location(),
            self.hint,
        )

    def listener(self):
        notice = self

        class Listener(numba.core.event.Listener):
            def on_start(self, event):
                notice._compiling()

            def on_end(self, event):
                pass

        return Listener()


@contextlib.contextmanager
def first_use(
    key: tuple, what: str, hint: str = WARMUP_HINT, *, shared: bool = False, say: bool = True
) -> Iterator[None]:
    """Run the block as this process's first use of a codec path (``key``) if it is one:
    under the compile lock unless a stamp shows the path compiled already, with the notice,
    and stamped afterwards. A first use inside another (compress decoding what it wrote)
    rides along with the outer one.

    ``shared``: processes that run the block at the same time split its compiles between
    them (each takes the work in its own order; a signature another process is compiling is
    waited for and loaded, see compiled_once_per_cache) instead of one compiling it all
    under the lock while the others wait. ``say=False``: this process does not say that
    it compiles (another one of the group does)."""
    if key in _done or getattr(_active, "on", False):
        yield
        if key not in _done:  # rode along and got through: its kernels are in the cache now
            _done.add(key)
            _touch(stamp_file(key))
        return
    with _first_lock:
        stamp = stamp_file(key)
        notice = _Notice(what, hint, quiet=not say)
        lock = contextlib.nullcontext() if shared or stamp.exists() else _compile_lock(what, stamp)
        _active.on = True
        try:
            with lock, numba.core.event.install_listener("numba:compile", notice.listener()):
                if not shared and not stamp.exists():  # cold, and this process compiles the path
                    try:
                        compile_helper.start_for(key, stamp_file, CACHE_DIR)
                    except Exception as exc:  # noqa: BLE001 - a helper only saves time: never fail the call
                        log.debug("errbound: no compile helper for %s (%r)", key, exc)
                notice.timer.start()
                t0 = time.perf_counter()
                try:
                    yield
                finally:
                    notice.timer.cancel()
                if notice.compiled:
                    log.info("errbound: compiled the %s kernels in %.1f s", what, time.perf_counter() - t0)
                # stamped before the lock is let go: a process that takes it next then
                # sees the stamp and loads, instead of running its first call locked
                _done.add(key)
                _touch(stamp)
        finally:
            _active.on = False


def _after_fork_in_child() -> None:
    """A child forked while another thread was inside a first use (or a compile) inherits
    that state but not the thread: start over, or its own first use would wait forever on a
    lock that no thread of it holds. The inherited lock files are closed, not unlocked: an
    unlock would release the parent's locks (flock locks belong to the shared open file)."""
    global _first_lock, _active
    _first_lock, _active = threading.Lock(), threading.local()
    for handle in _held.values():
        with contextlib.suppress(OSError):
            handle.close()
    _held.clear()
    _taken.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _touch(stamp: Path) -> None:
    with contextlib.suppress(OSError):
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.touch()
