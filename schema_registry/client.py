"""The async registry client (httpx): registration, lookups, compatibility tests and config.

Schemas by id are cached forever: a registry never reuses an id for another schema.
Registrations are cached per (subject, schema text), so a producer that registers on
every start costs one round trip per schema. Nothing else is cached: "latest" changes.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx
from pydantic import SecretStr

from schema_registry import rest
from schema_registry.rest import RegisteredSchema, RegistryConnection

__all__ = ["AsyncRegistryClient", "RegisteredSchema", "RegistryConnection"]


def connection_from(
    url: str | RegistryConnection,
    *,
    username: str | None = None,
    password: str | SecretStr | None = None,
    ca_path: str | None = None,
    cert_path: str | None = None,
    key_path: str | None = None,
    timeout_s: float = rest.DEFAULT_TIMEOUT_S,
) -> RegistryConnection:
    """A RegistryConnection from either one or its parts (a plain-str password is wrapped)."""
    if isinstance(url, RegistryConnection):
        return url
    secret = SecretStr(password) if isinstance(password, str) else password
    return RegistryConnection(
        url=url,
        username=username,
        password=secret,
        ca_path=ca_path,
        cert_path=cert_path,
        key_path=key_path,
        timeout_s=timeout_s,
    )


class AsyncRegistryClient:
    """A Confluent-compatible registry over ``httpx.AsyncClient``; use as ``async with``.

    Every failure is a :class:`RegistryHTTPError` (``retriable`` unless the registry refused
    the request itself: no answer, 5xx, 408, 429, 401, 403 and a bare 404 are retriable;
    ``retry_after_s`` when it said when to come back), except a registration the subject's
    compatibility level refuses, which is an :class:`IncompatibleSchemaError`.
    """

    def __init__(
        self,
        url: str | RegistryConnection,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        cache_by_id: bool = True,
        **connection: Any,
    ) -> None:
        self.connection = connection_from(url, **connection)
        self.cache_by_id = cache_by_id  # False: the caller keeps (and bounds) its own cache
        self._http = httpx.AsyncClient(transport=transport, **self.connection.httpx_options())
        self._schemas_by_id: dict[int, str] = {}
        self._ids_by_registration: dict[tuple[str, str], int] = {}

    def __repr__(self) -> str:
        return f"AsyncRegistryClient(url={self.connection.url!r})"

    async def __aenter__(self) -> AsyncRegistryClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _run(self, call: rest.Call) -> Any:
        request = rest.build_request(self._http, call)
        try:
            response = await self._http.send(request)
        except httpx.HTTPError as exc:
            raise rest.transport_error(exc, call) from exc
        return rest.read_answer(response, call)

    async def register(self, subject: str, schema_str: str) -> int:
        """Register ``schema_str`` under ``subject`` (idempotent); its global id."""
        key = (subject, schema_str)
        if key not in self._ids_by_registration:
            schema_id = await self._run(rest.register(subject, schema_str))
            self._ids_by_registration[key] = schema_id
            if self.cache_by_id:
                self._schemas_by_id.setdefault(schema_id, schema_str)
        return self._ids_by_registration[key]

    async def lookup(self, subject: str, schema_str: str) -> RegisteredSchema:
        """The version of ``subject`` holding this schema (error 40403 if none)."""
        return await self._run(rest.lookup(subject, schema_str))

    async def get_schema(self, schema_id: int) -> str:
        """The schema text with this id; cached forever (ids are immutable) unless
        ``cache_by_id`` is False."""
        cached = self._schemas_by_id.get(schema_id)
        if cached is not None:
            return cached
        text: str = await self._run(rest.get_schema(schema_id))
        if self.cache_by_id:
            self._schemas_by_id[schema_id] = text
        return text

    async def get_latest(self, subject: str) -> RegisteredSchema:
        return await self._run(rest.get_version(subject, "latest"))

    async def get_version(self, subject: str, version: int) -> RegisteredSchema:
        return await self._run(rest.get_version(subject, version))

    async def get_subjects(self) -> list[str]:
        return await self._run(rest.get_subjects())

    async def test_compatibility(
        self, subject: str, schema_str: str, version: int | str = "latest"
    ) -> tuple[bool, list[str]]:
        """Whether ``schema_str`` may follow ``version`` of ``subject``, and why not."""
        return await self._run(rest.test_compatibility(subject, schema_str, version))

    async def get_config(self, subject: str | None = None) -> str:
        """The compatibility level of ``subject`` (falling back to global), or the global one."""
        return await self._run(rest.get_config(subject))

    async def set_config(self, level: str, subject: str | None = None) -> str:
        return await self._run(rest.set_config(level, subject))

    async def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        """Soft-delete ``subject`` (or hard-delete an already soft-deleted one); its versions."""
        return await self._run(rest.delete_subject(subject, permanent=permanent))
