"""Registry-aware Avro encode/decode for agents, and the same as a Faust codec.

Why a synchronous fetch on a cache miss: Faust codecs are synchronous (``_loads`` is
called inside the consumer loop, with no way to await), and schema ids are immutable, so
the writer schema of an id is fetched at most once per process and then served from
memory forever. The first record of each writer version pays one blocking HTTP GET of a
few milliseconds; every later record pays a dict lookup. Pre-filling the cache with
:meth:`SchemaCache.ensure` (async) at start-up removes even that, and a cache without a
``fetch`` function never does I/O (it raises UnknownSchemaIdError on a miss instead).

The app itself is expected to decode raw bytes in its agents with :func:`decode_record`,
so that a record that fails to decode is dead-lettered with the error's ``reason``
rather than failing inside Faust's deserialization, where it cannot be routed.
Only the registry's own "schema not found" (error code 40403) says anything about the
record: it becomes :class:`UnknownSchemaIdError` (dead-letter it). Every other registry
error passes as a :class:`RegistryHTTPError`; a ``retriable`` one (no answer, 5xx, 408,
429, 401/403, a 404 that is not the registry's verdict) means the schema could not be
fetched *yet*: wait and ask again, do not dead-letter, the record itself may be fine.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from faust.serializers.codecs import Codec

from schema_registry import serde, timestamps
from schema_registry.client import AsyncRegistryClient
from schema_registry.errors import (
    InvalidSchemaError,
    RecordEncodeError,
    RegistryHTTPError,
    SchemaMismatchError,
    UnknownSchemaIdError,
)
from schema_registry.serde import ParsedSchema
from streams.memory import ByteLRU, str_bytes

SCHEMA_NOT_FOUND = 40403  # the registry's error code for an unknown schema id

SchemaSource = str | Mapping[str, Any] | ParsedSchema


DEFAULT_CACHE_MAX_BYTES = 16 * 1024 * 1024  # Settings.schema_cache_max_bytes
# A parsed schema (fastavro's dict, plus the stripped copy timestamps.PLANS keeps) against
# its JSON text: tracemalloc measured 2-4.5 times for ours; 8 leaves room.
PARSED_SCHEMA_FACTOR = 8


def parsed_schema_bytes(schema: SchemaSource) -> int:
    """What a cached parsed schema costs, estimated from its text (never a walk)."""
    text = schema if isinstance(schema, str) else json.dumps(schema, default=str)
    return PARSED_SCHEMA_FACTOR * str_bytes(text)


def _parse_writer(schema_id: int, schema: SchemaSource) -> ParsedSchema:
    try:
        if isinstance(schema, str):  # cached (and bounded) by SchemaCache, not twice
            return serde.parse_schema_uncached(schema)
        return serde.parse_schema(schema)
    except InvalidSchemaError as exc:
        raise SchemaMismatchError(f"writer schema {schema_id} does not parse: {exc}") from exc


@contextmanager
def _unknown_id_translated(schema_id: int) -> Iterator[None]:
    """The registry's "schema not found" (40403) becomes UnknownSchemaIdError (dead-letter the
    record); any other registry error passes unchanged. A 404 without that code is not the
    registry's verdict (a wrong base URL path answers 404 too): see RegistryHTTPError."""
    try:
        yield
    except RegistryHTTPError as exc:
        if exc.status == 404 and exc.error_code == SCHEMA_NOT_FOUND:
            raise UnknownSchemaIdError(schema_id, f"the registry has no schema id {schema_id}") from exc
        raise


class SchemaCache:
    """Writer schemas by id, parsed once; read synchronously, filled sync or async.

    ``fetch`` (e.g. ``SyncRegistryClient(url).get_schema``) is called on a miss, at most
    once per id that exists. Safe to share between threads.
    """

    def __init__(self, fetch: Callable[[int], str] | None = None, *,
                 max_bytes: int = DEFAULT_CACHE_MAX_BYTES) -> None:
        self._fetch = fetch
        # Bounded in bytes (issue 30, finding 9): an evicted id is fetched again when next seen.
        self._parsed: ByteLRU[int, ParsedSchema] = ByteLRU(
            part="schema_cache", max_bytes=max_bytes,
            on_evict=lambda _id, parsed: timestamps.PLANS.forget(parsed))
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SchemaCache(ids={sorted(self._parsed._entries)})"

    def __contains__(self, schema_id: object) -> bool:
        return schema_id in self._parsed

    @property
    def bytes(self) -> int:
        return self._parsed.bytes

    def put(self, schema_id: int, schema: SchemaSource) -> ParsedSchema:
        """Remember the schema of ``schema_id`` (e.g. one just registered); returns it parsed
        (also when it is larger than the whole bound and so not kept)."""
        parsed = _parse_writer(schema_id, schema)
        with self._lock:
            held = self._parsed.get(schema_id)
            if held is not None:
                return held
            self._parsed.put(schema_id, parsed, parsed_schema_bytes(schema))
            return parsed

    def get(self, schema_id: int) -> ParsedSchema:
        """The parsed schema of ``schema_id``, fetched synchronously on a miss."""
        with self._lock:
            parsed = self._parsed.get(schema_id)
        if parsed is not None:
            return parsed
        if self._fetch is None:
            raise UnknownSchemaIdError(schema_id, f"schema id {schema_id} is not in the cache")
        with _unknown_id_translated(schema_id):
            text = self._fetch(schema_id)
        return self.put(schema_id, text)

    async def ensure(self, schema_id: int, client: AsyncRegistryClient) -> ParsedSchema:
        """Fill the cache for ``schema_id`` from the async client (no blocking I/O)."""
        with self._lock:
            parsed = self._parsed.get(schema_id)
        if parsed is not None:
            return parsed
        with _unknown_id_translated(schema_id):
            text = await client.get_schema(schema_id)
        return self.put(schema_id, text)


def encode_record(value: Mapping[str, Any], *, schema_id: int, schema: SchemaSource) -> bytes:
    """Avro-encode ``value`` with a registered schema and frame it with the schema's id."""
    return serde.encode_framed(value, schema_id=schema_id, schema=serde.parse_schema(schema))


def decode_record(
    data: bytes,
    *,
    reader_schema: SchemaSource | None,
    fetch_writer_schema: Callable[[int], SchemaSource],
) -> Any:
    """Decode framed bytes: the writer schema by the frame's id, resolved to ``reader_schema``.

    ``fetch_writer_schema`` is usually :meth:`SchemaCache.get`. Raises a SerdeError whose
    ``reason`` says why the bytes are bad, or a RegistryHTTPError (the schema could not be
    fetched: see its ``retriable``).
    """
    schema_id, payload = serde.unframe(data)
    writer = _parse_writer(schema_id, fetch_writer_schema(schema_id))
    reader = serde.parse_schema(reader_schema) if reader_schema is not None else None
    return serde.decode(payload, writer_schema=writer, reader_schema=reader)


class ConfluentAvroCodec(Codec):
    """A Faust codec for Confluent-framed Avro.

    Decoding reads any writer schema through ``cache`` and resolves it to
    ``reader_schema`` (or returns the writer's shape if none is given). Encoding needs
    the registered ``schema_id`` and ``schema`` of the value's subject.
    """

    def __init__(
        self,
        *,
        cache: SchemaCache,
        schema_id: int | None = None,
        schema: SchemaSource | None = None,
        reader_schema: SchemaSource | None = None,
        children: tuple[Any, ...] | None = None,
    ) -> None:
        super().__init__(
            children=children,
            cache=cache,
            schema_id=schema_id,
            schema=schema,
            reader_schema=reader_schema,
        )
        self.cache = cache
        self.schema_id = schema_id
        self.schema = serde.parse_schema(schema) if schema is not None else None
        self.reader_schema = serde.parse_schema(reader_schema) if reader_schema else None
        if self.schema is not None and schema_id is not None:
            cache.put(schema_id, self.schema)

    def _dumps(self, s: Any) -> bytes:
        if self.schema_id is None or self.schema is None:
            raise RecordEncodeError("this codec decodes only: it was given no writer schema")
        value = s.asdict() if hasattr(s, "asdict") else s
        return serde.encode_framed(value, schema_id=self.schema_id, schema=self.schema)

    def _loads(self, s: bytes) -> Any:
        return decode_record(
            s, reader_schema=self.reader_schema, fetch_writer_schema=self.cache.get
        )
