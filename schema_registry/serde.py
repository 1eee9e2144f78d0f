"""The Confluent wire format: framing (magic byte 0, big-endian schema id) and Avro binary.

A framed record is::

    byte 0      magic byte, always 0
    bytes 1-4   schema id, unsigned 32-bit big-endian
    bytes 5-    Avro binary of the value, written with that schema (no container header)

Everything here is pure (no I/O): the registry lookup that turns an id into a writer
schema is the caller's (see :mod:`schema_registry.codec`). Foreign errors (struct,
fastavro, EOFError, JSON) are translated here, once, into :mod:`schema_registry.errors`.
"""

from __future__ import annotations

import io
import json
import struct
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import fastavro
from fastavro.types import Schema as FastavroSchema

from schema_registry import timestamps
from schema_registry.errors import (
    InvalidSchemaError,
    RecordEncodeError,
    SchemaMismatchError,
    TruncatedPayloadError,
    UnknownMagicByteError,
)

MAGIC_BYTE = 0
HEADER = struct.Struct(">bI")  # magic byte, then the id as unsigned 32-bit big-endian
HEADER_SIZE = HEADER.size  # 5

#: A schema as fastavro parsed it; treat as opaque.
ParsedSchema = FastavroSchema

# Distinct schemas an app meets are few (one per writer version); 1024 is far above that.
_PARSE_CACHE_SIZE = 1024


def frame(schema_id: int, avro_bytes: bytes) -> bytes:
    """Prefix Avro bytes with the magic byte and the schema id."""
    try:
        return HEADER.pack(MAGIC_BYTE, schema_id) + avro_bytes
    except struct.error as exc:
        raise ValueError(f"schema id {schema_id} does not fit in 32 unsigned bits") from exc


def unframe(data: bytes) -> tuple[int, bytes]:
    """Split a framed record into (schema id, Avro payload); raise a SerdeError if malformed."""
    if len(data) < HEADER_SIZE:
        raise TruncatedPayloadError(
            f"a framed record has at least {HEADER_SIZE} bytes, got {len(data)}"
        )
    magic, schema_id = HEADER.unpack_from(data)
    if magic != MAGIC_BYTE:
        raise UnknownMagicByteError(f"magic byte is {magic & 0xFF}, expected {MAGIC_BYTE}")
    return schema_id, bytes(data[HEADER_SIZE:])


_PRIMITIVES = frozenset({"null", "boolean", "int", "long", "float", "double", "bytes", "string"})


@lru_cache(maxsize=_PARSE_CACHE_SIZE)
def _parse_text(schema_str: str) -> ParsedSchema:
    if schema_str in _PRIMITIVES:  # fastavro's parsed form of a primitive is its bare name
        return schema_str
    try:
        loaded = json.loads(schema_str)
    except ValueError as exc:
        raise InvalidSchemaError(f"schema is not valid JSON: {exc}") from exc
    return _parse_loaded(loaded)


def _parse_loaded(loaded: Any) -> ParsedSchema:
    try:
        return fastavro.parse_schema(loaded)
    except (fastavro.schema.SchemaParseException, ValueError, TypeError, KeyError) as exc:
        raise InvalidSchemaError(f"not a valid Avro schema: {exc}") from exc


def parse_schema_uncached(schema_str: str) -> ParsedSchema:
    """Parse JSON text without this module's cache: for a caller that keeps, and bounds in
    bytes, its own (a writer schema cache); the LRU here would hold what it lets go."""
    return _parse_text.__wrapped__(schema_str)


def parse_schema(schema: str | Mapping[str, Any] | list[Any] | ParsedSchema) -> ParsedSchema:
    """Parse an Avro schema (JSON text or loaded JSON) once; the same text hits a cache."""
    if isinstance(schema, str):
        return _parse_text(schema)
    if isinstance(schema, Mapping) and "__fastavro_parsed" in schema:
        return schema
    return _parse_text(json.dumps(schema, sort_keys=True))


def encode(value: Any, schema: ParsedSchema) -> bytes:
    """Avro-encode one value (no framing); a value that does not fit raises RecordEncodeError.

    fastavro checks types and fields but not numeric ranges: an ``int`` field given a value
    beyond 32 bits is written as a longer varint. A full ``fastavro.validation`` pass would
    catch it at about six times the cost of the encoding itself, so it is not done here.
    """
    out = io.BytesIO()
    try:
        # strict: an unknown or missing field is an error, not silently dropped or nulled.
        fastavro.schemaless_writer(out, schema, value, strict=True, strict_allow_default=True)
    except (ValueError, TypeError, KeyError, AttributeError, OverflowError) as exc:
        raise RecordEncodeError(f"value does not fit the schema: {exc}") from exc
    return out.getvalue()


def decode(
    payload: bytes, *, writer_schema: ParsedSchema, reader_schema: ParsedSchema | None = None
) -> Any:
    """Decode Avro bytes written with ``writer_schema``, resolved to ``reader_schema``.

    With a reader schema, its ``timestamp-millis`` fields hold epoch ms ints whatever the
    writer's logical type, or a LogicalTypeMismatchError says why they cannot
    (:mod:`schema_registry.timestamps`); without one, values are fastavro's (datetimes).

    Trailing bytes after the value mean the writer schema is not the one the bytes were
    written with, so they are an error rather than silently ignored.
    """
    steps = None
    if reader_schema is not None:
        same = reader_schema is writer_schema
        # Timestamps come out as epoch ms whatever the writer's logical type (or an error).
        try:
            writer_schema, steps = timestamps.PLANS.get(writer_schema, reader_schema)
        except (fastavro.schema.SchemaParseException, ValueError, TypeError, KeyError) as exc:
            raise SchemaMismatchError(f"writer schema cannot be read as ours: {exc!r}") from exc
        if same:
            reader_schema = None
    buffer = io.BytesIO(payload)
    try:
        value = fastavro.schemaless_reader(buffer, writer_schema, reader_schema)
    except (
        fastavro.read.SchemaResolutionError,
        EOFError,
        StopIteration,
        IndexError,
        ValueError,
        TypeError,
        KeyError,
        struct.error,
        OverflowError,
        MemoryError,  # a corrupt length prefix can ask for an absurd allocation
    ) as exc:
        raise SchemaMismatchError(f"payload does not decode with the schema: {exc!r}") from exc
    if buffer.tell() != len(payload):
        raise SchemaMismatchError(
            f"{len(payload) - buffer.tell()} trailing bytes after the value: wrong writer schema?"
        )
    return timestamps.apply(value, steps) if steps else value


def encode_framed(value: Any, *, schema_id: int, schema: ParsedSchema) -> bytes:
    """Encode and frame one value: the bytes a Confluent serializer would produce."""
    return frame(schema_id, encode(value, schema))
