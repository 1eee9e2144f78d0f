"""The one way tests wait: poll a predicate, fail with the last value seen. No sleeps for luck."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def until(probe: Callable[[], T], *, timeout_s: float, what: str = "condition",
          interval_s: float = 0.1, done: Callable[[T], bool] = bool) -> T:
    """Call ``probe`` until ``done(result)``; return the result or raise with the last one."""
    deadline = time.monotonic() + timeout_s
    last: T | None = None
    while True:
        last = probe()
        if done(last):
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not reached in {timeout_s} s; last value: {last!r}")
        time.sleep(interval_s)
