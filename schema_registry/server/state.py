"""The registry's in-memory state and the ``_schemas`` records it is rebuilt from.

The ``_schemas`` topic is the source of truth; this state is a fold over it. Records are
modelled on Confluent's (JSON keys and values, so the topic is readable by eye)::

    key   {"keytype": "SCHEMA", "subject": s, "version": v, "magic": 1}
    value {"subject": s, "version": v, "id": n, "schema": "...", "deleted": false}
          (deleted: true is a soft delete; a null value, a tombstone, is a hard delete)

    key   {"keytype": "CONFIG", "subject": s or null, "magic": 0}
    value {"compatibilityLevel": "FULL"}   (null: the subject's level is removed)

Keys are serialized in one fixed field order, so compaction sees equal keys as equal.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from schema_registry.compatibility import DEFAULT_LEVEL

SCHEMA_KEY = "SCHEMA"
CONFIG_KEY = "CONFIG"


@dataclass
class VersionRecord:
    """One version of one subject."""

    subject: str
    version: int
    schema_id: int
    schema_str: str
    deleted: bool = False

    def as_value(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "version": self.version,
            "id": self.schema_id,
            "schema": self.schema_str,
            "deleted": self.deleted,
        }


def dumps(record: dict[str, Any] | None) -> bytes | None:
    """A key or value as the bytes stored in ``_schemas`` (None stays None: a tombstone)."""
    if record is None:
        return None
    return json.dumps(record, separators=(",", ":")).encode()


def schema_key(subject: str, version: int) -> dict[str, Any]:
    return {"keytype": SCHEMA_KEY, "subject": subject, "version": version, "magic": 1}


def config_key(subject: str | None) -> dict[str, Any]:
    return {"keytype": CONFIG_KEY, "subject": subject, "magic": 0}


@dataclass
class RegistryState:
    """Schemas by id, subjects' versions and compatibility levels, as folded from the log.

    ``canonical`` turns schema text into its identity (see the registry), so that the
    same schema gets the same id however it is spelled and under whatever subject.
    """

    canonical: Callable[[str], str]
    schemas: dict[int, str] = field(default_factory=dict)
    ids_by_canonical: dict[str, int] = field(default_factory=dict)
    subjects: dict[str, dict[int, VersionRecord]] = field(default_factory=dict)
    configs: dict[str | None, str] = field(default_factory=dict)
    max_id: int = 0

    def apply(self, key_bytes: bytes, value_bytes: bytes | None) -> None:
        """Fold one ``_schemas`` record (in log order) into the state."""
        key = json.loads(key_bytes)
        value = json.loads(value_bytes) if value_bytes is not None else None
        if key.get("keytype") == SCHEMA_KEY:
            self._apply_schema(key["subject"], int(key["version"]), value)
        elif key.get("keytype") == CONFIG_KEY:
            if value is None:
                self.configs.pop(key.get("subject"), None)
            else:
                self.configs[key.get("subject")] = value["compatibilityLevel"]
        # Other key types (Confluent's NOOP, MODE, ...) carry nothing this registry uses.

    def _apply_schema(self, subject: str, version: int, value: dict[str, Any] | None) -> None:
        versions = self.subjects.setdefault(subject, {})
        if value is None:
            versions.pop(version, None)
            if not versions:
                del self.subjects[subject]
            # The id stays resolvable until restart, as in Confluent's registry: readers
            # may still hold records written with it.
            return
        record = VersionRecord(
            subject=subject,
            version=version,
            schema_id=int(value["id"]),
            schema_str=value["schema"],
            deleted=bool(value.get("deleted", False)),
        )
        versions[version] = record
        if record.schema_id not in self.schemas:
            self.schemas[record.schema_id] = record.schema_str
            self.ids_by_canonical.setdefault(self.canonical(record.schema_str), record.schema_id)
        self.max_id = max(self.max_id, record.schema_id)

    # -- reads ---------------------------------------------------------------------------

    def level(self, subject: str | None) -> str:
        """The subject's level, else the global one, else Confluent's default (BACKWARD)."""
        if subject is not None and subject in self.configs:
            return self.configs[subject]
        return self.configs.get(None, DEFAULT_LEVEL.value)

    def versions(self, subject: str, *, deleted: bool = False) -> list[VersionRecord]:
        """The subject's versions in order; soft-deleted ones only if ``deleted``."""
        records = self.subjects.get(subject, {})
        return [records[v] for v in sorted(records) if deleted or not records[v].deleted]

    def subject_names(self, *, deleted: bool = False) -> list[str]:
        return sorted(s for s in self.subjects if self.versions(s, deleted=deleted))

    def usages(self, schema_id: int, *, deleted: bool = False) -> list[VersionRecord]:
        """Every (subject, version) holding ``schema_id``."""
        return [
            record
            for subject in sorted(self.subjects)
            for record in self.versions(subject, deleted=deleted)
            if record.schema_id == schema_id
        ]

    def next_version(self, subject: str) -> int:
        """One past the highest version, soft-deleted ones included (versions never repeat)."""
        return max(self.subjects.get(subject, {}), default=0) + 1
