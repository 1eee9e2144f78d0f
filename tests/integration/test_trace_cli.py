"""``reviewpulse trace`` against the real pipeline (issue 33.2): one review's records on every
topic, found by any of its ids, as an operator runs the command.

A review whose first enrichment call fails (the simulator answers HTTP 500 until the call's
retries are spent) goes through ``reviews.retry`` and comes back; another fails validation
and is dead-lettered at decode. The commands run with the worker's broker and registry.

The same timeline over HTTP (issue 33.1): ``/api/restaurants/{id}/reviews/{id}/timeline`` on
the worker, 404 for a review it has no record of, 400 for a range wider than its limit.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner
from test_pipeline_support import DLQ, ENRICHED, RETRY, Outputs, simulator_config

from streams.cli import main
from tests.integration.conftest import Producer
from tests.records import review_created

pytestmark = pytest.mark.integration

AGGREGATES = "restaurants.aggregates"
CALL_ATTEMPTS = 3  # REVIEWPULSE_LLM_MAX_RETRIES (2) + 1: every one answered 500 fails the call


@pytest.fixture
def outputs(stack, worker) -> Iterator[Outputs]:
    out = Outputs(stack, topics=(ENRICHED, DLQ, RETRY, AGGREGATES))
    yield out
    out.close()


def run_trace(stack, *args: str) -> tuple[int, str]:
    env = {"REVIEWPULSE_KAFKA_BOOTSTRAP_SERVERS": stack.broker.bootstrap,
           "REVIEWPULSE_SCHEMA_REGISTRY_URL": stack.registry.url}
    since = str(int(time.time() * 1000) - 600_000)
    result = CliRunner().invoke(main, ["trace", *args, "--from", since], env=env)
    return result.exit_code, result.output


def test_trace_follows_a_retried_review_to_its_window_by_any_id(stack, worker, outputs) -> None:
    tag = uuid.uuid4().hex[:6]
    review = review_created(tag, 1, restaurant_id=f"rest-{tag}")
    producer = Producer(stack)
    try:
        with simulator_config(stack, script=["500"] * CALL_ATTEMPTS):
            producer.send_review(review)
            outputs.wait_for(RETRY, lambda v: v["event_id"] == review["event_id"], timeout_s=30)
        [enriched] = outputs.wait_enriched([review["event_id"]], timeout_s=30)
        outputs.wait_for(AGGREGATES, lambda v: v["restaurant_id"] == review["entity"]["restaurant_id"]
                         and v["window_kind"] == "TUMBLING", timeout_s=30)
    finally:
        producer.close()
    assert enriched.value["attempts"] == 2

    code, text = run_trace(stack, "--event-id", review["event_id"])
    print(f"\nreviewpulse trace --event-id {review['event_id']}:\n{text}")
    assert code == 0, text
    lines = text.splitlines()
    assert lines[0].startswith(f"review {review['entity']['review_id']} event {review['event_id']} "
                               f"trace {review['metadata']['trace_id']} restaurant rest-{tag}")
    order = [what for what in ("created", "decoded, to its restaurant's partition", "retry: attempt 2 after",
                               "retry back: attempt 2", "enriched ENRICHED", "with its final label")
             if any(what in line for line in lines)]
    assert len(order) == 6, text
    first_of = {what: next(i for i, line in enumerate(lines) if what in line) for what in order}
    assert sorted(first_of.values()) == list(first_of.values()), text  # in time order
    assert "reviews.retry[" in text and "500" in next(line for line in lines if "retry: attempt 2" in line)

    # The same timeline by the review's other ids, and as JSON.
    for flag, value in (("--review-id", review["entity"]["review_id"]),
                        ("--trace-id", review["metadata"]["trace_id"])):
        assert run_trace(stack, flag, value) == (0, text)
    code, doc = run_trace(stack, "--trace-id", review["metadata"]["trace_id"], "--json")
    steps = json.loads(doc)["steps"]
    assert [s["topic"] for s in steps][:2] == ["reviews.created", "reviewpulse-by-restaurant"]
    assert all(s["gap_ms"] >= 0 for s in steps[1:])


def test_trace_shows_a_dead_letter_with_its_reason_and_an_unknown_id_exits_1(stack, worker, outputs) -> None:
    tag = uuid.uuid4().hex[:6]
    review = review_created(tag, 1, restaurant_id=f"rest-{tag}", rating=9)  # out of 1-5: invalid
    producer = Producer(stack)
    try:
        producer.send_review(review)
    finally:
        producer.close()
    outputs.wait_for(DLQ, lambda v: v["trace_id"] == review["metadata"]["trace_id"], timeout_s=30)
    code, text = run_trace(stack, "--trace-id", review["metadata"]["trace_id"])
    print(f"\nreviewpulse trace --trace-id {review['metadata']['trace_id']}:\n{text}")
    assert code == 0, text
    assert "created" in text and "dead letter at decode: " in text
    assert ENRICHED not in text

    code, text = run_trace(stack, "--event-id", f"evt-{tag}-nobody")
    assert code == 1 and "no record of that review" in text
    code, text = run_trace(stack)
    assert code == 2 and "--event-id" in text


def test_the_web_api_gives_a_reviews_timeline_in_time_order_and_404_or_400_otherwise(
        stack, worker, outputs) -> None:
    tag = uuid.uuid4().hex[:6]
    restaurant = f"rest-{tag}"
    review = review_created(tag, 1, restaurant_id=restaurant)
    review_id = review["entity"]["review_id"]
    producer = Producer(stack)
    try:
        producer.send_review(review)
    finally:
        producer.close()
    [enriched] = outputs.wait_enriched([review["event_id"]], timeout_s=30)
    api = f"{worker.url}/api/restaurants/{restaurant}/reviews/{review_id}/timeline"

    answer = httpx.get(api, timeout=60)  # the default range: the CLI's last 24 h
    assert answer.status_code == 200, answer.text
    body = answer.json()
    print(f"\nGET {api}: {len(body['steps'])} steps read in {body['read_ms']} ms")
    assert (body["review_id"], body["event_id"], body["trace_id"], body["restaurant_id"]) == (
        review_id, review["event_id"], review["metadata"]["trace_id"], restaurant)
    topics = [s["topic"] for s in body["steps"]]
    assert topics.index("reviews.created") < topics.index("reviews.enriched"), topics
    times = [s["time_ms"] for s in body["steps"]]
    assert times == sorted(times) and all(s["gap_ms"] >= 0 for s in body["steps"][1:])
    created = body["steps"][topics.index("reviews.created")]
    assert created["partition"] >= 0 and created["offset"] >= 0 and created["time"].startswith("20")
    assert body["steps"][topics.index("reviews.enriched")]["details"]["status"] == enriched.value["status"]
    assert body["to_ms"] - body["from_ms"] == 86_400_000

    # An explicit range around the review gives the same steps (and any window that closed
    # since: its aggregate is sent after every step read before).
    now = int(time.time() * 1000)
    ranged = httpx.get(api, params={"from": now - 600_000, "to": now + 1}, timeout=60)
    assert ranged.status_code == 200 and ranged.json()["steps"][:len(body["steps"])] == body["steps"]

    # Not found, saying so as JSON: an unknown review, the review under another restaurant.
    for url in (f"{worker.url}/api/restaurants/{restaurant}/reviews/rv-{tag}-nobody/timeline",
                f"{worker.url}/api/restaurants/rest-{tag}-other/reviews/{review_id}/timeline"):
        missing = httpx.get(url, timeout=60)
        assert missing.status_code == 404 and "no record of review" in missing.json()["error"], url

    # Refused before any read: too wide for REVIEWPULSE_HISTORY_MAX_RANGE_S (8 days), or bad.
    wide = httpx.get(api, params={"from": now - 9 * 86_400_000, "to": now}, timeout=10)
    assert wide.status_code == 400 and "REVIEWPULSE_HISTORY_MAX_RANGE_S" in wide.json()["error"]
    for bad in ({"from": "yesterday"}, {"from": now, "to": now - 1}):
        assert httpx.get(api, params=bad, timeout=10).status_code == 400, bad
