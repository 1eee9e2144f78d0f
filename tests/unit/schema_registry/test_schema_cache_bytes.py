"""Writer schemas cached by id are bounded in bytes; an evicted one is fetched again when next
needed, and a record never fails because its schema was let go (issue 30, finding 9)."""

from __future__ import annotations

import json

from schema_registry.codec import SchemaCache, decode_record, encode_record, parsed_schema_bytes


def schema(n: int) -> str:
    fields = [{"name": f"f{i}", "type": "string", "doc": "x" * 40} for i in range(n)]
    return json.dumps({"type": "record", "name": f"R{n}", "fields": fields})


def test_schemas_are_held_under_the_bound_and_refetched_after_eviction() -> None:
    texts = {i: schema(10 + i) for i in range(1, 40)}
    fetched: list[int] = []

    def fetch(schema_id: int) -> str:
        fetched.append(schema_id)
        return texts[schema_id]

    bound = 4 * parsed_schema_bytes(texts[39])
    cache = SchemaCache(fetch, max_bytes=bound)
    for schema_id in texts:
        cache.get(schema_id)
        assert cache.bytes <= bound
    assert 1 not in cache and 39 in cache
    value = {f"f{i}": "v" for i in range(11)}
    data = encode_record(value, schema_id=1, schema=texts[1])
    assert decode_record(data, reader_schema=None, fetch_writer_schema=cache.get) == value
    assert fetched.count(1) == 2  # evicted, then fetched again


def test_a_schema_larger_than_the_bound_is_still_served() -> None:
    cache = SchemaCache(max_bytes=1024)
    text = schema(50)
    parsed = cache.put(7, text)
    assert parsed is not None and 7 not in cache and cache.bytes == 0
