"""Circuit breaker on a fake clock: opens after N, rejects fast, one half-open probe, recovers."""

from __future__ import annotations

import pytest

from agents.llm.breaker import BreakerState, CircuitBreaker
from agents.llm.errors import CircuitOpenError, LLMMalformedOutputError, LLMServerError


def fail(breaker: CircuitBreaker) -> None:
    with pytest.raises(LLMServerError), breaker.guard():
        raise LLMServerError("boom", status_code=500)


@pytest.fixture
def transitions() -> list[tuple[str, str]]:
    return []


@pytest.fixture
def breaker(clock, transitions) -> CircuitBreaker:
    return CircuitBreaker(
        failure_threshold=3,
        reset_timeout_s=10.0,
        clock=clock,
        on_state_change=lambda old, new: transitions.append((old.value, new.value)),
    )


def test_opens_after_threshold_consecutive_failures(breaker, transitions) -> None:
    fail(breaker)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED
    fail(breaker)
    assert breaker.state is BreakerState.OPEN
    assert transitions == [("closed", "open")]


def test_success_resets_the_consecutive_count(breaker) -> None:
    fail(breaker)
    fail(breaker)
    with breaker.guard():
        pass
    fail(breaker)
    fail(breaker)
    assert breaker.state is BreakerState.CLOSED


def test_open_breaker_rejects_fast_with_time_until_half_open(breaker, clock) -> None:
    for _ in range(3):
        fail(breaker)
    clock.advance(4.0)
    with pytest.raises(CircuitOpenError) as info:
        breaker.acquire()
    assert info.value.retriable is True
    assert info.value.retry_after_s == pytest.approx(6.0)


def test_half_open_lets_exactly_one_probe_through_and_closes_on_success(
    breaker, clock, transitions
) -> None:
    for _ in range(3):
        fail(breaker)
    clock.advance(10.0)
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.acquire()  # the probe
    with pytest.raises(CircuitOpenError):
        breaker.acquire()  # a second caller while the probe is in flight
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED
    assert transitions == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def test_failed_probe_reopens_for_a_full_timeout(breaker, clock) -> None:
    for _ in range(3):
        fail(breaker)
    clock.advance(10.0)
    fail(breaker)  # the probe fails
    assert breaker.state is BreakerState.OPEN
    clock.advance(9.0)
    assert breaker.state is BreakerState.OPEN
    clock.advance(1.0)
    assert breaker.state is BreakerState.HALF_OPEN


def test_malformed_answers_do_not_trip_the_breaker(breaker) -> None:
    for _ in range(5):
        with pytest.raises(LLMMalformedOutputError), breaker.guard():
            raise LLMMalformedOutputError("bad", failed_refs=("a",))
    assert breaker.state is BreakerState.CLOSED


def test_cancelled_probe_frees_the_probe_slot(breaker, clock) -> None:
    for _ in range(3):
        fail(breaker)
    clock.advance(10.0)
    with pytest.raises(KeyboardInterrupt), breaker.guard():
        raise KeyboardInterrupt  # a BaseException, like asyncio.CancelledError
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.acquire()  # a new probe is allowed
