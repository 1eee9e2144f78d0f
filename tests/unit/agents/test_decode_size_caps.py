"""Decode and records too large for Kafka (issue 30, finding 4): dead letters, never a stall.

A schema-valid review of 900 KB is dead-lettered ``record_too_large`` before it is decoded,
and the reviews after it on the partition are forwarded in the same batch. A forward Kafka
refuses for its size (the producer at once, or the broker in the delivery future) is that
record's dead letter ``output_too_large``; the batch is acked, not sent again forever.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aiokafka.errors import MessageSizeTooLargeError

from agents import decode
from schema_registry.codec import encode_record
from streams.delivery import is_too_large, translate
from streams.errors import OutputTooLarge
from streams.protocol import REVIEW, read_item
from tests.unit.agents import test_decode_registry_waits as waits
from tests.unit.agents.test_decode_registry_waits import WRITER_V2, Sent, events_of, review

# The decode stage on real codecs and recording senders: the fixtures of the registry tests
# (the registry itself is tests/unit/conftest.py's).
gateway, writer_v2_id, stage = waits.gateway, waits.writer_v2_id, waits.stage


def big_review(n: int, *, tag: str, size: int) -> dict[str, Any]:
    record = review(n, tag=tag)
    record["metadata"]["source"] = "s" * (size // 2)
    record["entity"]["language"] = "l" * (size // 2)
    return record


async def test_a_900_kb_review_is_dead_lettered_and_the_ones_after_it_flow(
        stage: Sent, writer_v2_id: int) -> None:
    reviews = [review(n, tag="big") for n in range(3)]
    reviews.insert(1, big_review(9, tag="big", size=900 * 1024))
    values = [encode_record(r, schema_id=writer_v2_id, schema=WRITER_V2) for r in reviews]

    await decode.send_batch(events_of(values, tag="big"), kind=REVIEW)

    assert [(d["offset"], d["reason"]) for d in stage.dead] == [(1, "record_too_large")]
    assert [read_item(v).event_id for v in stage.items] == [reviews[i]["event_id"] for i in (0, 2, 3)]


async def test_a_long_source_under_the_record_cap_is_field_too_long(stage: Sent, writer_v2_id: int) -> None:
    value = encode_record(big_review(0, tag="fl", size=2_000), schema_id=writer_v2_id, schema=WRITER_V2)

    await decode.send_batch(events_of([value], tag="fl"), kind=REVIEW)

    assert [d["reason"] for d in stage.dead] == ["field_too_long"] and stage.items == []


async def test_a_forward_the_producer_refuses_for_its_size_is_dead_lettered_at_once(
        stage: Sent, writer_v2_id: int, monkeypatch) -> None:
    values = [encode_record(review(n, tag="pr"), schema_id=writer_v2_id, schema=WRITER_V2) for n in range(3)]
    sent = stage.send

    async def refusing(topic: str, *, key: bytes, value: bytes, **kw: Any) -> Any:
        if read_item(value).event_id == "evt-pr-1":
            raise translate(MessageSizeTooLargeError("larger than the maximum request size"))
        return await sent(topic, key=key, value=value, **kw)

    monkeypatch.setattr(decode.runtime, "send", refusing, raising=False)

    await decode.send_batch(events_of(values, tag="pr"), kind=REVIEW)

    assert [(d["offset"], d["reason"]) for d in stage.dead] == [(1, "output_too_large")]
    assert len(stage.items) == 2


class Stream:
    def __init__(self) -> None:
        self.acked: list[Any] = []

    async def ack(self, event: Any) -> None:
        self.acked.append(event)


async def test_a_forward_the_broker_refuses_for_its_size_is_dead_lettered_and_the_batch_acked(
        stage: Sent, writer_v2_id: int, monkeypatch) -> None:
    values = [encode_record(review(n, tag="br"), schema_id=writer_v2_id, schema=WRITER_V2) for n in range(3)]
    sent = stage.send

    async def broker_refusing(topic: str, *, key: bytes, value: bytes, **kw: Any) -> Any:
        delivery = await sent(topic, key=key, value=value, **kw)
        if read_item(value).event_id == "evt-br-1":
            refused = asyncio.get_running_loop().create_future()
            refused.set_exception(MessageSizeTooLargeError("MESSAGE_SIZE_TOO_LARGE"))
            return refused
        return delivery

    monkeypatch.setattr(decode.runtime, "send", broker_refusing, raising=False)
    events, stream = events_of(values, tag="br"), Stream()

    outputs = await decode.send_batch(events, kind=REVIEW)
    await asyncio.wait_for(decode._settle(stream, events, outputs, kind=REVIEW), 5)

    assert [(d["offset"], d["reason"]) for d in stage.dead] == [(1, "output_too_large")]
    assert stream.acked == events
    assert len(stage.items) == 3, "sent once: never retried"


def test_only_size_errors_are_translated() -> None:
    from aiokafka.errors import KafkaTimeoutError, RecordListTooLargeError

    for error in (MessageSizeTooLargeError("m"), RecordListTooLargeError("r")):
        ours = translate(error)
        assert isinstance(ours, OutputTooLarge) and not ours.retriable and ours.__cause__ is error
        assert is_too_large(error) and is_too_large(ours)
    timeout = KafkaTimeoutError()
    assert translate(timeout) is timeout and not is_too_large(timeout)
