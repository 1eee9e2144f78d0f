"""Async client for OpenAI-compatible ``POST /chat/completions``: a batch in, valid results out.

Every call is bounded (timeout), retried on retriable errors with exponential backoff
and full jitter (``Retry-After`` wins on 429), guarded by the circuit breaker, and
limited in concurrency. HTTP errors and statuses are translated here, once, into the
``agents.llm.errors`` tree.

The transport is aiohttp (Faust's own HTTP library), not httpx: measured against the
simulator (``python -m bench.http_client``), one 10-review request costs 328 µs of CPU with
aiohttp and 1,732 µs with httpx (anyio cancel scopes, sniffio, per-request extra-info
lookups). At batch 10 that is about 140 µs per review of the worker's a0 budget (issue 13).

The API key is a ``SecretStr``; its value is read only where the Authorization header is
built and appears in no log, repr or error.

Observers (optional, for metrics): ``on_request(outcome, duration_s)`` is called once per
attempt, ``outcome`` one of :data:`OUTCOMES` (``breaker_open``: the breaker refused, no
HTTP request was made); ``on_retry(outcome, delay_s)`` once per retry, before its backoff.
An observer that raises is logged and ignored: metrics never fail an enrichment.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson
from pydantic import SecretStr

from agents.llm.breaker import CircuitBreaker
from agents.llm.errors import (
    CircuitOpenError,
    LLMClientError,
    LLMConnectionError,
    LLMError,
    LLMMalformedOutputError,
    LLMRateLimitedError,
    LLMServerError,
    LLMTimeoutError,
    parse_retry_after_s,
)
from agents.llm.labels import Enrichment, ReviewInput
from agents.llm.parse import parse_results
from agents.llm.pricing import (
    Prices,
    cost_micro_usd,
    estimate_messages_tokens,
    estimate_tokens,
)
from agents.llm.prompt import (
    MAX_OUTPUT_TOKENS_PER_REVIEW,
    PROMPT_VERSION,
    build_messages,
    response_format,
)

log = logging.getLogger(__name__)

# Outcome label of one attempt, by the error it raised ("ok" when it raised none).
OUTCOME_OF_ERROR: dict[type[LLMError], str] = {
    LLMTimeoutError: "timeout",
    LLMServerError: "server_error",
    LLMRateLimitedError: "rate_limited",
    LLMConnectionError: "connection_error",
    LLMMalformedOutputError: "malformed",
    CircuitOpenError: "breaker_open",
    LLMClientError: "client_error",
}
OUTCOMES = ("ok", *OUTCOME_OF_ERROR.values())

RequestObserver = Callable[[str, float], None]  # (outcome, duration_s)
RetryObserver = Callable[[str, float], None]  # (outcome that is retried, delay_s)


def outcome_of(exc: LLMError) -> str:
    """The outcome label of an LLM error (a subclass maps like its nearest listed base)."""
    for cls in type(exc).__mro__:
        if cls in OUTCOME_OF_ERROR:
            return OUTCOME_OF_ERROR[cls]
    return "client_error"


@dataclass(frozen=True, slots=True)
class BatchResult:
    """One successful batch call: a valid result for every ref, and what it cost."""

    results: dict[str, Enrichment]
    tokens_in: int
    tokens_out: int
    cost_micro_usd: int
    latency_ms: float
    model: str
    prompt_version: str
    attempts: int = 1
    usage_reported: bool = field(default=True)


@dataclass(frozen=True, slots=True)
class Answer:
    """An HTTP answer, read whole: status, headers and body."""

    status_code: int
    headers: Mapping[str, str]
    content: bytes

    def json(self) -> Any:
        """The body as JSON; raises ValueError when it is not (bad UTF-8 included)."""
        return orjson.loads(self.content)


def _error_code(response: Answer) -> str:
    """The provider's short error type/code, never its free text (it may echo input)."""
    try:
        body = response.json()
    except ValueError:
        return "no JSON body"
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        parts = [str(error[k]) for k in ("type", "code") if error.get(k)]
        return "/".join(parts)[:80] or "unspecified"
    return "unspecified"


def _count(value: object) -> int:
    """A token count from ``usage``; anything but a non-negative integer counts as 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


class LLMClient:
    """Batch enrichment over one shared ``aiohttp.ClientSession``; safe for concurrent use."""

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: SecretStr | None = None,
        timeout_s: float = 12.0,  # seed 000 §4.3: TIMEOUT = 12
        max_retries: int = 2,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        price_in_usd_per_mtok: float = 0.0,
        price_out_usd_per_mtok: float = 0.0,
        max_concurrency: int = 4,
        breaker: CircuitBreaker | None = None,
        json_schema: bool = True,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rand: Callable[[], float] = random.random,
        on_request: RequestObserver | None = None,
        on_retry: RetryObserver | None = None,
    ) -> None:
        if timeout_s <= 0 or max_retries < 0 or max_concurrency < 1:
            raise ValueError("timeout_s > 0, max_retries >= 0 and max_concurrency >= 1")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.prices = Prices.from_usd_per_mtok(
            in_usd_per_mtok=price_in_usd_per_mtok, out_usd_per_mtok=price_out_usd_per_mtok
        )
        self.breaker = breaker if breaker is not None else CircuitBreaker()
        self.json_schema = json_schema
        self.prompt_version = PROMPT_VERSION
        self._api_key = api_key
        self._semaphore = asyncio.Semaphore(max_concurrency)
        self._max_connections = max_concurrency * 2
        self._http: aiohttp.ClientSession | None = None  # made on first use, inside the loop
        self._sleep = sleep
        self._rand = rand
        self.on_request = on_request
        self.on_retry = on_retry

    def __repr__(self) -> str:
        key = "set" if self._api_key is not None else "none"
        return f"LLMClient(base_url={self.base_url!r}, model={self.model!r}, api_key={key})"

    async def aclose(self) -> None:
        """Close the HTTP session (its pooled connections)."""
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(  # _post's asyncio.timeout bounds each request
                connector=aiohttp.TCPConnector(limit=self._max_connections),
            )
        return self._http

    async def __aenter__(self) -> LLMClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._api_key is not None:
            headers["Authorization"] = f"Bearer {self._api_key.get_secret_value()}"
        return headers

    def backoff_delay_s(self, attempt: int, *, retry_after_s: float | None = None) -> float:
        """Delay before retry number ``attempt`` (1-based): Retry-After, else full jitter.

        Full jitter (uniform in [0, min(max, base * 2**(attempt-1))]) spreads the retries
        of many workers hit by the same outage instead of synchronising them.
        """
        if retry_after_s is not None:
            return retry_after_s
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return self._rand() * ceiling

    def request_body(self, reviews: Sequence[ReviewInput]) -> dict[str, Any]:
        return {
            "model": self.model,
            "messages": build_messages(reviews),
            "temperature": 0,
            "max_tokens": MAX_OUTPUT_TOKENS_PER_REVIEW * len(reviews) + 64,
            "response_format": response_format(json_schema=self.json_schema),
        }

    async def complete_batch(self, reviews: Sequence[ReviewInput]) -> BatchResult:
        """Enrich ``reviews`` in one chat completion (plus retries).

        Raises an :class:`LLMError`: retriable ones after ``max_retries`` retries (or at
        once for :class:`CircuitOpenError` and for a ``Retry-After`` beyond
        ``backoff_max_s``, which would stall the batch: the caller reschedules instead),
        :class:`LLMMalformedOutputError` with the valid part when the answer breaks the
        contract.
        """
        refs = [r.ref for r in reviews]
        if len(set(refs)) != len(refs):
            raise ValueError("review refs in one batch must be unique")
        if not reviews:
            return BatchResult({}, 0, 0, 0, 0.0, self.model, self.prompt_version, attempts=0)
        body = self.request_body(reviews)
        data = orjson.dumps(body)  # once per call, not per attempt; several times cheaper than json.dumps
        attempt = 0
        while True:
            attempt += 1
            try:
                return await self._attempt(body, data, refs=refs, attempt=attempt)
            except LLMError as exc:
                retry_after_s = exc.retry_after_s if isinstance(exc, LLMRateLimitedError) else None
                give_up = (
                    not exc.retriable
                    or attempt > self.max_retries
                    or isinstance(exc, CircuitOpenError)
                    or (retry_after_s is not None and retry_after_s > self.backoff_max_s)
                )
                if give_up:
                    raise
                delay_s = self.backoff_delay_s(attempt, retry_after_s=retry_after_s)
                self._notify(self.on_retry, outcome_of(exc), delay_s)
                log.info(
                    "llm call failed, retrying: error=%s attempt=%d delay_s=%.3f",
                    type(exc).__name__,
                    attempt,
                    delay_s,
                )
                await self._sleep(delay_s)

    async def _attempt(self, body: dict[str, Any], data: bytes, *, refs: list[str],
                       attempt: int) -> BatchResult:
        async with self._semaphore:
            started = time.perf_counter()
            try:
                with self.breaker.guard():
                    response = await self._post(data)
                    latency_ms = (time.perf_counter() - started) * 1000.0
                    self._raise_for_status(response)
                    result = self._read_answer(
                        response, body=body, refs=refs, latency_ms=latency_ms, attempt=attempt
                    )
            except LLMError as exc:
                self._notify(self.on_request, outcome_of(exc), time.perf_counter() - started)
                raise
            self._notify(self.on_request, "ok", time.perf_counter() - started)
            return result

    @staticmethod
    def _notify(observer: Callable[[str, float], None] | None, outcome: str, seconds: float) -> None:
        if observer is None:
            return
        try:
            observer(outcome, seconds)
        except Exception:  # an observer is for metrics: it must never fail a call
            log.exception("LLM client observer failed (outcome=%s)", outcome)

    async def _post(self, data: bytes) -> Answer:
        url = f"{self.base_url}/chat/completions"
        try:
            async with asyncio.timeout(self.timeout_s):
                async with self._session().post(url, data=data, headers=self._headers()) as response:
                    return Answer(response.status, response.headers, await response.read())
        except TimeoutError as exc:  # aiohttp's own timeouts are TimeoutErrors too
            raise LLMTimeoutError(f"LLM request exceeded {self.timeout_s:g} s") from exc
        except aiohttp.ClientConnectionError as exc:
            raise LLMConnectionError(f"LLM connection failed: {type(exc).__name__}") from exc
        except aiohttp.ClientError as exc:
            raise LLMConnectionError(f"LLM HTTP failure: {type(exc).__name__}") from exc

    def _raise_for_status(self, response: Answer) -> None:
        status = response.status_code
        if status < 400:
            return
        code = _error_code(response)
        if status == 429:
            retry_after_s = parse_retry_after_s(response.headers.get("Retry-After"))
            raise LLMRateLimitedError(
                f"LLM rate limited (HTTP 429, {code})", retry_after_s=retry_after_s
            )
        if status >= 500 or status == 408:
            raise LLMServerError(f"LLM server error (HTTP {status}, {code})", status_code=status)
        raise LLMClientError(
            f"LLM rejected the request (HTTP {status}, {code})", status_code=status
        )

    def _read_answer(
        self,
        response: Answer,
        *,
        body: dict[str, Any],
        refs: list[str],
        latency_ms: float,
        attempt: int,
    ) -> BatchResult:
        try:
            envelope = response.json()
            choice = envelope["choices"][0]
            content = choice["message"].get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError) as exc:
            raise LLMMalformedOutputError(
                "LLM response is not a chat completion envelope", failed_refs=tuple(refs)
            ) from exc
        usage = envelope.get("usage") if isinstance(envelope.get("usage"), dict) else {}
        tokens_in = _count(usage.get("prompt_tokens"))
        tokens_out = _count(usage.get("completion_tokens"))
        if not usage:
            # Some servers omit usage; budgets and costs then run on the chars/4 estimate.
            tokens_in = estimate_messages_tokens(body["messages"])
            tokens_out = estimate_tokens(content if isinstance(content, str) else "")
        cost = cost_micro_usd(tokens_in=tokens_in, tokens_out=tokens_out, prices=self.prices)
        model = str(envelope.get("model") or self.model)
        try:
            if choice.get("finish_reason") == "length":
                raise LLMMalformedOutputError(
                    "LLM answer was truncated (finish_reason=length)", failed_refs=tuple(refs)
                )
            results = parse_results(content, expected_refs=refs)
        except LLMMalformedOutputError as exc:
            exc.tokens_in, exc.tokens_out, exc.cost_micro_usd = tokens_in, tokens_out, cost
            exc.latency_ms, exc.model = latency_ms, model
            raise
        return BatchResult(
            results=results,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_micro_usd=cost,
            latency_ms=latency_ms,
            model=model,
            prompt_version=self.prompt_version,
            attempts=attempt,
            usage_reported=bool(usage),
        )
