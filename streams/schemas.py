"""`reviewpulse schemas register|check`: the CI guard for schema evolution.

``check`` asks the registry whether each committed ``.avsc`` is compatible with what is
registered under its subject (at the subject's own level), so an incompatible change
fails CI before any producer or consumer meets it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import avro_schemas
from schema_registry.client import AsyncRegistryClient
from schema_registry.errors import RegistryHTTPError
from schema_registry.subjects import topic_name
from streams.topics import TOPIC_RECORDS

SUBJECT_NOT_FOUND = 40401


@dataclass(frozen=True)
class SubjectResult:
    subject: str
    record: str
    ok: bool
    detail: str


async def register_all(client: AsyncRegistryClient, *,
                       on_progress: Callable[[int, int], None] | None = None) -> list[SubjectResult]:
    results = []
    for topic, record in TOPIC_RECORDS.items():
        subject = topic_name(topic)
        schema_id = await client.register(subject, avro_schemas.schema_text(record))
        results.append(SubjectResult(subject, record, True, f"id {schema_id}"))
        if on_progress is not None:
            on_progress(len(results), len(TOPIC_RECORDS))
    return results


async def check_all(client: AsyncRegistryClient, *,
                    on_progress: Callable[[int, int], None] | None = None) -> list[SubjectResult]:
    results: list[SubjectResult] = []
    for topic, record in TOPIC_RECORDS.items():
        if on_progress is not None:
            on_progress(len(results), len(TOPIC_RECORDS))
        subject = topic_name(topic)
        try:
            ok, messages = await client.test_compatibility(
                subject, avro_schemas.schema_text(record)
            )
        except RegistryHTTPError as exc:
            if exc.error_code == SUBJECT_NOT_FOUND:
                results.append(SubjectResult(subject, record, True, "not registered yet (new subject)"))
                continue
            raise
        detail = "compatible" if ok else "; ".join(messages) or "incompatible"
        results.append(SubjectResult(subject, record, ok, detail))
    if on_progress is not None:
        on_progress(len(results), len(TOPIC_RECORDS))
    return results
