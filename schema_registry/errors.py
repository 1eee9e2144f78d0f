"""The schema registry package's errors: registry answers, wire-format faults, incompatibility.

::

    ReviewPulseError
    └── SchemaRegistryError
        ├── RegistryHTTPError          status, error_code, message; retriable for 5xx / no answer
        ├── SerdeError                 reason: a short machine string the DLQ routes by
        │   ├── UnknownMagicByteError      reason "unknown_magic_byte"
        │   ├── TruncatedPayloadError      reason "truncated_payload"
        │   ├── UnknownSchemaIdError       reason "unknown_schema_id"
        │   ├── SchemaMismatchError        reason "undecodable" (bytes do not fit the schema)
        │   ├── LogicalTypeMismatchError   reason "logical_type_mismatch" (a writer's date or
        │   │                              time where the reader needs a timestamp)
        │   └── RecordEncodeError          reason "unencodable" (a value does not fit the schema)
        ├── InvalidSchemaError         a schema string that does not parse as Avro
        ├── IncompatibleSchemaError    subject, messages
        └── RegistryStoreError         the embedded server's ``_schemas`` topic failed (retriable)

Foreign errors (httpx, fastavro, avro, struct) are translated into these once, where
they are caught, with ``raise ... from exc`` so the cause stays visible.
"""

from __future__ import annotations

from collections.abc import Sequence

from streams.errors import ReviewPulseError


class SchemaRegistryError(ReviewPulseError):
    """Base of every error of the schema registry package."""


class RegistryHTTPError(SchemaRegistryError):
    """A registry answered with an error body, or did not answer at all.

    ``status`` is ``None`` when no HTTP answer arrived (connection refused, timeout);
    ``error_code`` is the registry's own code (40401, 42201, ...) when its body had one.
    Retriable when the registry may answer differently later: 5xx or no answer.
    """

    def __init__(self, message: str, *, status: int | None, error_code: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code
        self.retriable = status is None or status >= 500

    def __str__(self) -> str:
        return f"{self.message} (status={self.status}, error_code={self.error_code})"


class SerdeError(SchemaRegistryError):
    """Bytes or values that do not fit the Confluent wire format or their schema.

    ``reason`` is stable and short: the dead-letter queue and its metric label use it.
    """

    reason: str = "serde_error"


class UnknownMagicByteError(SerdeError):
    """The first byte is not the Confluent magic byte 0: not a registry-framed record."""

    reason = "unknown_magic_byte"


class TruncatedPayloadError(SerdeError):
    """Fewer than the 5 bytes of magic byte plus schema id."""

    reason = "truncated_payload"


class UnknownSchemaIdError(SerdeError):
    """The frame names a schema id the registry (or the local cache) does not know."""

    reason = "unknown_schema_id"

    def __init__(self, schema_id: int, message: str | None = None):
        super().__init__(message or f"unknown schema id {schema_id}")
        self.schema_id = schema_id


class SchemaMismatchError(SerdeError):
    """The payload does not decode with its writer schema (or resolve to the reader's)."""

    reason = "undecodable"


class LogicalTypeMismatchError(SerdeError):
    """The writer's type of a reader ``timestamp-millis`` field cannot be read as one
    (``date``, ``time-millis``...): see :mod:`schema_registry.timestamps`."""

    reason = "logical_type_mismatch"


class RecordEncodeError(SerdeError):
    """A value does not fit the schema it is being encoded with."""

    reason = "unencodable"


class InvalidSchemaError(SchemaRegistryError):
    """A schema string that is not valid JSON or not a valid Avro schema."""


class IncompatibleSchemaError(SchemaRegistryError):
    """A schema change breaks the subject's compatibility level."""

    def __init__(self, subject: str, messages: Sequence[str]):
        self.subject = subject
        self.messages = list(messages)
        detail = "; ".join(self.messages) or "no detail given"
        super().__init__(f"schema is incompatible with subject {subject!r}: {detail}")


class RegistryStoreError(SchemaRegistryError):
    """The embedded registry server could not read or write its ``_schemas`` topic."""

    retriable = True
