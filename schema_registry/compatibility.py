"""Schema-evolution decisions for the seven registry compatibility levels, by Avro's own checker.

The reader/writer check is Apache ``avro``'s ``ReaderWriterCompatibilityChecker`` (the
port of Java Avro's ``SchemaCompatibility``, which Confluent's registry uses too). This
module only chooses which pairs to check:

=====================  ==============================================================
level                  the new schema must ...
=====================  ==============================================================
NONE                   (nothing is checked)
BACKWARD (default)     read data written with the latest version (new = reader)
FORWARD                be readable by the latest version (new = writer)
FULL                   both of the above
*_TRANSITIVE           the same, against every registered version, not only the latest
=====================  ==============================================================
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from enum import StrEnum

import avro.errors
import avro.schema
from avro.compatibility import (
    ReaderWriterCompatibilityChecker,
    SchemaCompatibilityResult,
    SchemaCompatibilityType,
)

from schema_registry.errors import IncompatibleSchemaError, InvalidSchemaError


class CompatibilityLevel(StrEnum):
    """The registry's compatibility levels, spelled as the REST API spells them."""

    NONE = "NONE"
    BACKWARD = "BACKWARD"
    BACKWARD_TRANSITIVE = "BACKWARD_TRANSITIVE"
    FORWARD = "FORWARD"
    FORWARD_TRANSITIVE = "FORWARD_TRANSITIVE"
    FULL = "FULL"
    FULL_TRANSITIVE = "FULL_TRANSITIVE"

    @property
    def transitive(self) -> bool:
        return self.value.endswith("_TRANSITIVE")

    @property
    def checks_backward(self) -> bool:
        return self.value.startswith(("BACKWARD", "FULL"))

    @property
    def checks_forward(self) -> bool:
        return self.value.startswith(("FORWARD", "FULL"))

    @classmethod
    def parse(cls, text: str) -> CompatibilityLevel:
        """The level named by ``text`` (any case); ValueError if there is none."""
        return cls(text.strip().upper())


DEFAULT_LEVEL = CompatibilityLevel.BACKWARD  # Confluent's default


def parse_avro(schema_str: str) -> avro.schema.Schema:
    """Parse with Apache avro (the checker's own model); InvalidSchemaError if invalid."""
    try:
        with warnings.catch_warnings():
            # An unknown logicalType is legal Avro (readers fall back to the base type),
            # and avro warns about it; the registry accepts such schemas like Confluent's.
            warnings.simplefilter("ignore", avro.errors.IgnoredLogicalType)
            return avro.schema.parse(schema_str)
    except (avro.errors.AvroException, json.JSONDecodeError, TypeError, ValueError) as exc:
        raise InvalidSchemaError(f"invalid Avro schema: {exc}") from exc


def _describe(result: SchemaCompatibilityResult, label: str) -> str:
    kinds = ", ".join(sorted({kind.name.upper() for kind in result.incompatibilities}))
    where = ", ".join(sorted(result.locations))
    what = "; ".join(sorted(result.messages))
    return f"{label}: {kinds} at {where}: {what}"


def check_pair(*, reader: avro.schema.Schema, writer: avro.schema.Schema) -> list[str]:
    """Messages explaining why ``reader`` cannot read ``writer``'s data; empty if it can."""
    # A fresh checker per pair: the checker memoizes results per instance.
    result = ReaderWriterCompatibilityChecker().get_compatibility(reader, writer)
    if result.compatibility is SchemaCompatibilityType.compatible:
        return []
    return [_describe(result, "reader cannot read writer")]


def check(
    new: avro.schema.Schema,
    previous: Sequence[avro.schema.Schema],
    level: CompatibilityLevel | str = DEFAULT_LEVEL,
    *,
    versions: Sequence[int] | None = None,
) -> list[str]:
    """Messages explaining why ``new`` breaks ``level`` against ``previous``; empty if it doesn't.

    ``previous`` is the subject's live versions, oldest first; non-transitive levels look
    only at the last one. An empty ``previous`` (a new subject) is always compatible.
    ``versions`` (same length) only labels the messages; by default 1, 2, ...
    """
    level = CompatibilityLevel.parse(level) if isinstance(level, str) else level
    if level is CompatibilityLevel.NONE or not previous:
        return []
    labels = list(versions) if versions is not None else list(range(1, len(previous) + 1))
    pairs = list(zip(labels, previous, strict=True))
    messages: list[str] = []
    for version, old in pairs if level.transitive else pairs[-1:]:
        if level.checks_backward:
            for message in check_pair(reader=new, writer=old):
                messages.append(f"BACKWARD vs version {version}: new schema as {message}")
        if level.checks_forward:
            for message in check_pair(reader=old, writer=new):
                messages.append(f"FORWARD vs version {version}: old schema as {message}")
    return messages


def ensure_compatible(
    subject: str,
    new: avro.schema.Schema,
    previous: Sequence[avro.schema.Schema],
    level: CompatibilityLevel | str = DEFAULT_LEVEL,
    *,
    versions: Sequence[int] | None = None,
) -> None:
    """Raise IncompatibleSchemaError if ``new`` breaks ``level`` for ``subject``."""
    messages = check(new, previous, level, versions=versions)
    if messages:
        raise IncompatibleSchemaError(subject, messages)
