"""Writing an output file so that a reader sees the old file or the complete new one, never a
half-written one, and nothing else about the path changes.

``with atomic_output(path) as tmp:`` gives a temporary path beside ``path``; write the file
there, and on a clean exit it is flushed to disk and renamed over ``path`` (then the
directory is synced). On an error the temporary file is removed and ``path`` is untouched.

- An existing output keeps its permission bits (and, for root, its owner); a new one gets
  0666 less the umask, as ``open()`` would give it.
- A symbolic link is followed: the file it points to is replaced, the link stays.
- Character devices and FIFOs (``-o /dev/null``, a named pipe) are written through, in
  place: renaming over them would replace the device node with a regular file. Other
  special files (directories, block devices, sockets) are refused.
- A run killed by SIGKILL cannot clean up after itself: temporary files carry the host and
  process id in their name, and the next write beside the same output removes those of
  processes on this host that no longer exist.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

from ..errors import ErrboundError

_SUFFIX = ".errbound-tmp"


class OutputPathError(ErrboundError, ValueError):
    """The output path cannot be written as a file (a directory, a block device, a socket)."""


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in socket.gethostname())[:40] or "host"


def temporary_name(path: Path, pid: int | None = None) -> Path:
    """A fresh temporary path beside ``path`` that names this host and process."""
    pid = os.getpid() if pid is None else pid
    return path.with_name(f".{path.name}.{_host()}.{pid}.{secrets.token_hex(4)}{_SUFFIX}")


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove temporary files of ``path`` left by processes of this host that have died."""
    removed = []
    prefix = f".{path.name}.{_host()}."
    for candidate in path.parent.glob(f".{glob_escape(path.name)}.*{_SUFFIX}"):
        rest = candidate.name[len(prefix) :] if candidate.name.startswith(prefix) else ""
        pid = rest.split(".", 1)[0]
        if not pid.isdigit() or _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            candidate.unlink()
            removed.append(candidate)
    return removed


def glob_escape(name: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


@contextlib.contextmanager
def atomic_output(path) -> Iterator[Path]:
    """Yield the path to write to; see the module docstring."""
    path = Path(path)
    if path.is_symlink():
        path = path.resolve()
    try:
        st = path.stat()
    except FileNotFoundError:
        st = None
    if st is not None and (stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode)):
        yield path  # a device or a pipe: written in place
        return
    if st is not None and not stat.S_ISREG(st.st_mode):
        kind = "a directory" if stat.S_ISDIR(st.st_mode) else "not a regular file"
        raise OutputPathError(f"{path}: {kind}; errbound writes its outputs as regular files")
    if not path.parent.is_dir():
        raise OutputPathError(f"{path.parent}: no such directory for the output")
    remove_stale_temporaries(path)
    tmp = temporary_name(path)
    # created owner-only: the new contents of a private file must not be readable by others
    # while they are written; the final mode is set below, before the rename
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        if st is not None:
            os.chmod(tmp, stat.S_IMODE(st.st_mode))
            if os.geteuid() == 0:
                with contextlib.suppress(OSError):
                    os.chown(tmp, st.st_uid, st.st_gid)
        else:
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
        _sync_directory(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write(path, write) -> None:
    """Write ``path`` through ``write(binary file object)`` with :func:`atomic_output`."""
    with atomic_output(path) as target, open(target, "wb") as f:
        write(f)
        f.flush()


def _sync_directory(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
