"""Confluent wire format and Avro serde: exact bytes, every error kind, schema resolution."""

from __future__ import annotations

import json

import pytest

from schema_registry import serde
from schema_registry.errors import (
    InvalidSchemaError,
    RecordEncodeError,
    SchemaMismatchError,
    SerdeError,
    TruncatedPayloadError,
    UnknownMagicByteError,
    UnknownSchemaIdError,
)

SMALL = {
    "type": "record",
    "name": "Small",
    "namespace": "test.reviewpulse",
    "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "string"}],
}


def _with_fields(*fields: dict) -> dict:
    return {**SMALL, "fields": list(fields)}


def test_frame_puts_magic_zero_and_big_endian_id_before_the_payload():
    assert serde.frame(1, b"") == b"\x00\x00\x00\x00\x01"
    assert serde.frame(0x01020304, b"\xaa") == b"\x00\x01\x02\x03\x04\xaa"


def test_small_record_encodes_to_the_exact_avro_bytes():
    schema = serde.parse_schema(SMALL)
    # a=1 is zigzag varint 0x02; "hi" is length 2 (zigzag 0x04) then the UTF-8 bytes.
    assert serde.encode({"a": 1, "b": "hi"}, schema) == b"\x02\x04hi"
    assert serde.encode_framed({"a": 1, "b": "hi"}, schema_id=1, schema=schema) == (
        b"\x00\x00\x00\x00\x01\x02\x04hi"
    )


def test_unframe_splits_id_and_payload():
    assert serde.unframe(b"\x00\x01\x02\x03\x04\x02\x04hi") == (0x01020304, b"\x02\x04hi")
    assert serde.unframe(b"\x00\xff\xff\xff\xff") == (0xFFFFFFFF, b"")


@pytest.mark.parametrize("data", [b"", b"\x00", b"\x00\x00\x00\x01"])
def test_fewer_than_five_bytes_is_a_truncated_payload(data):
    with pytest.raises(TruncatedPayloadError) as info:
        serde.unframe(data)
    assert info.value.reason == "truncated_payload"


def test_a_first_byte_other_than_zero_is_an_unknown_magic_byte():
    with pytest.raises(UnknownMagicByteError) as info:
        serde.unframe(b"\x01\x00\x00\x00\x01\x02")
    assert info.value.reason == "unknown_magic_byte"
    assert not info.value.retriable


def test_frame_rejects_ids_beyond_32_bits():
    with pytest.raises(ValueError):
        serde.frame(2**32, b"")


def test_every_serde_error_has_a_distinct_machine_reason():
    kinds = [
        UnknownMagicByteError,
        TruncatedPayloadError,
        UnknownSchemaIdError,
        SchemaMismatchError,
        RecordEncodeError,
    ]
    reasons = {kind.reason for kind in kinds}
    assert reasons == {
        "unknown_magic_byte",
        "truncated_payload",
        "unknown_schema_id",
        "undecodable",
        "unencodable",
    }
    assert all(issubclass(kind, SerdeError) for kind in kinds)


def test_payload_cut_short_does_not_decode():
    schema = serde.parse_schema(SMALL)
    with pytest.raises(SchemaMismatchError) as info:
        serde.decode(b"\x02\x04h", writer_schema=schema)
    assert info.value.reason == "undecodable"
    assert isinstance(info.value.__cause__, EOFError)


def test_trailing_bytes_mean_the_wrong_writer_schema():
    schema = serde.parse_schema(SMALL)
    with pytest.raises(SchemaMismatchError, match="trailing"):
        serde.decode(b"\x02\x04hi\x00", writer_schema=schema)


def test_invalid_utf8_does_not_decode():
    schema = serde.parse_schema(SMALL)
    with pytest.raises(SchemaMismatchError):
        serde.decode(b"\x02\x04\xff\xfe", writer_schema=schema)


@pytest.mark.parametrize(
    "value",
    [{"a": "one", "b": "hi"}, {"a": 1}, {"a": 1, "b": "hi", "extra": True}],
    ids=["wrong-type", "missing-field", "unknown-field"],
)
def test_a_value_that_does_not_fit_raises_record_encode_error(value):
    with pytest.raises(RecordEncodeError) as info:
        serde.encode(value, serde.parse_schema(SMALL))
    assert info.value.reason == "unencodable"


def test_reader_with_an_added_field_takes_its_default():
    writer = serde.parse_schema(SMALL)
    reader = serde.parse_schema(
        _with_fields(
            {"name": "a", "type": "int"},
            {"name": "b", "type": "string"},
            {"name": "c", "type": ["null", "string"], "default": None},
            {"name": "d", "type": "long", "default": 7},
        )
    )
    payload = serde.encode({"a": 1, "b": "hi"}, writer)
    assert serde.decode(payload, writer_schema=writer, reader_schema=reader) == {
        "a": 1,
        "b": "hi",
        "c": None,
        "d": 7,
    }


def test_reader_without_a_field_skips_it_and_promotes_int_to_long():
    writer = serde.parse_schema(SMALL)
    reader = serde.parse_schema(_with_fields({"name": "a", "type": "long"}))
    payload = serde.encode({"a": 5, "b": "dropped"}, writer)
    assert serde.decode(payload, writer_schema=writer, reader_schema=reader) == {"a": 5}


def test_reader_needing_a_field_without_default_is_a_mismatch():
    writer = serde.parse_schema(SMALL)
    reader = serde.parse_schema(
        _with_fields({"name": "a", "type": "int"}, {"name": "z", "type": "string"})
    )
    with pytest.raises(SchemaMismatchError):
        serde.decode(
            serde.encode({"a": 1, "b": "x"}, writer), writer_schema=writer, reader_schema=reader
        )


def test_parsing_the_same_schema_text_twice_returns_the_cached_parse():
    text = json.dumps(SMALL)
    assert serde.parse_schema(text) is serde.parse_schema(text)
    parsed = serde.parse_schema(text)
    assert serde.parse_schema(parsed) is parsed


def test_primitive_schemas_round_trip():
    schema = serde.parse_schema('"string"')
    assert serde.decode(serde.encode("olá", schema), writer_schema=schema) == "olá"
    assert serde.parse_schema(schema) == "string"


@pytest.mark.parametrize("text", ["{not json", '{"type": "nosuchtype"}', '"nope"'])
def test_invalid_schema_text_raises_invalid_schema_error(text):
    with pytest.raises(InvalidSchemaError):
        serde.parse_schema(text)
