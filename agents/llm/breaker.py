"""Circuit breaker (closed / open / half-open) guarding every LLM call.

Seed 000 §4.4: a slow or dead model must cost a fast rejection, not a 12 s timeout per
batch. After ``failure_threshold`` consecutive failures the breaker opens and rejects
with :class:`CircuitOpenError` for ``reset_timeout_s``; then exactly one probe call is
let through (half-open): its success closes the breaker, its failure re-opens it.
Single-threaded asyncio code uses it, so no lock is needed; the clock is injectable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum

from agents.llm.errors import CircuitOpenError

log = logging.getLogger(__name__)


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


# Gauge values for the ``breaker state`` metric (0 healthy, 2 rejecting everything).
STATE_GAUGE_VALUE: dict[BreakerState, int] = {
    BreakerState.CLOSED: 0,
    BreakerState.HALF_OPEN: 1,
    BreakerState.OPEN: 2,
}

StateChangeCallback = Callable[[BreakerState, BreakerState], None]


def counts_as_failure(exc: BaseException) -> bool:
    """Provider-health failures trip the breaker; answers that are merely bad do not.

    Timeouts, 5xx, 429 and connection errors say the provider is unwell. A malformed
    answer or a 4xx means it answered, so they count as success for the breaker.
    """
    return bool(getattr(exc, "retriable", False)) and not isinstance(exc, CircuitOpenError)


class CircuitBreaker:
    """Consecutive-failure breaker with a single half-open probe."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        reset_timeout_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        on_state_change: StateChangeCallback | None = None,
    ) -> None:
        if failure_threshold < 1:
            raise ValueError("failure_threshold must be at least 1")
        if reset_timeout_s <= 0:
            raise ValueError("reset_timeout_s must be positive")
        self.failure_threshold = failure_threshold
        self.reset_timeout_s = reset_timeout_s
        self._clock = clock
        self._on_state_change = on_state_change
        self._state = BreakerState.CLOSED
        self._consecutive_failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    def __repr__(self) -> str:
        return f"CircuitBreaker(state={self.state.value}, failures={self._consecutive_failures})"

    @property
    def state(self) -> BreakerState:
        """Current state; an open breaker whose timeout has passed reads half-open."""
        if self._state is BreakerState.OPEN and self._open_remaining_s() <= 0:
            self._transition(BreakerState.HALF_OPEN)
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._consecutive_failures

    def _open_remaining_s(self) -> float:
        return self._opened_at + self.reset_timeout_s - self._clock()

    def _transition(self, new: BreakerState) -> None:
        old = self._state
        if old is new:
            return
        self._state = new
        if new is BreakerState.OPEN:
            self._opened_at = self._clock()
        self._probe_in_flight = False
        log.warning("llm circuit breaker %s -> %s", old.value, new.value)
        if self._on_state_change is not None:
            self._on_state_change(old, new)

    def acquire(self) -> None:
        """Admit a call or raise :class:`CircuitOpenError` without touching the network."""
        state = self.state
        if state is BreakerState.OPEN:
            wait_s = max(self._open_remaining_s(), 0.0)
            raise CircuitOpenError(
                f"LLM circuit breaker is open; next probe in {wait_s:.1f} s",
                retry_after_s=wait_s,
            )
        if state is BreakerState.HALF_OPEN:
            if self._probe_in_flight:
                raise CircuitOpenError(
                    "LLM circuit breaker is half-open and its probe is in flight",
                    retry_after_s=0.0,
                )
            self._probe_in_flight = True

    def record_success(self) -> None:
        self._consecutive_failures = 0
        self._transition(BreakerState.CLOSED)
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self._consecutive_failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED
            and self._consecutive_failures >= self.failure_threshold
        ):
            self._transition(BreakerState.OPEN)

    def release(self) -> None:
        """An admitted call ended with no verdict (cancelled): free the probe slot."""
        self._probe_in_flight = False

    @contextmanager
    def guard(self) -> Iterator[None]:
        """``with breaker.guard(): await call()``: admit, then record the outcome."""
        self.acquire()
        try:
            yield
        except Exception as exc:
            if counts_as_failure(exc):
                self.record_failure()
            else:
                self.record_success()
            raise
        except BaseException:
            self.release()
            raise
        else:
            self.record_success()
