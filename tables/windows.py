"""Window arithmetic on epoch milliseconds: panes, tumbling and hopping bounds, closing.

Pure functions, no Faust. State is kept per restaurant in *panes* of
``pane_ms = gcd(tumbling size, hopping step)``; every window is the union of the panes
``panes_of(start, end, pane_ms)``. Bounds are ``[start, end)`` (start inclusive, end
exclusive), aligned to epoch multiples of the size (tumbling) or step (hopping), so every
worker computes the same windows without coordination.

Closing and the watermark. A window closes once ``end + grace <= watermark``. The closer's
watermark for a partition is::

    max(event watermark, wall clock - allowance)

- the *event watermark* is the largest ``occurred_at`` seen on the partition: it closes
  windows as fast as data proves time has moved on, and makes replays deterministic;
- the *wall-clock path* closes the windows of restaurants (and whole partitions) that went
  quiet: without it a restaurant's last window would stay open until its next review.
  The allowance must exceed the normal processing lag (LLM enrichment runs before
  aggregation; processing_lag_critical_s is a floor), or on-time reviews turn late.

The event watermark lives in memory and restarts from nothing after a crash or
rebalance, so "is this event late?" should also ask the changelogged record of closed
windows (``last_closed_end_ms`` in :meth:`WindowSpec.is_late`): a window closed before
the restart must not silently swallow an event the closer will never emit again.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from math import gcd
from typing import Any

DAY_MS = 86_400_000
NO_WATERMARK = -(2**63)  # before any event: nothing is closable by event time


class WindowKind(StrEnum):
    """The ``WindowKind`` Avro enum."""

    TUMBLING = "TUMBLING"
    HOPPING = "HOPPING"


def pane_start(ts_ms: int, pane_ms: int) -> int:
    """Start of the pane holding ``ts_ms`` (floor to a multiple; fine for negative ts)."""
    return ts_ms - ts_ms % pane_ms


def tumbling_window(ts_ms: int, size_ms: int) -> tuple[int, int]:
    """``(start, end)`` of the tumbling window holding ``ts_ms``."""
    start = ts_ms - ts_ms % size_ms
    return start, start + size_ms


def hopping_windows(ts_ms: int, size_ms: int, step_ms: int) -> list[tuple[int, int]]:
    """Every hopping window ``[start, start + size)`` holding ``ts_ms``, oldest first.

    Starts are multiples of ``step_ms``; there are ``ceil(size / step)`` of them
    (``size / step`` when, as settings require, size is a multiple of step).
    """
    last = ts_ms - ts_ms % step_ms
    first = last - ((size_ms - 1) // step_ms) * step_ms
    return [(s, s + size_ms) for s in range(first, last + 1, step_ms)]


def panes_of(start_ms: int, end_ms: int, pane_ms: int) -> list[int]:
    """Pane starts covering ``[start, end)``; both bounds must be pane aligned."""
    if start_ms % pane_ms or end_ms % pane_ms:
        raise ValueError(f"window [{start_ms}, {end_ms}) is not aligned to panes of {pane_ms}")
    return list(range(start_ms, end_ms, pane_ms))


def closable(window_end_ms: int, *, watermark_ms: int, grace_ms: int) -> bool:
    """True once the window's end plus grace is at or behind the watermark."""
    return window_end_ms + grace_ms <= watermark_ms


def close_watermark(*, event_watermark_ms: int, wall_clock_ms: int, allowance_ms: int) -> int:
    """The watermark the closer uses: event time, or wall clock minus an allowance if later.

    The wall-clock term is what closes the windows of quiet restaurants (see the module
    docstring); ``allowance_ms`` bounds how long a window may wait for slow events.
    """
    return max(event_watermark_ms, wall_clock_ms - allowance_ms)


def utc_day(ts_ms: int) -> tuple[int, int]:
    """``(start, end)`` of the UTC day holding ``ts_ms`` (epoch time has no leap seconds)."""
    return tumbling_window(ts_ms, DAY_MS)


@dataclass(frozen=True, slots=True)
class Watermark:
    """The event watermark of one partition: the largest ``occurred_at`` seen so far."""

    event_ms: int = NO_WATERMARK

    def observe(self, ts_ms: int) -> Watermark:
        return self if ts_ms <= self.event_ms else Watermark(ts_ms)

    def effective_ms(self, *, wall_clock_ms: int, allowance_ms: int) -> int:
        return close_watermark(
            event_watermark_ms=self.event_ms,
            wall_clock_ms=wall_clock_ms,
            allowance_ms=allowance_ms,
        )


@dataclass(frozen=True, slots=True)
class WindowSpec:
    """The window settings in seconds, with the ms arithmetic every caller needs."""

    window_size_s: int = 60
    hopping_size_s: int = 900
    hopping_step_s: int = 60
    window_grace_s: int = 10

    def __post_init__(self) -> None:
        if min(self.window_size_s, self.hopping_size_s, self.hopping_step_s) < 1:
            raise ValueError("window sizes and step must be >= 1 s")
        if self.window_grace_s < 0:
            raise ValueError("window_grace_s must be >= 0")
        if self.hopping_size_s % self.hopping_step_s:
            raise ValueError("hopping_size_s must be a multiple of hopping_step_s")

    @classmethod
    def from_settings(cls, settings: Any) -> WindowSpec:
        """From ``streams.settings.Settings`` (any object with the four fields)."""
        return cls(
            window_size_s=settings.window_size_s,
            hopping_size_s=settings.hopping_size_s,
            hopping_step_s=settings.hopping_step_s,
            window_grace_s=settings.window_grace_s,
        )

    # --- sizes in ms -------------------------------------------------------------------
    @property
    def pane_ms(self) -> int:
        return gcd(self.window_size_s, self.hopping_step_s) * 1000

    @property
    def grace_ms(self) -> int:
        return self.window_grace_s * 1000

    def size_ms(self, kind: WindowKind | str) -> int:
        if kind == WindowKind.TUMBLING:
            return self.window_size_s * 1000
        if kind == WindowKind.HOPPING:
            return self.hopping_size_s * 1000
        raise ValueError(f"unknown window kind {kind!r}")

    def step_ms(self, kind: WindowKind | str) -> int:
        """Distance between consecutive window starts (the size, for tumbling windows)."""
        if kind == WindowKind.TUMBLING:
            return self.window_size_s * 1000
        if kind == WindowKind.HOPPING:
            return self.hopping_step_s * 1000
        raise ValueError(f"unknown window kind {kind!r}")

    # --- where an event goes -----------------------------------------------------------
    def pane_of(self, ts_ms: int) -> int:
        return pane_start(ts_ms, self.pane_ms)

    def tumbling_of(self, ts_ms: int) -> tuple[int, int]:
        return tumbling_window(ts_ms, self.window_size_s * 1000)

    def is_late(self, ts_ms: int, *, watermark_ms: int, last_closed_end_ms: int | None = None) -> bool:
        """True when the tumbling window holding ``ts_ms`` is closed: late beyond grace.

        Lateness is judged on the tumbling window (the finest one). ``last_closed_end_ms``
        is the end of the restaurant's last closed tumbling window from the changelogged
        closed-window record; it covers the in-memory watermark lost in a restart.
        A late event is counted with ``add_late()`` in :meth:`late_pane` instead.
        """
        end = self.tumbling_of(ts_ms)[1]
        if last_closed_end_ms is not None and end <= last_closed_end_ms:
            return True
        return closable(end, watermark_ms=watermark_ms, grace_ms=self.grace_ms)

    def late_pane(self, watermark_ms: int) -> int:
        """The open pane a late event is counted in: the one holding the watermark."""
        return pane_start(watermark_ms, self.pane_ms)

    # --- closing -----------------------------------------------------------------------
    def close_horizon_ms(self, watermark_ms: int) -> int:
        """Windows whose end is <= this are closable at ``watermark_ms``."""
        return watermark_ms - self.grace_ms

    def windows_ending_between(self, after_ms: int, up_to_ms: int, kind: WindowKind | str) -> list[int]:
        """Starts of the ``kind`` windows whose end lies in ``(after_ms, up_to_ms]``, oldest first.

        The closer calls it with ``after_ms`` = end of the restaurant's last closed window
        (for a restaurant never closed: its oldest pane's start, so the scan does not begin
        at the epoch) and ``up_to_ms`` = :meth:`close_horizon_ms`.
        """
        size, step = self.size_ms(kind), self.step_ms(kind)
        # Ends are multiples of the step (size is a multiple of it).
        first_end = after_ms - after_ms % step + step
        return list(range(first_end - size, up_to_ms - size + 1, step))

    def oldest_pane_needed(self, watermark_ms: int) -> int:
        """Panes starting before this can be deleted at ``watermark_ms``.

        Kept: every pane of a window not yet closable (of either kind), plus the tumbling
        window before the oldest open one, so the closer can still rebuild the "previous
        window" the sentiment_drop rule compares against.
        """
        horizon = self.close_horizon_ms(watermark_ms)
        oldest = None
        for kind in (WindowKind.TUMBLING, WindowKind.HOPPING):
            size, step = self.size_ms(kind), self.step_ms(kind)
            first_open_end = horizon - horizon % step + step
            start = first_open_end - size
            if kind == WindowKind.TUMBLING:
                start -= size
            oldest = start if oldest is None else min(oldest, start)
        assert oldest is not None
        return oldest
