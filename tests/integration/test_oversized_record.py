"""A record too large to forward is dead-lettered with its reason; its partition flows on.

Issue 30, finding 4: a 450 KB schema-valid review stalled its partition for good (its
by-restaurant copy, ~2.3 times its size, was over the producer's request limit, and the
batch was retried forever). Now decode refuses a record over
``REVIEWPULSE_MAX_INPUT_RECORD_BYTES`` (128 KiB by default) before decoding it.
"""

from __future__ import annotations

import os

import pytest
from test_pipeline_support import DLQ, open_outputs, produce

pytestmark = pytest.mark.integration

REVIEWS_CREATED = "reviews.created"
BIG_BYTES = 900 * 1024  # under the session producer's 1,000,000-byte message limit


@pytest.fixture
def outputs(stack, worker):
    yield from open_outputs(stack)


def test_a_900_kb_review_is_dead_lettered_with_its_reason_and_the_reviews_after_it_flow(
        worker, producer, outputs, review_factory):
    restaurant = f"rest-oversized-{os.urandom(4).hex()}"
    key = restaurant.encode()  # one input partition, one restaurant, for all of them
    before = [review_factory(restaurant_id=restaurant) for _ in range(5)]
    big = review_factory(restaurant_id=restaurant, language="l" * (BIG_BYTES // 2),
                         metadata={**review_factory()["metadata"], "source": "s" * (BIG_BYTES // 2)})
    after = [review_factory(restaurant_id=restaurant) for _ in range(20)]

    for review in before:
        produce(producer, REVIEWS_CREATED, producer.review_bytes(review), key=key)
    big_value = producer.review_bytes(big)
    assert BIG_BYTES < len(big_value) < 1_000_000
    partition, offset = produce(producer, REVIEWS_CREATED, big_value, key=key)
    for review in after:
        produce(producer, REVIEWS_CREATED, producer.review_bytes(review), key=key)

    [letter] = outputs.wait_for(DLQ, lambda v: (v["topic"], v["partition"], v["offset"])
                                == (REVIEWS_CREATED, partition, offset), timeout_s=15.0)
    outputs.wait_enriched([r["event_id"] for r in before + after], timeout_s=15.0)

    dead = letter.value
    assert (dead["stage"], dead["reason"]) == ("decode", "record_too_large")
    assert f"{len(key) + len(big_value)} bytes" in dead["error_message"]  # key, value, no headers
    assert dead["value"] == big_value and dead["key"] == key  # small enough to keep whole
    assert dead["trace_id"] is None  # refused before decoding
    assert not outputs.enriched([big["event_id"]])
