"""Registry-aware encode/decode: the schema cache, decode_record, and the Faust codec."""

from __future__ import annotations

import json

import pytest

from schema_registry.codec import ConfluentAvroCodec, SchemaCache, decode_record, encode_record
from schema_registry.errors import (
    RecordEncodeError,
    RegistryHTTPError,
    SchemaMismatchError,
    UnknownMagicByteError,
    UnknownSchemaIdError,
)

V1 = json.dumps(
    {
        "type": "record",
        "name": "Review",
        "namespace": "t",
        "fields": [{"name": "id", "type": "string"}, {"name": "rating", "type": "int"}],
    }
)
V2 = json.dumps(
    {
        "type": "record",
        "name": "Review",
        "namespace": "t",
        "fields": [
            {"name": "id", "type": "string"},
            {"name": "rating", "type": "long"},
            {"name": "lang", "type": "string", "default": "pt"},
        ],
    }
)


class FakeFetch:
    """A registry fetch that counts calls and answers from a dict (or fails as told)."""

    def __init__(self, schemas: dict[int, str], error: RegistryHTTPError | None = None):
        self.schemas = schemas
        self.error = error
        self.calls: list[int] = []

    def __call__(self, schema_id: int) -> str:
        self.calls.append(schema_id)
        if self.error is not None:
            raise self.error
        if schema_id not in self.schemas:
            raise RegistryHTTPError("Schema not found", status=404, error_code=40403)
        return self.schemas[schema_id]


def test_decode_record_reads_old_writer_bytes_with_a_new_reader_schema():
    data = encode_record({"id": "r1", "rating": 4}, schema_id=7, schema=V1)
    assert data[:5] == b"\x00\x00\x00\x00\x07"
    fetch = FakeFetch({7: V1})
    cache = SchemaCache(fetch)
    value = decode_record(data, reader_schema=V2, fetch_writer_schema=cache.get)
    assert value == {"id": "r1", "rating": 4, "lang": "pt"}
    decode_record(data, reader_schema=V2, fetch_writer_schema=cache.get)
    assert fetch.calls == [7], "an id's schema is fetched once, then cached forever"


def test_unknown_id_at_the_registry_is_unknown_schema_id():
    cache = SchemaCache(FakeFetch({}))
    with pytest.raises(UnknownSchemaIdError) as info:
        decode_record(b"\x00\x00\x00\x00\x09\x00", reader_schema=V1, fetch_writer_schema=cache.get)
    assert info.value.schema_id == 9
    assert info.value.reason == "unknown_schema_id"
    assert isinstance(info.value.__cause__, RegistryHTTPError)


def test_a_cache_without_fetch_never_does_io_and_reports_the_miss():
    with pytest.raises(UnknownSchemaIdError):
        SchemaCache().get(3)


def test_registry_down_is_retriable_not_a_bad_record():
    down = RegistryHTTPError("no answer", status=None)
    cache = SchemaCache(FakeFetch({}, error=down))
    with pytest.raises(RegistryHTTPError) as info:
        decode_record(
            encode_record({"id": "x", "rating": 1}, schema_id=1, schema=V1),
            reader_schema=V1,
            fetch_writer_schema=cache.get,
        )
    assert info.value.retriable
    assert RegistryHTTPError("boom", status=503).retriable
    assert not RegistryHTTPError("bad", status=422, error_code=42201).retriable


def test_bytes_that_do_not_fit_the_writer_schema_are_undecodable():
    cache = SchemaCache()
    cache.put(1, V1)
    with pytest.raises(SchemaMismatchError):
        decode_record(
            b"\x00\x00\x00\x00\x01\x02", reader_schema=None, fetch_writer_schema=cache.get
        )
    with pytest.raises(UnknownMagicByteError):
        decode_record(
            b"\x05\x00\x00\x00\x01\x02", reader_schema=None, fetch_writer_schema=cache.get
        )


def test_a_writer_schema_that_does_not_parse_is_undecodable():
    cache = SchemaCache(FakeFetch({2: "{broken"}))
    with pytest.raises(SchemaMismatchError):
        cache.get(2)


async def test_ensure_fills_the_cache_from_the_async_client():
    class Client:
        async def get_schema(self, schema_id: int) -> str:
            return V1

    cache = SchemaCache()
    await cache.ensure(5, Client())  # type: ignore[arg-type]
    assert 5 in cache


def test_faust_codec_round_trips_and_clones_with_its_settings():
    cache = SchemaCache()
    codec = ConfluentAvroCodec(cache=cache, schema_id=11, schema=V1, reader_schema=V2)
    data = codec.dumps({"id": "r", "rating": 5})
    assert data.startswith(b"\x00\x00\x00\x00\x0b")
    assert codec.loads(data) == {"id": "r", "rating": 5, "lang": "pt"}
    clone = codec.clone()
    assert isinstance(clone, ConfluentAvroCodec)
    assert clone.loads(data) == {"id": "r", "rating": 5, "lang": "pt"}


def test_a_decode_only_codec_refuses_to_encode():
    codec = ConfluentAvroCodec(cache=SchemaCache())
    with pytest.raises(RecordEncodeError):
        codec.dumps({"id": "r", "rating": 1})
