"""The LLM error tree: every failure the LLM path can raise, with a retry flag.

Foreign errors (httpx, JSON, HTTP status codes) are translated once, in
``agents.llm.client``, into exactly one of these::

    ReviewPulseError                      (streams.errors)
    └── LLMError                          retriable, retry_after_s
        ├── LLMTimeoutError               retriable: the request exceeded timeout_s
        ├── LLMServerError                retriable: HTTP 5xx (or 408)
        ├── LLMRateLimitedError           retriable: HTTP 429, retry_after_s from Retry-After
        ├── LLMConnectionError            retriable: connect/read/protocol failure
        ├── CircuitOpenError              retriable: breaker open, retry_after_s = time to half-open
        ├── LLMMalformedOutputError       not retriable as is: split the batch and re-ask
        └── LLMClientError                not retriable: HTTP 4xx other than 429 (auth, bad request)

Retry code reads ``retriable`` and ``retry_after_s``; it never chains ``isinstance``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from streams.errors import ReviewPulseError
from streams.errors import parse_retry_after_s as parse_retry_after_s  # its home since the registry's 429s

if TYPE_CHECKING:
    from agents.llm.labels import Enrichment


class LLMError(ReviewPulseError):
    """Base of every LLM failure; ``retry_after_s`` is a server or breaker hint, if any."""

    retriable: bool = False

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class LLMTimeoutError(LLMError):
    """The request took longer than the client's ``timeout_s`` (a slow or hung model)."""

    retriable = True


class LLMServerError(LLMError):
    """The server answered 5xx: its problem, a later attempt may succeed."""

    retriable = True

    def __init__(
        self, message: str, *, status_code: int, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.status_code = status_code


class LLMRateLimitedError(LLMError):
    """HTTP 429: the provider asks us to slow down, for ``retry_after_s`` when it says so."""

    retriable = True


class LLMConnectionError(LLMError):
    """No usable HTTP exchange happened (refused, reset, protocol error)."""

    retriable = True


class CircuitOpenError(LLMError):
    """The breaker rejected the call without trying, so a dead provider costs nothing."""

    retriable = True


class LLMClientError(LLMError):
    """HTTP 4xx other than 429: the same request will fail again (bad key, bad request)."""

    retriable = False

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class LLMMalformedOutputError(LLMError):
    """The model answered, but not per the contract for some or all refs.

    Re-sending the same batch is pointless, so it is not retriable; the enricher keeps
    ``valid_results``, splits ``failed_refs`` and re-asks. The usage fields carry what
    the failed call cost, because a malformed answer is still billed.
    """

    retriable = False

    def __init__(
        self,
        message: str,
        *,
        failed_refs: tuple[str, ...],
        valid_results: Mapping[str, Enrichment] | None = None,
    ) -> None:
        super().__init__(message)
        self.failed_refs = failed_refs
        self.valid_results: dict[str, Enrichment] = dict(valid_results or {})
        self.tokens_in = 0
        self.tokens_out = 0
        self.cost_micro_usd = 0
        self.latency_ms = 0.0
        self.model: str | None = None
