"""Spend guards: a global token budget per minute and a per-restaurant daily cost cap.

Seed 000 §4.4 names "explosão de custos" (an upstream service publishing 100k events a
minute) as a failure mode; these two guards bound it. Both are pure in-memory logic with
an injectable clock. The app persists per-restaurant spend in a Faust table, so the cap
decision is a pure function of (spent, estimate, cap) that works on the table's value.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

WINDOW_S = 60.0


class TokenBudget:
    """At most ``tokens_per_minute`` tokens over any sliding 60 s window.

    Callers reserve an estimate before a call and commit the actual usage after it;
    the difference is booked at commit time. A negative correction expires a little
    later than the reservation it corrects (by the call's latency), so ``remaining``
    can briefly read high by that amount; it is clamped to [0, tokens_per_minute].
    """

    def __init__(
        self, *, tokens_per_minute: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if tokens_per_minute <= 0:
            raise ValueError("tokens_per_minute must be positive")
        self.tokens_per_minute = tokens_per_minute
        self._clock = clock
        self._entries: deque[tuple[float, int]] = deque()
        self._used = 0

    def _expire(self) -> None:
        horizon = self._clock() - WINDOW_S
        while self._entries and self._entries[0][0] <= horizon:
            _, tokens = self._entries.popleft()
            self._used -= tokens

    @property
    def used(self) -> int:
        """Tokens booked in the current window (clamped at zero)."""
        self._expire()
        return max(self._used, 0)

    @property
    def remaining(self) -> int:
        """Tokens still available in the current window: the ``budget remaining`` metric."""
        return min(max(self.tokens_per_minute - self.used, 0), self.tokens_per_minute)

    def try_reserve(self, tokens: int) -> bool:
        """Book ``tokens`` if they fit in the window; False (nothing booked) if not."""
        if tokens < 0:
            raise ValueError("tokens must not be negative")
        if tokens > self.remaining:
            return False
        self._book(tokens)
        return True

    def commit(self, actual: int, *, reserved: int) -> None:
        """Replace a reservation of ``reserved`` tokens by the ``actual`` usage."""
        self._book(actual - reserved)

    def release(self, reserved: int) -> None:
        """Give back a reservation whose call used nothing (a transport failure)."""
        self.commit(0, reserved=reserved)

    def _book(self, tokens: int) -> None:
        if tokens:
            self._expire()
            self._entries.append((self._clock(), tokens))
            self._used += tokens


def utc_day(epoch_s: float) -> str:
    """The UTC calendar day ("2025-01-05") a daily cap bucket is keyed by."""
    return datetime.fromtimestamp(epoch_s, tz=UTC).date().isoformat()


def would_exceed(
    *, spent_micro_usd: int, estimate_micro_usd: int, cap_micro_usd: int | None
) -> bool:
    """True when spending ``estimate_micro_usd`` more would pass the cap (None = no cap)."""
    if cap_micro_usd is None:
        return False
    return spent_micro_usd + estimate_micro_usd > cap_micro_usd


class RestaurantDailySpend:
    """In-memory per-restaurant, per-UTC-day spend; the worker's table plays this role."""

    def __init__(self) -> None:
        self._spent: dict[tuple[str, str], int] = {}

    def spent(self, restaurant_id: str, day: str) -> int:
        return self._spent.get((restaurant_id, day), 0)

    def add(self, restaurant_id: str, day: str, cost_micro_usd: int) -> int:
        """Add a cost and return the new total for that restaurant and day."""
        total = self.spent(restaurant_id, day) + cost_micro_usd
        self._spent[(restaurant_id, day)] = total
        return total

    def would_exceed(
        self, restaurant_id: str, day: str, *, estimate_micro_usd: int, cap_micro_usd: int | None
    ) -> bool:
        return would_exceed(
            spent_micro_usd=self.spent(restaurant_id, day),
            estimate_micro_usd=estimate_micro_usd,
            cap_micro_usd=cap_micro_usd,
        )
