"""``reviewpulse reconcile`` against the real pipeline: a mixed stream, every record accounted for.

The records of this test live in a 10-second slice two days ago (``occurred_at``, and the
Kafka timestamp of the records that have no readable ``occurred_at``), a slice no other
test writes to, so the counts are exact although the session stack is shared. The case
where something *is* missing is built by hand in tests/unit/streams/test_streams_reconcile.py:
on a working pipeline nothing goes missing, which is what this test asserts.
"""

from __future__ import annotations

import json
import os
import random
import time
from typing import Any

import pytest
from click.testing import CliRunner
from test_pipeline_support import DLQ, open_outputs

from streams.cli import main

pytestmark = pytest.mark.integration

REVIEWS_CREATED = "reviews.created"
ORDERS_DELIVERED = "orders.delivered"
DAY_MS = 86_400_000


@pytest.fixture
def outputs(stack, worker):
    yield from open_outputs(stack)


@pytest.fixture
def env(stack) -> dict[str, str]:
    assert stack.broker and stack.registry
    return {"REVIEWPULSE_KAFKA_BOOTSTRAP_SERVERS": stack.broker.bootstrap,
            "REVIEWPULSE_SCHEMA_REGISTRY_URL": stack.registry.url}


def _send(producer, topic: str, value: bytes, *, key: bytes, timestamp_ms: int | None = None
          ) -> tuple[int, int]:
    landed: list[Any] = []
    extra = {"timestamp": timestamp_ms} if timestamp_ms is not None else {}
    producer.producer.produce(topic, key=key, value=value, **extra,
                              on_delivery=lambda err, msg: landed.append((err, msg)))
    producer.producer.flush(10)
    (err, msg), = landed
    assert err is None, err
    return msg.partition(), msg.offset()


def _order_bytes(producer, order: dict[str, Any]) -> bytes:
    from confluent_kafka.serialization import MessageField, SerializationContext

    return producer.order_serializer(order, SerializationContext(ORDERS_DELIVERED, MessageField.VALUE))


def test_reconcile_accounts_for_every_record_of_a_mixed_stream(
        env, worker, producer, outputs, review_factory, order_factory):
    start_ms = int(time.time() * 1000) - 2 * DAY_MS - random.randrange(DAY_MS // 2)
    end_ms = start_ms + 10_000

    good = [review_factory(occurred_at=start_ms + 100 * i, text=f"Pizza boa {i}, chegou quente")
            for i in range(20)]
    for r in good:
        _send(producer, REVIEWS_CREATED, producer.review_bytes(r), key=r["event_id"].encode())
    # The same event sent twice (at-least-once producer): a duplicate, not a second output.
    _send(producer, REVIEWS_CREATED, producer.review_bytes(good[0]), key=good[0]["event_id"].encode())
    bad = {
        "invalid_value": (review_factory(occurred_at=start_ms + 3_000, rating=9), None),
        "invalid_id": (review_factory(occurred_at=start_ms + 3_100, restaurant_id="r\u202eevil"), None),
        # occurred_at at the end of time: placed by its Kafka timestamp, in the slice
        "event_time_in_future": (review_factory(occurred_at=2**63 - 1), start_ms + 3_200),
    }
    dead_at: dict[tuple[int, int], str] = {}
    for reason, (r, ts) in bad.items():
        where = _send(producer, REVIEWS_CREATED, producer.review_bytes(r), key=r["event_id"].encode(),
                      timestamp_ms=ts)
        dead_at[(REVIEWS_CREATED, *where)] = reason
    poison = _send(producer, REVIEWS_CREATED, b"\x07" + os.urandom(20), key=b"reconcile-poison",
                   timestamp_ms=start_ms + 3_300)
    dead_at[(REVIEWS_CREATED, *poison)] = "unknown_magic_byte"

    orders = [order_factory(occurred_at=start_ms + 4_000 + i, promised_at=start_ms,
                            delivered_at=start_ms + 600_000) for i in range(2)]
    for o in orders:
        _send(producer, ORDERS_DELIVERED, _order_bytes(producer, o), key=o["order_id"].encode())
    late_order = order_factory(occurred_at=start_ms + 4_500, promised_at=start_ms,
                               delivered_at=start_ms + 40 * DAY_MS)
    where = _send(producer, ORDERS_DELIVERED, _order_bytes(producer, late_order),
                  key=late_order["order_id"].encode())
    dead_at[(ORDERS_DELIVERED, *where)] = "invalid_delivery_time"

    outputs.wait_enriched([r["event_id"] for r in good], timeout_s=60)
    letters = outputs.wait_for(DLQ, lambda v: (v["topic"], v["partition"], v["offset"]) in dead_at,
                               count=len(dead_at))
    assert {(x.value["topic"], x.value["partition"], x.value["offset"]): x.value["reason"]
            for x in letters} == dead_at

    result = CliRunner().invoke(main, ["reconcile", "--from", str(start_ms), "--to", str(end_ms),
                                       "--json"], env=env, catch_exceptions=False)
    print(f"$ reviewpulse reconcile --from {start_ms} --to {end_ms} --json\n{result.output}")
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    reviews, orders_report = doc["topics"][REVIEWS_CREATED], doc["topics"][ORDERS_DELIVERED]
    assert {k: reviews[k] for k in ("consumed", "enriched", "dead_lettered", "duplicates",
                                    "in_retry", "missing")} == {
        "consumed": 25, "enriched": 20, "dead_lettered": 4, "duplicates": 1, "in_retry": 0,
        "missing": []}
    assert reviews["dead_letter_reasons"] == {"invalid_value": 1, "invalid_id": 1,
                                              "event_time_in_future": 1, "unknown_magic_byte": 1}
    assert {k: orders_report[k] for k in ("consumed", "folded", "dead_lettered", "missing")} == {
        "consumed": 3, "folded": 2, "dead_lettered": 1, "missing": []}

    # The same range by Kafka timestamp holds only the two records stamped into it.
    text = CliRunner().invoke(main, ["reconcile", "--from", str(start_ms), "--to", str(end_ms),
                                     "--by", "produced"], env=env, catch_exceptions=False)
    print(text.output)
    assert text.exit_code == 0
    assert "reviews.created    consumed 2  enriched 0  dead-lettered 2" in text.output
