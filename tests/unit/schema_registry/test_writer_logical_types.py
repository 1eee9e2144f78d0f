"""Writers whose timestamp logical types differ from ours: epoch ms, or a SerdeError with a reason.

Each writer below is one a registry accepts for our subjects (Avro resolution ignores
logical types: ``check_pair`` says so), and the bytes are written by fastavro with it.
"""

from __future__ import annotations

import copy
import io
import json
from datetime import UTC, date, datetime
from typing import Any

import fastavro
import pytest

import avro_schemas
from schema_registry import serde
from schema_registry.codec import SchemaCache, decode_record
from schema_registry.compatibility import check_pair, parse_avro
from schema_registry.errors import LogicalTypeMismatchError, SerdeError
from tests.records import review_created

READER_TEXT = avro_schemas.schema_text("ReviewCreated")
ORDER_TEXT = avro_schemas.schema_text("OrderDelivered")
OCCURRED_MS = 1_780_000_123_456
OCCURRED_DT = datetime.fromtimestamp(OCCURRED_MS / 1000, UTC)


def writer_text(base: str, **field_types: Any) -> str:
    schema = json.loads(base)
    for f in schema["fields"]:
        if f["name"] in field_types:
            f["type"] = field_types[f["name"]]
    return json.dumps(schema)


def review(occurred_at: Any) -> dict[str, Any]:
    return review_created("lt", restaurant_id="r", occurred_at=occurred_at, rating=4, text="ok",
                          language=None)


def framed(text: str, value: dict[str, Any], schema_id: int = 42) -> tuple[bytes, SchemaCache]:
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(json.loads(text)), value)
    cache = SchemaCache()
    cache.put(schema_id, text)
    return serde.frame(schema_id, out.getvalue()), cache


def decode(text: str, value: dict[str, Any], reader: str = READER_TEXT) -> dict[str, Any]:
    data, cache = framed(text, value)
    return decode_record(data, reader_schema=reader, fetch_writer_schema=cache.get)


NORMALISED = [
    ("timestamp-millis (ours)", {"type": "long", "logicalType": "timestamp-millis"}, OCCURRED_DT),
    ("local-timestamp-millis", {"type": "long", "logicalType": "local-timestamp-millis"},
     OCCURRED_DT.replace(tzinfo=None)),
    ("timestamp-micros", {"type": "long", "logicalType": "timestamp-micros"}, OCCURRED_DT),
    ("local-timestamp-micros", {"type": "long", "logicalType": "local-timestamp-micros"},
     OCCURRED_DT.replace(tzinfo=None)),
    ("plain long", "long", OCCURRED_MS),
    ("nullable timestamp-millis", ["null", {"type": "long", "logicalType": "timestamp-millis"}],
     OCCURRED_DT),
]


@pytest.mark.parametrize(("label", "occurred_type", "written"), NORMALISED, ids=[n[0] for n in NORMALISED])
def test_timestamp_writers_are_read_as_epoch_ms(label: str, occurred_type: Any, written: Any) -> None:
    text = writer_text(READER_TEXT, occurred_at=occurred_type)
    if not isinstance(occurred_type, list):
        assert check_pair(reader=parse_avro(READER_TEXT), writer=parse_avro(text)) == [], label
    value = decode(text, review(written))
    assert value["occurred_at"] == OCCURRED_MS and type(value["occurred_at"]) is int


def test_a_plain_int_writer_is_promoted_and_left_to_the_event_time_bound() -> None:
    """Avro promotes int to long; as ms an int is January 1970, which validation rejects."""
    from streams.validation import Invalid, validate_review

    text = writer_text(READER_TEXT, occurred_at="int")
    assert check_pair(reader=parse_avro(READER_TEXT), writer=parse_avro(text)) == []
    value = decode(text, review(1_780_000))
    assert value["occurred_at"] == 1_780_000
    with pytest.raises(Invalid) as err:
        validate_review(value, text_max_chars=5_000)
    assert err.value.reason == "event_time_too_old"


@pytest.mark.parametrize(("occurred_type", "written", "kind"), [
    ({"type": "int", "logicalType": "date"}, date(2026, 5, 28), "date"),
    ({"type": "int", "logicalType": "time-millis"}, 3_600_000, "time-millis"),
    ({"type": "long", "logicalType": "time-micros"}, 3_600_000_000, "time-micros"),
], ids=["date", "time-millis", "time-micros"])
def test_day_or_time_of_day_writers_are_a_logical_type_mismatch(occurred_type: Any, written: Any,
                                                                 kind: str) -> None:
    text = writer_text(READER_TEXT, occurred_at=occurred_type)
    assert check_pair(reader=parse_avro(READER_TEXT), writer=parse_avro(text)) == []
    with pytest.raises(LogicalTypeMismatchError) as err:
        decode(text, review(written))
    assert err.value.reason == "logical_type_mismatch"
    assert "occurred_at" in str(err.value) and kind in str(err.value)
    assert isinstance(err.value, SerdeError)


def test_every_timestamp_of_an_order_and_nested_records_are_converted() -> None:
    micros = {"type": "long", "logicalType": "timestamp-micros"}
    text = writer_text(ORDER_TEXT, occurred_at=micros, promised_at="long",
                       delivered_at={"type": "long", "logicalType": "local-timestamp-millis"})
    order = {"event_id": "o", "occurred_at": OCCURRED_DT, "order_id": "x", "restaurant_id": "r",
             "promised_at": OCCURRED_MS - 60_000, "delivered_at": OCCURRED_DT.replace(tzinfo=None),
             "metadata": {"source": "t", "trace_id": "tr", "retries": 0}}
    value = decode(text, order, reader=ORDER_TEXT)
    assert (value["occurred_at"], value["promised_at"], value["delivered_at"]) == (
        OCCURRED_MS, OCCURRED_MS - 60_000, OCCURRED_MS)

    nested = json.loads(READER_TEXT)
    outer = {"type": "record", "name": "Outer", "namespace": "t",
             "fields": [{"name": "inner", "type": nested}]}
    writer_inner = json.loads(writer_text(READER_TEXT, occurred_at=micros))
    writer_outer = copy.deepcopy(outer)
    writer_outer["fields"][0]["type"] = writer_inner
    value = decode(json.dumps(writer_outer), {"inner": review(OCCURRED_DT)}, reader=json.dumps(outer))
    assert value["inner"]["occurred_at"] == OCCURRED_MS


@pytest.mark.parametrize("raw", [2**63 - 1, -(2**63), 253_402_300_800_000])
def test_timestamps_beyond_the_datetime_range_decode_as_numbers(raw: int) -> None:
    """fastavro itself raises converting these to datetimes; the number reaches validation."""
    text = writer_text(READER_TEXT, occurred_at="long")
    assert decode(text, review(raw))["occurred_at"] == raw
    assert decode(READER_TEXT, review(raw))["occurred_at"] == raw  # our own writer schema too


def test_without_a_reader_schema_values_stay_as_fastavro_gives_them() -> None:
    data, cache = framed(READER_TEXT, review(OCCURRED_DT))
    value = decode_record(data, reader_schema=None, fetch_writer_schema=cache.get)
    assert value["occurred_at"] == OCCURRED_DT
