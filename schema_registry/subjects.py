"""Subject name strategies: which registry subject a topic's key or value schema lives under.

They match Confluent's serializer settings ``subject.name.strategy``:

* TopicNameStrategy (the default): ``<topic>-value`` / ``<topic>-key``; one record type
  per topic, and the subject's compatibility level guards that topic's evolution.
* RecordNameStrategy: the record's full name (``namespace.Name``); one subject per record
  type, shared by every topic that carries it.
* TopicRecordNameStrategy: ``<topic>-<namespace.Name>``; several record types per topic,
  each evolving on its own.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from schema_registry.errors import InvalidSchemaError


class SubjectNameStrategy(StrEnum):
    """The strategies by the names Confluent's configuration uses."""

    TOPIC = "TopicNameStrategy"
    RECORD = "RecordNameStrategy"
    TOPIC_RECORD = "TopicRecordNameStrategy"


def topic_name(topic: str, *, is_key: bool = False) -> str:
    """TopicNameStrategy: ``<topic>-key`` or ``<topic>-value``."""
    return f"{topic}-{'key' if is_key else 'value'}"


def record_name(record_fullname: str) -> str:
    """RecordNameStrategy: the record's full name."""
    return record_fullname


def topic_record_name(topic: str, record_fullname: str) -> str:
    """TopicRecordNameStrategy: ``<topic>-<namespace.Name>``."""
    return f"{topic}-{record_fullname}"


def record_fullname(schema: str | Mapping[str, Any]) -> str:
    """The full name (``namespace.Name``) of a named Avro schema, from text or loaded JSON."""
    loaded: Any = schema
    if isinstance(schema, str):
        try:
            loaded = json.loads(schema)
        except ValueError as exc:
            raise InvalidSchemaError(f"schema is not valid JSON: {exc}") from exc
    if not isinstance(loaded, Mapping) or not isinstance(loaded.get("name"), str):
        raise InvalidSchemaError("record name strategies need a named schema (record, enum, fixed)")
    name: str = loaded["name"]
    namespace = loaded.get("namespace")
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def subject_for(
    strategy: SubjectNameStrategy | str,
    *,
    topic: str,
    schema: str | Mapping[str, Any] | None = None,
    is_key: bool = False,
) -> str:
    """The subject for ``topic``'s key or value under ``strategy``.

    ``schema`` is needed by the record strategies only (they read its full name).
    """
    strategy = SubjectNameStrategy(strategy)
    if strategy is SubjectNameStrategy.TOPIC:
        return topic_name(topic, is_key=is_key)
    if schema is None:
        raise ValueError(f"{strategy.value} needs the schema to name the subject")
    fullname = record_fullname(schema)
    if strategy is SubjectNameStrategy.RECORD:
        return record_name(fullname)
    return topic_record_name(topic, fullname)
