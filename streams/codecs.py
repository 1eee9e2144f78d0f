"""Wiring between the app and the registry: reader schemas in, registered output schemas out.

Inputs are decoded with the writer schema named by each record's id (fetched once, then
cached) and resolved to our reader schema from ``avro_schemas/``, so producers may evolve
their schemas within the subject's compatibility level. Outputs are encoded with the
schema registered (or looked up) at start-up under TopicNameStrategy ``<topic>-value``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import avro_schemas
from schema_registry import serde
from schema_registry.client import AsyncRegistryClient
from schema_registry.codec import SchemaCache, decode_record, encode_record
from schema_registry.subjects import topic_name
from streams.settings import Settings
from streams.topics import TOPIC_RECORDS

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS = timedelta(milliseconds=1)


def to_ms(value: datetime | int) -> int:
    """fastavro returns timestamp-millis as aware datetimes; we compute in integer ms."""
    if isinstance(value, int):
        return value
    return (value - _EPOCH) // _MS


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds from ``1767225600000`` or ISO 8601 (naive means UTC)."""
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"{text!r} is neither epoch milliseconds nor ISO 8601") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def plain_record(record: dict[str, Any]) -> dict[str, Any]:
    """The decoded record with its top-level timestamps as epoch ms (JSON-ready, for later stages)."""
    return {k: to_ms(v) if isinstance(v, datetime) else v for k, v in record.items()}


def registry_client(settings: Settings, *, cache_by_id: bool = True) -> AsyncRegistryClient:
    return AsyncRegistryClient(
        settings.schema_registry_url,
        cache_by_id=cache_by_id,
        username=settings.schema_registry_username,
        password=settings.schema_registry_password,
        ca_path=str(settings.schema_registry_ca_file) if settings.schema_registry_ca_file else None,
    )


class AvroCodecs:
    """Decode inputs and encode outputs by record name (``ReviewCreated``, ``DeadLetter``, ...)."""

    def __init__(self, settings: Settings, client: AsyncRegistryClient | None = None) -> None:
        self.settings = settings
        # The SchemaCache is the one cache of writer schemas, bounded in bytes: the client's
        # own (texts by id, kept forever) would hold every schema the bound let go.
        self.client = client or registry_client(settings, cache_by_id=False)
        self.cache = SchemaCache(max_bytes=settings.schema_cache_max_bytes)
        self._readers = {name: serde.parse_schema(avro_schemas.schema_text(name))
                         for name in avro_schemas.record_names()}
        self._writer_ids: dict[str, int] = {}

    async def start(self) -> None:
        """Register (or look up) every output schema; fail loudly if the registry says no."""
        for topic, name in TOPIC_RECORDS.items():
            text = avro_schemas.schema_text(name)
            subject = topic_name(topic)
            if self.settings.schema_auto_register:
                schema_id = await self.client.register(subject, text)
            else:
                schema_id = (await self.client.lookup(subject, text)).schema_id
            self._writer_ids[name] = schema_id
            self.cache.put(schema_id, text)

    async def stop(self) -> None:
        await self.client.aclose()

    def encode(self, record_name: str, value: dict[str, Any]) -> bytes:
        return encode_record(value, schema_id=self._writer_ids[record_name],
                             schema=self._readers[record_name])

    async def decode(self, record_name: str, data: bytes) -> dict[str, Any]:
        """Decode framed bytes to a dict shaped by our reader schema.

        Raises a SerdeError (bad bytes: dead-letter them) or the RegistryHTTPError of the one
        fetch of an uncached writer schema. Waiting is the caller's: the decode stage waits
        out a ``retriable`` one, counted and logged, honouring ``retry_after_s``
        (:func:`agents.decode.decode_waiting`); a quick retry here would hide those waits
        from the count and ask a rate-limited registry again before it said to.
        """
        schema_id, _ = serde.unframe(data)
        # The parsed schema itself, not a lookup after it: the byte bound may let go of it.
        writer = await self.cache.ensure(schema_id, self.client)
        return decode_record(data, reader_schema=self._readers[record_name],
                             fetch_writer_schema=lambda _: writer)
