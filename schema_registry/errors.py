"""The schema registry package's errors: registry answers, wire-format faults, incompatibility.

::

    ReviewPulseError
    └── SchemaRegistryError
        ├── RegistryHTTPError          status, error_code, message, reason; retriable unless
        │                              the registry refused the request itself (see the class);
        │                              retry_after_s from Retry-After
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


# Why a request got no answer it could use, as a short machine string: a retriable one is the
# label of reviewpulse_registry_waits_total{reason} (streams.metrics starts a series for each).
RETRIABLE_REASONS = ("no_answer", "server_error", "timeout", "rate_limited", "unauthorized",
                     "forbidden", "path_not_found", "redirected", "unexpected_answer")
DEFINITE_REASONS = ("not_found", "refused")
_STATUS_REASONS = {408: "timeout", 429: "rate_limited", 401: "unauthorized", 403: "forbidden"}


def _reason(status: int | None, error_code: int | None) -> str:
    if status is None:
        return "no_answer"
    if status >= 500:
        return "server_error"
    if status in _STATUS_REASONS:
        return _STATUS_REASONS[status]
    if status == 404:  # the registry's own codes: 40401 subject, 40402 version, 40403 schema...
        registry_says = error_code is not None and 40400 <= error_code <= 40499
        return "not_found" if registry_says else "path_not_found"
    if status < 300:
        return "unexpected_answer"
    if status < 400:
        return "redirected"
    return "refused"


class RegistryHTTPError(SchemaRegistryError):
    """A registry answered with an error body, or did not answer at all.

    ``status`` is ``None`` when no HTTP answer arrived (connection refused, timeout);
    ``error_code`` is the registry's own code (40401, 42201, ...) when its body had one;
    ``retry_after_s`` is its ``Retry-After`` (a 429's or a 503's) in seconds, if it sent one.

    ``retriable`` is False only when the registry understood this request and refused it
    (``reason`` ``refused`` or ``not_found``): a 4xx other than those below. Asking again
    may be answered differently, so it is retriable, when (``reason``):

    - no answer arrived (``no_answer``) or the registry failed (5xx, ``server_error``);
    - 408 (``timeout``) or 429 (``rate_limited``): the registry asks us to come back;
    - 401 (``unauthorized``) or 403 (``forbidden``): credentials or ACLs, which an operator
      fixes without touching the request (DESIGN §12: they wait, like an outage);
    - a 404 without one of the registry's own 404xx codes (``path_not_found``): a wrong base
      URL path, a proxy's page, or Confluent's ``error_code`` 404 for a route it does not
      have. Every conforming registry (Confluent, Karapace, Apicurio, Redpanda, ours) says
      "not found" about a subject, version or schema with 40401, 40402 or 40403, so a bare
      404 says we did not reach the API we meant to, nothing about what we asked for; made
      definite, one wrong URL would dead-letter every record of a new writer version;
    - a 3xx (``redirected``): httpx follows no redirect, and a registry moved to another
      URL (http to https, a new host) is a configuration to fix, not an answer;
    - a 2xx whose body is not the answer the API defines (``unexpected_answer``): a web
      server that serves a page for any path, again not the registry.
    """

    def __init__(self, message: str, *, status: int | None, error_code: int | None = None,
                 retry_after_s: float | None = None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.error_code = error_code
        self.retry_after_s = retry_after_s
        self.reason = _reason(status, error_code)
        self.retriable = self.reason in RETRIABLE_REASONS

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
