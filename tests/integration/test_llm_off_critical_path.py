"""The LLM is an observer, never a bottleneck: windows close on time whatever the LLM does.

Own stack (the LLM simulator is made slow or broken here, and a worker is killed), with a
ground truth produced by the official confluent-kafka AvroSerializer: every review and
order of the run, by restaurant and 5 s tumbling window.

- LLM at 8 s per call (timeout 12 s): every tumbling window is final within a few seconds
  of end + grace with exact review and order counts, most reviews labelled provisionally;
  every review still reaches ``reviews.enriched``; once the LLM is fast again, new windows
  carry the LLM's labels (``provisional_labels`` 0).
- LLM down (every call HTTP 500): windows close on time with heuristic labels, every review
  is enriched as FALLBACK and dead-lettered ``llm_exhausted``, nothing is lost.
- kill -9 while LLM calls are in flight: after the restart nothing is lost and no window is
  double counted.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from streams.dev.stack import Process, Stack
from tests.integration.conftest import SMALL_WINDOWS, NewStack, Producer, producer_for
from tests.integration.ground_truth import Run, configure_llm, own_stack
from tests.until import until

pytestmark = [pytest.mark.integration]

ENV = {
    **SMALL_WINDOWS,
    "REVIEWPULSE_LLM_TIMEOUT_S": "12",
    "REVIEWPULSE_LLM_MAX_RETRIES": "1",
    "REVIEWPULSE_LLM_BACKOFF_BASE_S": "0.05",
    "REVIEWPULSE_LLM_RETRY_DELAY_S": "0.5",
    "REVIEWPULSE_BREAKER_RESET_TIMEOUT_S": "2",
}


@pytest.fixture(scope="module")
def slow_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "llm-off-critical-path", llm_latency_ms=8000)


@pytest.fixture(scope="module")
def slow_worker(slow_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Process:
    return slow_stack.add_worker(data_dir=tmp_path_factory.mktemp("slow-worker"), extra_env=ENV)


@pytest.fixture(scope="module")
def service(slow_stack: Stack) -> Iterator[Producer]:
    yield from producer_for(slow_stack)


@pytest.fixture
def make_run(slow_stack: Stack, service: Producer) -> Iterator[Any]:
    """``make_run(tag)``: a Run of 8 restaurants on the module's producer, closed after the test."""
    runs: list[Run] = []

    def make(tag: str) -> Run:
        runs.append(Run(slow_stack, tag, restaurants=8, service=service))
        return runs[-1]

    yield make
    for run in runs:
        run.close()


def test_slow_llm_windows_close_on_time_with_exact_counts_and_every_review_is_enriched(
        slow_stack, slow_worker, make_run):
    run = make_run("slow")
    started = time.monotonic()
    run.produce(seconds=9, reviews_per_s=20, orders_every=3)
    until(run.windows_final, timeout_s=30, what="every window of the run final", done=lambda n: n == 0)
    finals = run.assert_exact_and_on_time()
    assert sum(a["provisional_labels"] for a in finals) > 0  # the LLM had not answered: nobody waited

    until(run.not_enriched, timeout_s=120, what="every review on reviews.enriched", done=lambda n: n == 0)
    enriched_s = time.monotonic() - started
    statuses = Counter(v[0]["status"] for v in run.enriched.values())
    repeats = sum(len(v) - 1 for v in run.enriched.values())
    print(f"{len(run.reviews)} reviews enriched in {enriched_s:.1f} s of run: {dict(statuses)}, "
          f"repeats {repeats}")
    assert statuses["ENRICHED"] == len(run.reviews)  # 8 s is slow, not failed: the LLM's labels
    assert repeats == 0

    configure_llm(slow_stack, latency_ms=5)
    fast = make_run("fast")
    fast.produce(seconds=4, reviews_per_s=20, orders_every=3)
    until(fast.windows_final, timeout_s=30, what="every window after the LLM recovered",
          done=lambda n: n == 0)
    finals = fast.assert_exact_and_on_time()
    assert sum(a["provisional_labels"] for a in finals) == 0
    assert sum(a["llm_calls"] + a["cache_hits"] for a in finals) == sum(a["reviews"] for a in finals)


def test_llm_down_windows_close_on_time_with_heuristic_labels_and_nothing_is_lost(
        slow_stack, slow_worker, make_run):
    configure_llm(slow_stack, latency_ms=5, error_500_rate=1.0)
    try:
        run = make_run("down")
        run.produce(seconds=8, reviews_per_s=20, orders_every=3)
        until(run.windows_final, timeout_s=30, what="every window of the run final", done=lambda n: n == 0)
        finals = run.assert_exact_and_on_time()
        assert sum(a["llm_calls"] for a in finals) == 0
        until(run.not_enriched, timeout_s=60, what="every review on reviews.enriched", done=lambda n: n == 0)
        until(lambda: len(run.read().dead), timeout_s=30, what="a dead letter per review",
              done=lambda n: n >= len(run.reviews))
    finally:
        configure_llm(slow_stack, error_500_rate=0.0)
    assert {v[0]["status"] for v in run.enriched.values()} == {"FALLBACK"}
    assert {d["reason"] for d in run.dead} == {"llm_exhausted"}
    assert {d["trace_id"] for d in run.dead} == {r["metadata"]["trace_id"] for r in run.reviews.values()}


@pytest.mark.chaos
def test_kill_9_with_llm_calls_in_flight_loses_nothing_and_counts_each_window_once(
        slow_stack, slow_worker, make_run, tmp_path):
    configure_llm(slow_stack, latency_ms=3000, error_500_rate=0.0)
    stack = slow_stack
    data_dir = tmp_path / "crash-worker"
    slow_worker.stop(kill=True)  # the module's worker goes: the new one owns every partition
    stack.workers.remove(slow_worker)
    first = stack.add_worker(data_dir=data_dir, extra_env=ENV, name="inflight-first")
    run = make_run("crash")
    run.produce(seconds=6, reviews_per_s=20, orders_every=3)
    # Mid-run: some windows closed, reviews still waiting for the 3 s LLM.
    until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows closed", done=lambda n: n > 0)
    killed_ms = int(time.time() * 1000)
    first.stop(kill=True)
    stack.workers.remove(first)
    stack.add_worker(data_dir=data_dir, extra_env=ENV, name="inflight-restarted")
    until(run.not_enriched, timeout_s=120, what="every review enriched after the restart",
          done=lambda n: n == 0)
    try:
        until(run.windows_final, timeout_s=60, what="every window final after the restart",
              done=lambda n: n == 0)
    except AssertionError as exc:
        missing = sorted(set(run.truth_reviews) - set(run.tumbling()))
        trail = run.trail(missing[0][0]) if missing else ""
        raise AssertionError(f"{exc}; missing {missing[:8]}; killed at {killed_ms}; {trail}") from None
    run.assert_exact(since_ms=killed_ms)
    tumbling = run.tumbling()
    repeats = sum(len(v) - 1 for v in run.enriched.values())
    print(f"\nkill -9 with LLM calls in flight: {len(run.reviews)} reviews, all enriched, "
          f"{len(tumbling)} windows exact, reviews.enriched repeats {repeats}")
