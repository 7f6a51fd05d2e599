"""A tiny dependency-free progress bar on stderr.

    with Progress(total=len(jobs), label="bench") as bar:
        for job in jobs:
            run(job)
            bar.update(note=job.name)

    for item in progress(items, label="fields"):   # the same, as an iterator wrapper
        ...

The bar is drawn only where someone can watch it (the stream is a terminal, or it is forced
with ``force=True`` or ``ERRBOUND_PROGRESS=1``; ``ERRBOUND_PROGRESS=0`` turns it off), and only
for work that is going to last: nothing appears before the projected total time passes
``min_seconds`` (2 s by default), so quick runs print nothing at all.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")

ENV = "ERRBOUND_PROGRESS"
_REDRAW_S = 0.1  # redraw at most 10 times a second: stderr writes are not free on slow terminals
_FIRST_LOOK_S = 0.25  # below this the projection from the first steps is too noisy to trust


def _fmt_time(seconds: float) -> str:
    seconds = int(max(seconds, 0) + 0.5)
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """A progress bar for ``total`` steps; a context manager. ``update`` advances it."""

    def __init__(
        self,
        total: int | None,
        label: str = "",
        *,
        stream: TextIO | None = None,
        force: bool | None = None,
        min_seconds: float = 2.0,
        width: int = 24,
    ):
        self.total = total if total is None else max(int(total), 0)
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.min_seconds = min_seconds
        self.width = width
        self.done = 0
        self.note = ""
        self.enabled = self._wanted(force)
        self._start = time.perf_counter()
        self._last_draw = -1.0
        self._shown = False

    def _wanted(self, force: bool | None) -> bool:
        env = os.environ.get(ENV, "").strip().lower()
        if env in ("0", "no", "false", "off"):
            return False
        if force or env in ("1", "yes", "true", "on"):
            return True
        if force is False:
            return False
        try:
            return bool(self.stream.isatty())
        except (AttributeError, ValueError):  # closed or file-like without isatty
            return False

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def update(self, steps: int = 1, note: str | None = None) -> None:
        """Advance by ``steps``; ``note`` (e.g. what runs next) is shown after the bar."""
        self.done += steps
        if note is not None:
            self.note = note
        if not self.enabled:
            return
        now = time.perf_counter()
        if now - self._last_draw < _REDRAW_S and not (self.total and self.done >= self.total):
            return
        if not self._shown and not self._long_enough(now - self._start):
            return
        self._draw(now)

    def _long_enough(self, elapsed: float) -> bool:
        if elapsed >= self.min_seconds:
            return True
        if elapsed < _FIRST_LOOK_S or not self.total or not self.done:
            return False
        return elapsed / self.done * self.total >= self.min_seconds

    def _draw(self, now: float) -> None:
        elapsed = now - self._start
        if self.total:
            frac = min(self.done / self.total, 1.0)
            filled = int(frac * self.width)
            bar = "#" * filled + "." * (self.width - filled)
            eta = elapsed / self.done * (self.total - self.done) if self.done else 0.0
            text = (
                f"{self.label} [{bar}] {self.done}/{self.total} {frac:4.0%} {_fmt_time(elapsed)} left {_fmt_time(eta)}"
            )
        else:
            text = f"{self.label} {self.done} done {_fmt_time(elapsed)}"
        if self.note:
            text += f"  {self.note}"
        columns = self._columns()
        text = text[: columns - 1].ljust(columns - 1)
        self.stream.write("\r" + text)
        self.stream.flush()
        self._shown = True
        self._last_draw = now

    def _columns(self) -> int:
        try:
            return os.get_terminal_size(self.stream.fileno()).columns
        except (AttributeError, OSError, ValueError):
            return 80

    def close(self) -> None:
        """Remove the bar from a terminal (or end its line when forced onto a file)."""
        if not self._shown:
            return
        try:
            if self.stream.isatty():
                self.stream.write("\r" + " " * (self._columns() - 1) + "\r")
            else:
                self._draw(time.perf_counter())
                self.stream.write("\n")
            self.stream.flush()
        except (OSError, ValueError):
            pass  # a closed stream at exit is no reason to fail the work that finished
        self._shown = False


def progress(iterable: Iterable[T], total: int | None = None, label: str = "", **kwargs) -> Iterator[T]:
    """Yield from ``iterable`` while a :class:`Progress` bar counts the items."""
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    with Progress(total, label, **kwargs) as bar:
        for item in iterable:
            yield item
            bar.update()
