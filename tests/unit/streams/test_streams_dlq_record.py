"""dead_letter_record: the original bytes and coordinates, the reason, a schema-valid record."""

from __future__ import annotations

from types import SimpleNamespace

import fastavro
import pytest

import avro_schemas
from streams.dlq import MAX_ERROR_MESSAGE_CHARS, Origin, dead_letter_record


@pytest.fixture
def schema() -> dict:
    import json

    return fastavro.parse_schema(json.loads(avro_schemas.schema_text("DeadLetter")))


def _origin(**overrides: object) -> Origin:
    fields = {"topic": "reviews.created", "partition": 3, "offset": 42, "key": b"k",
              "value": b"\x07not avro", "headers": (("trace_id", b"trc-1"), ("empty", None))}
    fields.update(overrides)
    return Origin(**fields)  # type: ignore[arg-type]


def test_record_keeps_the_original_bytes_and_coordinates(schema: dict) -> None:
    record = dead_letter_record(_origin(), stage="decode", reason="unknown_magic_byte",
                                error=ValueError("magic byte is 7"), trace_id="trc-1", now_ms=1_000)
    assert record["dead_letter_id"] == "reviews.created:3:42:decode"
    assert (record["topic"], record["partition"], record["offset"]) == ("reviews.created", 3, 42)
    assert (record["key"], record["value"]) == (b"k", b"\x07not avro")
    assert record["headers"] == [{"key": "trace_id", "value": b"trc-1"}, {"key": "empty", "value": None}]
    assert (record["stage"], record["reason"]) == ("decode", "unknown_magic_byte")
    assert (record["error_class"], record["error_message"]) == ("ValueError", "magic byte is 7")
    assert record["first_failure_at"] == record["last_failure_at"] == 1_000
    assert record["attempts"] == 1 and record["trace_id"] == "trc-1"
    assert fastavro.validate(record, schema)


def test_retried_record_keeps_first_failure_and_attempts(schema: dict) -> None:
    record = dead_letter_record(_origin(key=None, value=None, headers=()), stage="enrich",
                                reason="llm_exhausted", error=RuntimeError("HTTP 500"), attempts=3,
                                first_failure_ms=500, now_ms=2_500)
    assert (record["attempts"], record["first_failure_at"], record["last_failure_at"]) == (3, 500, 2_500)
    assert record["trace_id"] is None and record["headers"] == []
    assert fastavro.validate(record, schema)


def test_without_an_exception_the_reason_is_the_message() -> None:
    record = dead_letter_record(_origin(), stage="decode", reason="empty_value", error=None, now_ms=1)
    assert (record["error_class"], record["error_message"]) == ("", "empty_value")


def test_long_error_messages_are_clipped() -> None:
    record = dead_letter_record(_origin(), stage="decode", reason="undecodable",
                                error=ValueError("x" * 10_000), now_ms=1)
    assert len(record["error_message"]) == MAX_ERROR_MESSAGE_CHARS


@pytest.mark.parametrize("headers", [{"a": b"1", "b": None}, [("a", b"1"), ("b", None)], None])
def test_origin_of_a_message_accepts_dict_list_or_no_headers(headers: object) -> None:
    message = SimpleNamespace(topic="t", partition=1, offset=2, key=b"k", value=b"v", headers=headers)
    origin = Origin.of(message)
    assert (origin.topic, origin.partition, origin.offset) == ("t", 1, 2)
    assert (origin.key, origin.value) == (b"k", b"v")
    assert origin.headers == ((("a", b"1"), ("b", None)) if headers else ())


def test_a_dead_letter_too_large_to_send_keeps_its_coordinates_and_reason_not_its_payload(
        schema: dict) -> None:
    from streams.dlq import DEAD_LETTER_MAX_BYTES, without_payload

    big = _origin(value=b"v" * 1_000_000, key=b"k" * 10)
    record = without_payload(dead_letter_record(big, stage="decode", reason="record_too_large",
                                                error=ValueError("too big"), now_ms=1_000))
    assert (record["key"], record["value"], record["headers"]) == (None, None, [])
    assert (record["topic"], record["offset"]) == ("reviews.created", 42)
    assert record["reason"] == "record_too_large"
    assert record["error_message"].startswith("too big [original key, value and headers (1000")
    assert str(DEAD_LETTER_MAX_BYTES) in record["error_message"]
    assert len(record["error_message"]) <= MAX_ERROR_MESSAGE_CHARS
    assert fastavro.validate(record, schema)
