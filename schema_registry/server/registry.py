"""The registry's rules: ids, versions, compatibility, soft and hard deletes, config.

Each failure is a :class:`RegistryHTTPError` carrying the HTTP status and Confluent error
code the REST layer answers with, so the rules and the wire codes live side by side.
Writes are serialized by one lock and applied to the state only after the log acked them.
"""

from __future__ import annotations

import asyncio
import json
import logging
from functools import lru_cache
from typing import Any

from schema_registry import compatibility, serde
from schema_registry.compatibility import CompatibilityLevel
from schema_registry.errors import InvalidSchemaError, RegistryHTTPError
from schema_registry.server.state import (
    RegistryState,
    VersionRecord,
    config_key,
    dumps,
    schema_key,
)
from schema_registry.server.store import Log

log = logging.getLogger(__name__)

MAX_VERSION = 2**31 - 1


def _error(status: int, error_code: int, message: str) -> RegistryHTTPError:
    return RegistryHTTPError(message, status=status, error_code=error_code)


def subject_not_found(subject: str) -> RegistryHTTPError:
    return _error(404, 40401, f"Subject '{subject}' not found.")


def version_not_found(subject: str, version: Any) -> RegistryHTTPError:
    return _error(404, 40402, f"Version {version} not found for subject '{subject}'.")


def schema_not_found(detail: str = "Schema not found") -> RegistryHTTPError:
    return _error(404, 40403, detail)


def invalid_schema(detail: str) -> RegistryHTTPError:
    return _error(422, 42201, f"Invalid schema: {detail}")


def invalid_level(level: Any) -> RegistryHTTPError:
    valid = ", ".join(level.value for level in CompatibilityLevel)
    return _error(422, 42203, f"Invalid compatibility level {level!r}. Valid values are {valid}")


@lru_cache(maxsize=4096)  # every stored schema is compared on each registration
def canonical_form(schema_str: str) -> str:
    """The identity of a schema: Avro's full JSON (docs and defaults kept), keys sorted."""
    parsed = compatibility.parse_avro(schema_str)
    return json.dumps(parsed.to_json(), sort_keys=True, separators=(",", ":"))


def parse_version(text: str) -> int | None:
    """A version path segment: an int in [1, 2^31-1], or None for "latest" (or -1)."""
    if text in ("latest", "-1"):
        return None
    try:
        version = int(text)
    except ValueError:
        version = 0
    if not 1 <= version <= MAX_VERSION:
        raise _error(
            422,
            42202,
            f"The specified version '{text}' is not a valid version id. Allowed values are"
            f' between [1, {MAX_VERSION}] and the string "latest"',
        )
    return version


class Registry:
    """Registry operations over a :class:`RegistryState` persisted to a :class:`Log`."""

    def __init__(self, log_: Log) -> None:
        self._log = log_
        self.state = RegistryState(canonical=canonical_form)
        self._write_lock = asyncio.Lock()

    async def start(self) -> None:
        for key, value in await self._log.start():
            self.state.apply(key, value)

    async def stop(self) -> None:
        await self._log.stop()

    async def _write(self, key: dict[str, Any], value: dict[str, Any] | None) -> None:
        key_bytes, value_bytes = dumps(key), dumps(value)
        assert key_bytes is not None
        await self._log.append(key_bytes, value_bytes)
        self.state.apply(key_bytes, value_bytes)

    # -- schemas -------------------------------------------------------------------------

    def parse_request(self, body: dict[str, Any]) -> tuple[str, Any]:
        """The schema text of a register/lookup/compatibility body, and its avro parse."""
        schema_type = body.get("schemaType") or "AVRO"
        if schema_type != "AVRO":
            raise invalid_schema(f"schemaType {schema_type!r} is not supported; only AVRO is")
        if body.get("references"):
            raise invalid_schema("schema references are not supported by this registry")
        schema_str = body.get("schema")
        if not isinstance(schema_str, str) or not schema_str.strip():
            raise invalid_schema("the request has no 'schema' string")
        try:
            parsed = compatibility.parse_avro(schema_str)
            serde.parse_schema(schema_str)  # the app's decoders must accept it too
        except InvalidSchemaError as exc:
            raise invalid_schema(str(exc)) from exc
        return schema_str, parsed

    def schema_by_id(self, schema_id: int) -> str:
        if schema_id not in self.state.schemas:
            raise schema_not_found(f"Schema {schema_id} not found")
        return self.state.schemas[schema_id]

    def live_versions(self, subject: str, *, deleted: bool = False) -> list[VersionRecord]:
        records = self.state.versions(subject, deleted=deleted)
        if not records:
            raise subject_not_found(subject)
        return records

    def version(self, subject: str, text: str, *, deleted: bool = False) -> VersionRecord:
        number = parse_version(text)
        records = self.live_versions(subject, deleted=deleted)
        if number is None:
            return records[-1]
        for record in records:
            if record.version == number:
                return record
        raise version_not_found(subject, number)

    def lookup(self, subject: str, body: dict[str, Any], *, deleted: bool = False) -> VersionRecord:
        records = self.live_versions(subject, deleted=deleted)
        schema_str, _parsed = self.parse_request(body)
        canonical = canonical_form(schema_str)
        for record in reversed(records):
            if canonical_form(record.schema_str) == canonical:
                return record
        raise schema_not_found()

    async def register(self, subject: str, body: dict[str, Any]) -> int:
        schema_str, parsed = self.parse_request(body)
        canonical = canonical_form(schema_str)
        async with self._write_lock:
            live = self.state.versions(subject)
            for record in live:
                if canonical_form(record.schema_str) == canonical:
                    return record.schema_id
            messages = compatibility.check(
                parsed,
                [compatibility.parse_avro(r.schema_str) for r in live],
                self.state.level(subject),
                versions=[r.version for r in live],
            )
            if messages:
                raise _error(
                    409,
                    409,
                    f"Schema being registered is incompatible with an earlier schema for"
                    f' subject "{subject}", details: [{"; ".join(messages)}]',
                )
            schema_id = self.state.ids_by_canonical.get(canonical, self.state.max_id + 1)
            stored = self.state.schemas.get(schema_id, schema_str)
            version = self.state.next_version(subject)
            record = VersionRecord(subject, version, schema_id, stored)
            await self._write(schema_key(subject, version), record.as_value())
        log.info(
            "schema registered", extra={"subject": subject, "version": version, "id": schema_id}
        )
        return schema_id

    def check_compatibility(
        self, subject: str, body: dict[str, Any], version_text: str | None
    ) -> list[str]:
        """Why the body's schema may not follow ``version_text`` (all versions if None)."""
        _schema_str, parsed = self.parse_request(body)
        level = self.state.level(subject)
        if version_text is None:
            against = self.state.versions(subject)
        else:
            against = [self.version(subject, version_text)]
        return compatibility.check(
            parsed,
            [compatibility.parse_avro(r.schema_str) for r in against],
            level,
            versions=[r.version for r in against],
        )

    # -- deletes -------------------------------------------------------------------------

    async def delete_subject(self, subject: str, *, permanent: bool) -> list[int]:
        async with self._write_lock:
            every = self.state.versions(subject, deleted=True)
            if not every:
                raise subject_not_found(subject)
            live = [r for r in every if not r.deleted]
            if permanent:
                if live:
                    raise _error(
                        404,
                        40405,
                        f"Subject '{subject}' was not deleted first before being permanently"
                        " deleted",
                    )
                for record in every:
                    await self._write(schema_key(subject, record.version), None)
                if subject in self.state.configs:
                    await self._write(config_key(subject), None)
                return [r.version for r in every]
            if not live:
                raise _error(
                    404,
                    40404,
                    f"Subject '{subject}' was soft deleted. Set permanent=true to delete"
                    " permanently",
                )
            for record in live:
                record_value = {**record.as_value(), "deleted": True}
                await self._write(schema_key(subject, record.version), record_value)
        log.info("subject deleted", extra={"subject": subject, "permanent": permanent})
        return [r.version for r in live]

    async def delete_version(self, subject: str, version_text: str, *, permanent: bool) -> int:
        async with self._write_lock:
            record = self._version_to_delete(subject, version_text, permanent=permanent)
            if permanent:
                if not record.deleted:
                    raise _error(
                        404,
                        40407,
                        f"Subject '{subject}' Version {record.version} was not deleted first"
                        " before being permanently deleted",
                    )
                await self._write(schema_key(subject, record.version), None)
            else:
                if record.deleted:
                    raise _error(
                        404,
                        40406,
                        f"Subject '{subject}' Version {record.version} was soft deleted. Set"
                        " permanent=true to delete permanently",
                    )
                await self._write(
                    schema_key(subject, record.version), {**record.as_value(), "deleted": True}
                )
        log.info(
            "version deleted",
            extra={"subject": subject, "version": record.version, "permanent": permanent},
        )
        return record.version

    def _version_to_delete(self, subject: str, text: str, *, permanent: bool) -> VersionRecord:
        number = parse_version(text)
        every = self.live_versions(subject, deleted=True)
        if number is None:
            live = [r for r in every if not r.deleted]
            return every[-1] if permanent or not live else live[-1]
        for record in every:
            if record.version == number:
                return record
        raise version_not_found(subject, number)

    # -- config --------------------------------------------------------------------------

    async def set_level(self, subject: str | None, level: Any) -> str:
        try:
            parsed = CompatibilityLevel.parse(level)
        except (ValueError, AttributeError) as exc:
            raise invalid_level(level) from exc
        async with self._write_lock:
            await self._write(config_key(subject), {"compatibilityLevel": parsed.value})
        log.info("compatibility set", extra={"subject": subject, "level": parsed.value})
        return parsed.value

    def subject_level(self, subject: str, *, default_to_global: bool) -> str:
        if subject in self.state.configs or default_to_global:
            return self.state.level(subject)
        raise _error(
            404,
            40408,
            f"Subject '{subject}' does not have subject-level compatibility configured",
        )

    async def delete_level(self, subject: str | None) -> str:
        async with self._write_lock:
            if subject is not None and subject not in self.state.configs:
                raise subject_not_found(subject)
            old = self.state.level(subject)
            await self._write(config_key(subject), None)
        return old
