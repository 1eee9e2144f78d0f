"""LLMClient against the real simulator on a free port: retries, 429, timeouts, breaker, secrets."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from agents.llm.breaker import BreakerState, CircuitBreaker
from agents.llm.client import BatchResult, LLMClient
from agents.llm.errors import (
    CircuitOpenError,
    LLMClientError,
    LLMConnectionError,
    LLMMalformedOutputError,
    LLMRateLimitedError,
    LLMServerError,
    LLMTimeoutError,
    parse_retry_after_s,
)
from agents.llm.labels import ReviewInput
from agents.llm.prompt import PROMPT_VERSION

REVIEWS = [
    ReviewInput("r1", "Demorou demais. A comida chegou fria.", 2),
    ReviewInput("r2", "Great food, delicious!", 5),
]


async def test_success_returns_results_usage_and_integer_cost(make_client, simulator) -> None:
    client = make_client()
    result = await client.complete_batch(REVIEWS)
    assert set(result.results) == {"r1", "r2"}
    assert result.results["r1"].label == "NEGATIVE"
    assert result.tokens_in > 100 and result.tokens_out > 20
    expected_cost = -(-result.tokens_in * 150_000 // 10**6) + -(
        -result.tokens_out * 600_000 // 10**6
    )
    assert result.cost_micro_usd == expected_cost
    assert result.latency_ms > 0
    assert (result.model, result.prompt_version, result.attempts) == (
        "reviewpulse-sim-1",
        PROMPT_VERSION,
        1,
    )
    (body,) = simulator.requests
    assert body["temperature"] == 0
    assert body["response_format"]["type"] == "json_schema"


async def test_json_object_mode_is_a_config_flag(make_client, simulator) -> None:
    await make_client(json_schema=False).complete_batch(REVIEWS)
    assert simulator.requests[0]["response_format"] == {"type": "json_object"}


async def test_hang_times_out_after_all_retries(make_client, simulator, recording_sleep) -> None:
    simulator.script("hang", "hang", "hang")
    client = make_client(timeout_s=0.2, max_retries=2)
    with pytest.raises(LLMTimeoutError) as info:
        await client.complete_batch(REVIEWS)
    assert info.value.retriable
    assert len(simulator.requests) == 3
    assert len(recording_sleep.delays) == 2


async def test_500_is_retried_with_jittered_backoff_then_succeeds(
    make_client, simulator, recording_sleep
) -> None:
    simulator.script("500", "500", "ok")
    result = await make_client(max_retries=2, backoff_base_s=0.1).complete_batch(REVIEWS)
    assert result.attempts == 3
    # rand() = 0.5: half of the full-jitter ceiling base * 2**(attempt - 1).
    assert recording_sleep.delays == pytest.approx([0.05, 0.1])


async def test_500_beyond_retries_raises_server_error(make_client, simulator) -> None:
    simulator.script("500", "500", "500")
    with pytest.raises(LLMServerError) as info:
        await make_client(max_retries=2).complete_batch(REVIEWS)
    assert info.value.status_code == 500 and info.value.retriable


async def test_429_waits_exactly_retry_after(make_client, simulator, recording_sleep) -> None:
    simulator.state.update({"retry_after_s": 1.5})
    simulator.script("429", "ok")
    result = await make_client().complete_batch(REVIEWS)
    assert result.attempts == 2
    assert recording_sleep.delays == [1.5]


async def test_429_with_retry_after_beyond_backoff_max_is_raised_for_rescheduling(
    make_client, simulator, recording_sleep
) -> None:
    simulator.state.update({"retry_after_s": 30})
    simulator.script("429")
    with pytest.raises(LLMRateLimitedError) as info:
        await make_client(backoff_max_s=5.0).complete_batch(REVIEWS)
    assert info.value.retry_after_s == 30.0
    assert recording_sleep.delays == []


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2025, 1, 5, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after_s("7") == 7.0
    assert parse_retry_after_s("Sun, 05 Jan 2025 12:00:30 GMT", now=lambda: now) == 30.0
    assert parse_retry_after_s("Sun, 05 Jan 2025 11:00:00 GMT", now=lambda: now) == 0.0
    assert parse_retry_after_s("soon") is None
    assert parse_retry_after_s(None) is None


async def test_malformed_output_is_not_retried_and_carries_usage(make_client, simulator) -> None:
    simulator.script("bad_label")
    with pytest.raises(LLMMalformedOutputError) as info:
        await make_client().complete_batch(REVIEWS)
    assert info.value.failed_refs == ("r1",)
    assert set(info.value.valid_results) == {"r2"}
    assert info.value.tokens_in > 0 and info.value.cost_micro_usd > 0
    assert len(simulator.requests) == 1


async def test_connection_refused_is_a_connection_error(make_client) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = make_client(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    with pytest.raises(LLMConnectionError) as info:
        await client.complete_batch(REVIEWS)
    assert isinstance(info.value.__cause__, aiohttp.ClientConnectorError)


async def test_breaker_opens_against_a_failing_simulator_and_recovers(
    make_client, simulator, clock, http
) -> None:
    breaker = CircuitBreaker(failure_threshold=2, reset_timeout_s=5.0, clock=clock)
    client = make_client(breaker=breaker, max_retries=0)
    await http.post(f"http://127.0.0.1:{simulator.port}/_sim/config", json={"error_500_rate": 1.0})
    for _ in range(2):
        with pytest.raises(LLMServerError):
            await client.complete_batch(REVIEWS)
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError) as info:
        await client.complete_batch(REVIEWS)
    assert info.value.retry_after_s == pytest.approx(5.0)
    assert len(simulator.requests) == 2  # rejected without touching the network

    response = await http.post(
        f"http://127.0.0.1:{simulator.port}/_sim/config", json={"error_500_rate": 0.0}
    )
    assert response.json()["error_500_rate"] == 0.0
    clock.advance(5.0)
    assert breaker.state is BreakerState.HALF_OPEN
    result = await client.complete_batch(REVIEWS)
    assert set(result.results) == {"r1", "r2"}
    assert breaker.state is BreakerState.CLOSED


async def test_api_key_never_appears_in_logs_reprs_or_errors(
    make_client, simulator, caplog, api_key_value
) -> None:
    secret = api_key_value
    caplog.set_level(logging.DEBUG)
    client = make_client(max_retries=1)
    await client.complete_batch(REVIEWS)
    simulator.script("500", "500")
    with pytest.raises(LLMServerError) as info:
        await client.complete_batch(REVIEWS)
    assert caplog.records, "expected the client's records of its retries"
    assert secret not in caplog.text
    assert secret not in repr(client) and secret not in str(vars(client))
    assert secret not in str(info.value) and secret not in repr(info.value)
    assert secret not in str(simulator.requests)


@contextlib.asynccontextmanager
async def serving(handler: Callable[[web.Request], web.Response]) -> AsyncIterator[str]:
    """An HTTP server on a free port whose every POST ``handler`` answers; yields its base URL."""

    async def route(request: web.Request) -> web.Response:
        return handler(request)

    app = web.Application()
    app.router.add_post("/{path:.*}", route)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        await runner.cleanup()


async def test_key_is_sent_as_bearer_and_4xx_is_not_retried(recording_sleep, api_key_value) -> None:
    secret = api_key_value
    seen: list[str] = []

    def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("Authorization", ""))
        body = {"error": {"message": f"bad key {secret}", "type": "invalid_api_key"}}
        return web.json_response(body, status=401)

    async with serving(handler) as base_url:
        client = LLMClient(base_url=base_url, model="m", api_key=SecretStr(secret), sleep=recording_sleep)
        async with client:
            with pytest.raises(LLMClientError) as info:
                await client.complete_batch(REVIEWS)
    assert seen == [f"Bearer {secret}"]
    assert info.value.status_code == 401 and not info.value.retriable
    assert "invalid_api_key" in str(info.value)
    assert secret not in str(info.value)
    assert recording_sleep.delays == []


async def test_concurrent_batches_share_one_client(make_client, simulator) -> None:
    client = make_client(max_concurrency=2)
    batches = [
        [ReviewInput(f"b{i}-{j}", f"texto {i} {j} bom", 4) for j in range(3)] for i in range(6)
    ]
    results = await asyncio.gather(*(client.complete_batch(b) for b in batches))
    assert [len(r.results) for r in results] == [3] * 6
    assert len(simulator.requests) == 6


async def complete_against(handler, recording_sleep) -> BatchResult:
    """``REVIEWS`` enriched by a client whose server answers with ``handler``."""
    async with serving(handler) as base_url:
        client = LLMClient(base_url=base_url, model="m", sleep=recording_sleep, price_in_usd_per_mtok=1.0)
        async with client:
            return await client.complete_batch(REVIEWS)


async def test_missing_usage_falls_back_to_the_chars_per_token_estimate(recording_sleep) -> None:
    content = json.dumps(
        {
            "results": [
                {"ref": r.ref, "label": "NEUTRAL", "score": 0, "categories": [], "reply_draft": ""}
                for r in REVIEWS
            ]
        }
    )

    def handler(request: web.Request) -> web.Response:
        return web.json_response({"choices": [{"message": {"content": content}}]})

    result = await complete_against(handler, recording_sleep)
    assert not result.usage_reported
    assert result.tokens_in > 100 and result.tokens_out == -(-len(content) // 4)
    assert result.cost_micro_usd == result.tokens_in  # 1 USD per 1M tokens = 1 micro-USD each
    assert result.model == "m"


async def test_non_chat_envelope_is_malformed_output(recording_sleep) -> None:
    def handler(request: web.Request) -> web.Response:
        return web.Response(text="<html>proxy login</html>", content_type="text/html")

    with pytest.raises(LLMMalformedOutputError, match="envelope") as info:
        await complete_against(handler, recording_sleep)
    assert info.value.failed_refs == ("r1", "r2")
