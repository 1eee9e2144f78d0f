"""A blocking registry client for the CLI and for the codec's first lookup of a schema id.

Same requests, answers and errors as :class:`schema_registry.client.AsyncRegistryClient`
(both run :mod:`schema_registry.rest`), over ``httpx.Client``. Thread-safe as httpx is.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import httpx

from schema_registry import rest
from schema_registry.client import connection_from
from schema_registry.rest import RegisteredSchema, RegistryConnection


class SyncRegistryClient:
    """A Confluent-compatible registry over ``httpx.Client``; use as ``with``."""

    def __init__(
        self,
        url: str | RegistryConnection,
        *,
        transport: httpx.BaseTransport | None = None,
        **connection: Any,
    ) -> None:
        self.connection = connection_from(url, **connection)
        self._http = httpx.Client(transport=transport, **self.connection.httpx_options())
        self._schemas_by_id: dict[int, str] = {}

    def __repr__(self) -> str:
        return f"SyncRegistryClient(url={self.connection.url!r})"

    def __enter__(self) -> SyncRegistryClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _run(self, call: rest.Call) -> Any:
        request = rest.build_request(self._http, call)
        try:
            response = self._http.send(request)
        except httpx.HTTPError as exc:
            raise rest.transport_error(exc, call) from exc
        return rest.read_answer(response, call)

    def register(self, subject: str, schema_str: str) -> int:
        return self._run(rest.register(subject, schema_str))

    def lookup(self, subject: str, schema_str: str) -> RegisteredSchema:
        return self._run(rest.lookup(subject, schema_str))

    def get_schema(self, schema_id: int) -> str:
        """The schema text with this id; cached forever (ids are immutable)."""
        if schema_id not in self._schemas_by_id:
            self._schemas_by_id[schema_id] = self._run(rest.get_schema(schema_id))
        return self._schemas_by_id[schema_id]

    def get_latest(self, subject: str) -> RegisteredSchema:
        return self._run(rest.get_version(subject, "latest"))

    def get_subjects(self) -> list[str]:
        return self._run(rest.get_subjects())

    def test_compatibility(
        self, subject: str, schema_str: str, version: int | str = "latest"
    ) -> tuple[bool, list[str]]:
        return self._run(rest.test_compatibility(subject, schema_str, version))

    def get_config(self, subject: str | None = None) -> str:
        return self._run(rest.get_config(subject))

    def set_config(self, level: str, subject: str | None = None) -> str:
        return self._run(rest.set_config(level, subject))

    def delete_subject(self, subject: str, *, permanent: bool = False) -> list[int]:
        return self._run(rest.delete_subject(subject, permanent=permanent))
