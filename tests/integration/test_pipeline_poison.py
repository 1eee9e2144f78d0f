"""Poison input is dead-lettered with its reason and bytes; the partition keeps flowing."""

from __future__ import annotations

import os
import struct

import pytest
from test_pipeline_support import DLQ, open_outputs, produce

pytestmark = pytest.mark.integration

REVIEWS_CREATED = "reviews.created"


@pytest.fixture
def outputs(stack, worker):
    yield from open_outputs(stack)


def _poison(kind: str, producer, review_factory) -> bytes:
    if kind == "unknown_magic_byte":
        return b"\x07" + os.urandom(30)  # random bytes, but never a valid frame by luck
    if kind == "truncated_payload":
        return b"\x00\x00\x01"
    if kind == "unknown_schema_id":
        return struct.pack(">bI", 0, 987_654_321) + b"\x02ab"
    if kind == "invalid_value":
        return producer.review_bytes(review_factory(rating=9))
    if kind == "text_too_long":  # the session worker keeps the default cap of 5,000 chars
        return producer.review_bytes(review_factory(text="a" * 5_001))
    raise AssertionError(kind)


@pytest.mark.parametrize("reason", ["unknown_magic_byte", "truncated_payload", "unknown_schema_id",
                                    "invalid_value", "text_too_long"])
def test_poison_record_goes_to_dlq_with_reason_and_partition_keeps_flowing(
        reason, worker, producer, outputs, review_factory):
    key = f"poison-{reason}-{os.urandom(4).hex()}".encode()
    value = _poison(reason, producer, review_factory)
    partition, offset = produce(producer, REVIEWS_CREATED, value, key=key)
    after = review_factory()
    after_at = produce(producer, REVIEWS_CREATED, producer.review_bytes(after), key=key)
    assert after_at == (partition, offset + 1)  # same key: right behind the poison

    [letter] = outputs.wait_for(DLQ, lambda v: (v["partition"], v["offset"]) == (partition, offset)
                                and v["topic"] == REVIEWS_CREATED)
    outputs.wait_enriched([after["event_id"]])

    dead = letter.value
    assert dead["reason"] == reason
    assert dead["stage"] == "decode"
    assert dead["value"] == value and dead["key"] == key
    assert dead["dead_letter_id"] == f"{REVIEWS_CREATED}:{partition}:{offset}:decode"
    assert dead["attempts"] == 1 and dead["error_class"] and dead["error_message"]
    assert dead["first_failure_at"] <= dead["last_failure_at"]
    assert letter.key == key


def test_dead_letter_of_a_decodable_invalid_review_carries_its_trace_id(
        worker, producer, outputs, review_factory):
    review = review_factory(rating=9)
    partition, offset = produce(producer, REVIEWS_CREATED, producer.review_bytes(review),
                                key=review["event_id"].encode())
    [letter] = outputs.wait_for(DLQ, lambda v: (v["partition"], v["offset"]) == (partition, offset)
                                and v["topic"] == REVIEWS_CREATED)
    assert letter.value["trace_id"] == review["metadata"]["trace_id"]
