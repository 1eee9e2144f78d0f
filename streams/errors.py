"""The root of every error ReviewPulse raises.

Each package's ``errors.py`` subclasses :class:`ReviewPulseError`, so a caller can
catch everything of ours in one ``except`` and nothing foreign::

    ReviewPulseError
    ├── SettingsError                       (streams.settings: invalid configuration)
    ├── schema_registry.errors.SchemaRegistryError
    │   ├── RegistryHTTPError               (an error answer, or none: retriable, retry_after_s)
    │   ├── SerdeError                      (bytes or values that break the wire format)
    │   │   ├── UnknownMagicByteError, TruncatedPayloadError, UnknownSchemaIdError
    │   │   └── SchemaMismatchError, LogicalTypeMismatchError, RecordEncodeError
    │   ├── InvalidSchemaError, IncompatibleSchemaError
    │   └── RegistryStoreError              (the embedded registry's _schemas topic)
    ├── streams.validation.Invalid          (a decoded value breaks a rule: reason for the DLQ)
    ├── streams.protocol.ProtocolError      (a by-restaurant record we cannot read: its reason)
    ├── streams.admin.TopicSetupError       (a topic is missing and could not be created)
    ├── OutputTooLarge                      (Kafka refused an output for its size: not retriable)
    └── agents.llm.errors.LLMError          (retriable flag, retry_after_s)
        ├── LLMTimeoutError, LLMServerError, LLMRateLimitedError, LLMConnectionError
        ├── CircuitOpenError                (the breaker is open: no call was made)
        └── LLMClientError, LLMMalformedOutputError

Errors carry a ``retriable`` flag: retry code reads the flag instead of chaining
``isinstance`` checks (the aiokafka habit), and ``retry_after_s`` where a server said when
to come back (:func:`parse_retry_after_s` reads its header, for the LLM and the registry).
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from datetime import UTC, datetime


class ReviewPulseError(Exception):
    """Base of every ReviewPulse error."""

    retriable: bool = False


class OutputTooLarge(ReviewPulseError):
    """An output Kafka refuses for its size (streams.delivery translates the producer's and
    the broker's errors): sending it again fails again, so it is its record's dead letter."""

    retriable = False
    reason = "output_too_large"


def parse_retry_after_s(
    value: str | None, *, now: Callable[[], datetime] | None = None
) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3).

    None when absent or unreadable ("inf" and "nan" included: a wait must be a number).
    """
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return max(seconds, 0.0) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    current = now() if now is not None else datetime.now(UTC)
    return max((when - current).total_seconds(), 0.0)
