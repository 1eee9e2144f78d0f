"""Liveness on a real broker (issue 30, finding 8): /health fails on a real wedge, never on an idle worker.

Three workers in turn, one group, one stack: an idle worker whose by-restaurant partitions
receive ticks all the time (records always arriving after the commit, which moves every few
seconds) stays healthy well past the threshold; an agent that raises fails /health at once
though Faust restarts it and the app never crashes; and an LLM that answers far slower than
a long timeout holds an owed review, whose offset pins its partition's commit while ticks
wait behind it, until /health fails with the partition, the metric shows the stall, and
the chart's alert fires on a real Prometheus.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.dev.stack import Process, Stack
from streams.topics import by_restaurant_topic_name
from tests.integration.conftest import SMALL_WINDOWS, NewStack, Producer, producer_for
from tests.integration.ground_truth import own_stack
from tests.integration.prometheus import chart_rule_groups, start_prometheus
from tests.integration.test_metrics_endpoint import family, scrape
from tests.integration.test_pipeline_support import simulator_config
from tests.until import until

pytestmark = pytest.mark.integration

FAULTS = Path(__file__).resolve().parent / "faults"
STUCK_S = 10  # the smallest the settings allow: Faust commits every 2.8 s, ticks every 0.5 s
BY_RESTAURANT = by_restaurant_topic_name("reviewpulse")
FIRING = 'ALERTS{alertstate="firing"}'
ENV = {
    "REVIEWPULSE_COMMIT_STUCK_S": str(STUCK_S),
    **SMALL_WINDOWS,
    # A long timeout and no retries: the slow answer below is one call the worker waits for.
    "REVIEWPULSE_LLM_TIMEOUT_S": "600",
    "REVIEWPULSE_LLM_MAX_RETRIES": "0",
}


@pytest.fixture(scope="module")
def health_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "health")


@pytest.fixture(scope="module")
def inputs(health_stack: Stack) -> Iterator[Producer]:
    yield from producer_for(health_stack)


@pytest.fixture
def start_worker(health_stack: Stack, tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start this test's worker (the group's only one); it is stopped when the test ends."""
    started: list[Process] = []

    def start(name: str, **env: str) -> Process:
        worker = health_stack.add_worker(data_dir=tmp_path / name, name=name, extra_env={**ENV, **env})
        started.append(worker)
        worker.wait_ready(timeout_s=90)
        return worker

    yield start
    for worker in started:
        worker.stop()
        health_stack.workers.remove(worker)


def health(worker: Process) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{worker.url}/health", timeout=5)
    return response.status_code, response.json()


def enriched(worker: Process) -> dict[str, float]:
    """The worker's outcomes of input reviews (what a failed wait prints)."""
    _, samples = scrape(worker)
    return {k: v for k, v in family(samples, "reviewpulse_input_outcomes_total").items()
            if 'topic="reviews.created"' in k and v}


def test_a_flowing_idle_worker_stays_healthy_well_past_the_threshold(start_worker, inputs, review_factory):
    worker = start_worker("idle")
    inputs.send_review(review_factory())
    until(lambda: enriched(worker), timeout_s=30, what="the review enriched",
          done=lambda outcomes: any('outcome="enriched"' in k for k in outcomes))
    # Watched for two thresholds: every by-restaurant partition gets a tick every 0.5 s, so
    # records always wait after its commit, and the commit moves every few seconds.
    watched_until = time.monotonic() + 2 * STUCK_S
    answers, stalls = 0, []
    while time.monotonic() < watched_until:
        status, body = health(worker)
        assert status == 200, body
        _, samples = scrape(worker)
        assert samples["reviewpulse_worker_healthy"] == 1
        stalls += family(samples, "reviewpulse_commit_stalled_seconds").values()
        answers += 1
        time.sleep(0.5)  # the probe's period, not a wait for a condition
    print(f"\n{answers} answers of /health over {2 * STUCK_S} s, all 200; "
          f"longest commit stall {max(stalls)} s")
    assert stalls and max(stalls) < STUCK_S


def test_an_agent_that_raises_fails_health_though_faust_restarts_it(start_worker, inputs, review_factory):
    worker = start_worker("crashing-agent", PYTHONPATH=str(FAULTS),
                          FAULT_CRASH_AGENT_READING="reviews.created")
    assert health(worker)[0] == 200
    inputs.send_review(review_factory())
    _, body = until(lambda: health(worker), timeout_s=30, what="/health failing on the agent's error",
                    done=lambda answer: answer[0] == 503)
    died = [p for p in body["problems"] if p["check"] == "died"]
    error = "RuntimeError('injected by the test: an agent reading reviews.created raised')"
    assert died == [{"check": "died", "what": "agent decode-reviews", "error": error}]
    assert not any(p["check"] == "crashed" for p in body["problems"]), body  # Faust's app did not crash
    assert worker.proc.poll() is None
    assert scrape(worker)[1]["reviewpulse_worker_healthy"] == 0


def test_a_commit_held_by_an_answer_that_never_comes_fails_health_and_the_alert_fires(
        start_worker, inputs, review_factory, health_stack, tmp_path):
    worker = start_worker("stuck")
    prometheus = start_prometheus(
        target=f"127.0.0.1:{worker.port}", work_dir=tmp_path / "prometheus",
        rule_groups=chart_rule_groups({"thresholds": {"commitStalledSeconds": STUCK_S},
                                       "for": {"commitStuck": "1s", "workerUnhealthy": "1s"}}))
    try:
        with simulator_config(health_stack, latency_ms=300_000):  # the worker waits 5 min, owing the review
            assert health(worker)[0] == 200
            sent = time.monotonic()
            inputs.send_review(review_factory())
            _, body = until(lambda: health(worker), timeout_s=STUCK_S + 30, interval_s=0.5,
                            what="/health failing on the stuck commit", done=lambda answer: answer[0] == 503)
            failed_after_s = time.monotonic() - sent
            stuck = [p for p in body["problems"] if p["check"] == "commit_stuck"]
            assert {p["topic"] for p in stuck} == {BY_RESTAURANT}, body
            assert stuck[0]["stalled_s"] >= STUCK_S and stuck[0]["limit_s"] == STUCK_S
            _, samples = scrape(worker)
            assert samples["reviewpulse_worker_healthy"] == 0
            stalled = samples[f'reviewpulse_commit_stalled_seconds{{partition="{stuck[0]["partition"]}",'
                              f'topic="{BY_RESTAURANT}"}}']  # prometheus-client sorts labels by name
            assert stalled >= STUCK_S
            expected = {"ReviewPulseCommitStuck", "ReviewPulseWorkerUnhealthy"}
            alerts = until(lambda: {a["metric"]["alertname"] for a in prometheus.query(FIRING)},
                           timeout_s=30, interval_s=0.5, what="the chart's alerts firing",
                           done=lambda names: expected <= names)
            print(f"\n/health 503 {failed_after_s:.1f} s after the review was sent (threshold {STUCK_S} s): "
                  f"{stuck[0]}; firing: {sorted(alerts)}")
    finally:
        prometheus.stop()
