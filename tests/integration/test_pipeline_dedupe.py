"""At-least-once input, exactly one enrichment: the restaurant stage dedupes by event_id."""

from __future__ import annotations

import pytest
from test_pipeline_support import open_outputs

pytestmark = pytest.mark.integration


@pytest.fixture
def outputs(stack, worker):
    yield from open_outputs(stack)


def test_same_review_sent_three_times_is_enriched_once(worker, producer, outputs, review_factory):
    review = review_factory(text="Chegou rápido, mas a batata estava murcha.")
    later = review_factory(restaurant_id=review["entity"]["restaurant_id"], text="Tudo certo.")
    for _ in range(3):
        producer.send_review(review)
    # Same key, so the same input partition: once `later` is out, the copies were read.
    producer.send_review(later, key=review["event_id"].encode())

    outputs.wait_enriched([review["event_id"], later["event_id"]])

    copies = outputs.enriched([review["event_id"]])
    assert len(copies) == 1, [r.value["status"] for r in copies]
    assert copies[0].value["status"] == "ENRICHED"
