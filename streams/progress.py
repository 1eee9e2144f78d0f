"""Feedback on long CLI work: click's progress bar with counts and rate, on stderr.

stdout stays the command's report (scripts parse it); progress goes to stderr. On a
terminal it is click's bar (``done/total``, items per second, ETA). Anywhere else (CI, a
pipe, a log file) click draws nothing, so a plain line ``label: done/total (rate/s)`` is
printed at most every ``line_every_s`` seconds and once at the end: counts are never lost.
"""

from __future__ import annotations

import sys
import time
from types import TracebackType
from typing import IO, Any

import click

LINE_EVERY_S = 2.0  # a non-terminal log gets a count line this often at most, plus the last one


def _rate(done: int, elapsed_s: float) -> str:
    per_s = done / elapsed_s if elapsed_s > 0 else 0.0
    return f"{per_s:,.0f}/s" if per_s >= 10 else f"{per_s:.1f}/s"


class Progress:
    """``with Progress("replaying", total=n) as p: ... p.update(done)``; ``done`` is absolute."""

    def __init__(self, label: str, *, total: int, file: IO[str] | None = None,
                 line_every_s: float = LINE_EVERY_S) -> None:
        self.label = label
        self.total = total
        self.file = file if file is not None else sys.stderr
        self.line_every_s = line_every_s
        self.done = 0
        self._started = time.monotonic()
        self._last_line = -float("inf")
        self._tty = bool(getattr(self.file, "isatty", lambda: False)())
        self._bar: Any = None

    def __enter__(self) -> Progress:
        self._started = time.monotonic()
        if self._tty:
            self._bar = click.progressbar(
                length=max(self.total, 1), label=self.label, file=self.file, show_pos=True,
                show_eta=True, item_show_func=lambda rate: rate,
            ).__enter__()
        return self

    def update(self, done: int, total: int | None = None) -> None:
        """Move to ``done`` of ``total`` (the total may grow, e.g. when a second phase starts)."""
        if total is not None:
            self.total = total
        step, self.done = done - self.done, done
        elapsed_s = time.monotonic() - self._started
        if self._bar is not None:
            self._bar.length = max(self.total, 1)
            self._bar.update(step, current_item=_rate(done, elapsed_s))
        elif elapsed_s - self._last_line >= self.line_every_s:
            self._line(elapsed_s)

    def _line(self, elapsed_s: float) -> None:
        self._last_line = elapsed_s
        click.echo(f"{self.label}: {self.done}/{self.total} ({_rate(self.done, elapsed_s)})", file=self.file)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._bar is not None:
            self._bar.__exit__(kind, exc, tb)
        elif self.total or self.done:  # nothing to count (an empty range, a refused request): silent
            self._line(time.monotonic() - self._started)
