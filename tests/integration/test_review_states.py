"""One review's enrichment state over HTTP (issue 33, part 1), as a review UI polls it.

A stack of its own (these tests slow the LLM down, make it fail, and kill the worker): a
review under an LLM at 8 s per call reads PENDING or PROCESSING with its provisional label
before it reads ENRICHED; a retried review reads PROCESSING with attempt 2; a review whose
LLM keeps failing ends FALLBACK with its dead letter in its timeline; and every state is
still there, unchanged, on a worker restored from the changelogs after a kill -9.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from test_pipeline_support import simulator_config

from streams.cli import main
from streams.dev.stack import Process, Stack
from tests.integration.conftest import SMALL_WINDOWS, NewStack, Producer
from tests.integration.ground_truth import own_stack
from tests.records import review_created
from tests.until import until

pytestmark = pytest.mark.integration

RANK = {"PENDING": 0, "PROCESSING": 1}  # every other state is final: 2
ENV = {**SMALL_WINDOWS, "REVIEWPULSE_LLM_TIMEOUT_S": "12", "REVIEWPULSE_LLM_BACKOFF_BASE_S": "0.05",
       "REVIEWPULSE_LLM_RETRY_DELAY_S": "2", "REVIEWPULSE_LLM_MAX_ATTEMPTS": "2",
       "REVIEWPULSE_LOG_LEVEL": "info"}
CALL_ATTEMPTS = 3  # REVIEWPULSE_LLM_MAX_RETRIES (2) + 1: this many 500s fail one call


@pytest.fixture(scope="module")
def states_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "states")


@pytest.fixture(scope="module")
def first_worker(states_stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    worker = states_stack.add_worker(data_dir=tmp_path_factory.mktemp("states-a"), extra_env=ENV,
                                     name="states-a")
    worker.wait_ready(timeout_s=90)
    yield worker
    worker.stop()


@pytest.fixture(scope="module")
def seen() -> dict[str, dict[str, Any]]:
    """Final answers of the module's reviews, by review id: the restart test asks again."""
    return {}


def state(worker: Process, review: dict[str, Any]) -> httpx.Response:
    restaurant, review_id = review["entity"]["restaurant_id"], review["entity"]["review_id"]
    return httpx.get(f"{worker.url}/api/restaurants/{restaurant}/reviews/{review_id}", timeout=10)


def follow(worker: Process, review: dict[str, Any], *, timeout_s: float) -> list[dict[str, Any]]:
    """Poll the review's state as a UI would (every 0.2 s) until it is final; every answer."""
    answers: list[dict[str, Any]] = []

    def final() -> bool:
        response = state(worker, review)
        if response.status_code == 404:
            return False
        assert response.status_code == 200, response.text
        answers.append(response.json())
        return bool(answers[-1]["final"])

    until(final, timeout_s=timeout_s, what=f"a final state of {review['entity']['review_id']}",
          interval_s=0.2)
    ranks = [RANK.get(a["state"], 2) for a in answers]
    assert ranks == sorted(ranks), [a["state"] for a in answers]  # never backwards
    return answers


def sequence(answers: list[dict[str, Any]]) -> list[str]:
    out: list[str] = []
    for a in answers:
        kind = ", provisional" if a["provisional"] else ""
        step = f"{a['state']}(attempt {a['attempt']}, {a['label']}{kind})"
        if not out or out[-1] != step:
            out.append(step)
    return out


def send(stack: Stack, review: dict[str, Any]) -> None:
    producer = Producer(stack)
    try:
        producer.send_review(review)
    finally:
        producer.close()


def test_a_review_under_a_slow_llm_reads_pending_or_processing_with_its_provisional_label_first(
        states_stack: Stack, first_worker: Process, seen: dict[str, dict[str, Any]]) -> None:
    tag = uuid.uuid4().hex[:6]
    review = review_created(tag, restaurant_id=f"slow-{tag}", rating=1, text="Cold food, late and rude")
    unknown = state(first_worker, review)
    assert unknown.status_code == 404 and review["entity"]["review_id"] in unknown.json()["error"]
    with simulator_config(states_stack, latency_ms=8_000):
        send(states_stack, review)
        answers = follow(first_worker, review, timeout_s=40)
    print(f"\nstates of {review['entity']['review_id']} under an LLM at 8 s a call (polled every 0.2 s): "
          + " -> ".join(sequence(answers)))
    waiting = [a for a in answers if a["state"] in ("PENDING", "PROCESSING")]
    assert waiting, sequence(answers)
    assert all(a["provisional"] and a["label"] for a in waiting)
    final = answers[-1]
    assert (final["state"], final["provisional"], final["attempt"]) == ("ENRICHED", False, 1)
    assert final["model"] and final["prompt_version"] and final["label"]
    assert final["entered_at_ms"] - waiting[0]["history"][0]["entered_at_ms"] >= 7_000  # the LLM's 8 s
    assert (final["event_id"], final["trace_id"]) == (review["event_id"], review["metadata"]["trace_id"])
    seen[review["entity"]["review_id"]] = final


def test_a_retried_review_reads_processing_with_attempt_2(
        states_stack: Stack, first_worker: Process, seen: dict[str, dict[str, Any]]) -> None:
    tag = uuid.uuid4().hex[:6]
    review = review_created(tag, restaurant_id=f"retry-{tag}")
    with simulator_config(states_stack, script=["500"] * CALL_ATTEMPTS):
        send(states_stack, review)
        answers = follow(first_worker, review, timeout_s=40)
    print(f"\nstates of a retried review: {' -> '.join(sequence(answers))}")
    retrying = [a for a in answers if a["state"] == "PROCESSING" and a["attempt"] == 2]
    assert retrying, sequence(answers)
    assert "500" in (retrying[0]["reason"] or "")
    assert (answers[-1]["state"], answers[-1]["attempt"]) == ("ENRICHED", 2)
    seen[review["entity"]["review_id"]] = answers[-1]


def test_a_review_whose_llm_keeps_failing_ends_fallback_with_its_dead_letter_in_its_timeline(
        states_stack: Stack, first_worker: Process, seen: dict[str, dict[str, Any]]) -> None:
    tag = uuid.uuid4().hex[:6]
    review = review_created(tag, restaurant_id=f"failing-{tag}")
    with simulator_config(states_stack, script=["500"] * CALL_ATTEMPTS * 2):  # both attempts
        send(states_stack, review)
        answers = follow(first_worker, review, timeout_s=60)
    final = answers[-1]
    assert (final["state"], final["attempt"], final["final"]) == ("FALLBACK", 2, True)
    assert [step["state"] for step in final["history"]] == ["PENDING", "PROCESSING", "FALLBACK"]
    seen[review["entity"]["review_id"]] = final

    env = {"REVIEWPULSE_KAFKA_BOOTSTRAP_SERVERS": states_stack.broker.bootstrap,  # type: ignore[union-attr]
           "REVIEWPULSE_SCHEMA_REGISTRY_URL": states_stack.registry.url}  # type: ignore[union-attr]
    since = str(int(time.time() * 1000) - 600_000)
    args = ["trace", "--review-id", review["entity"]["review_id"], "--from", since]
    result = CliRunner().invoke(main, args, env=env)
    assert result.exit_code == 0, result.output
    dead = [line for line in result.output.splitlines() if "dead letter at" in line]
    assert dead and "llm_exhausted" in dead[0], result.output


def test_every_state_survives_a_kill_9_and_a_restore_from_the_changelog(
        states_stack: Stack, first_worker: Process, seen: dict[str, dict[str, Any]],
        tmp_path: Path) -> None:
    assert len(seen) == 3, "runs after the module's other tests"
    first_worker.stop(kill=True)
    second = states_stack.add_worker(data_dir=tmp_path / "empty", extra_env=ENV, name="states-b")
    try:
        second.wait_ready(timeout_s=90)
        for review_id, before in seen.items():
            restaurant = before["restaurant_id"]
            response = httpx.get(f"{second.url}/api/restaurants/{restaurant}/reviews/{review_id}", timeout=10)
            assert response.status_code == 200, response.text
            after = response.json()
            assert {k: v for k, v in after.items() if k != "worker"} == {
                k: v for k, v in before.items() if k != "worker"}
    finally:
        second.stop()
