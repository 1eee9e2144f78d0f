"""OpenAI-compatible LLM simulator (aiohttp) answering from the heuristic, with failure knobs.

It is the embedded default for the demo, the tests and the benchmarks (DESIGN.md §5):
the real client path (HTTP, JSON schema, usage, retries) runs against it. Failures are
drawn from a seeded RNG so a run is reproducible, and ``script`` forces the outcome of
the next requests for tests that need an exact sequence. Knobs change at runtime via
``POST /_sim/config``; every request body is recorded for ``GET /_sim/requests``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from dataclasses import asdict

from aiohttp import web

from agents.llm.pricing import CHARS_PER_TOKEN, estimate_messages_tokens
from agents.llm.simbehaviour import (
    MALFORMED_KINDS,
    OUTCOMES,
    SimulatorConfig,
    SimulatorState,
    answer_content,
    reviews_in,
    text_of,
)

__all__ = [
    "MALFORMED_KINDS",
    "OUTCOMES",
    "STATE_KEY",
    "SimulatorConfig",
    "SimulatorState",
    "answer_content",
    "build_app",
    "run_simulator",
    "start_simulator",
]

log = logging.getLogger(__name__)

STATE_KEY = web.AppKey("reviewpulse_llm_sim_state", SimulatorState)


def _error(status: int, message: str, kind: str, **headers: str) -> web.Response:
    body = {"error": {"message": message, "type": kind, "code": kind}}
    return web.json_response(body, status=status, headers=headers or None)


async def _chat_completions(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _error(400, "request body is not JSON", "invalid_request_error")
    state.requests.append(body)
    messages = body.get("messages") if isinstance(body, dict) else None
    if not isinstance(messages, list) or not messages:
        return _error(400, "messages is required", "invalid_request_error")
    cfg = state.config
    outcome = state.next_outcome()
    delay_ms = cfg.latency_ms + (state.rng.random() * cfg.jitter_ms if cfg.jitter_ms else 0.0)
    if outcome == "hang":
        delay_ms = cfg.hang_s * 1000.0
    if delay_ms:
        # Wake early on shutdown so a hung request never holds up the runner's cleanup.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(state.stopping.wait(), timeout=delay_ms / 1000.0)
    if outcome == "500":
        return _error(500, "simulated server error", "server_error")
    if outcome == "429":
        return _error(
            429,
            "simulated rate limit",
            "rate_limit_exceeded",
            **{"Retry-After": f"{cfg.retry_after_s:g}"},
        )
    if outcome == "hang":
        return _error(504, "simulated hang ended", "timeout")
    user_text = "\n".join(
        text_of(m.get("content"))
        for m in messages
        if isinstance(m, dict) and m.get("role") == "user"
    )
    try:
        reviews = reviews_in(user_text)
    except ValueError as exc:
        return _error(400, f"cannot find reviews in the prompt: {exc}", "invalid_request_error")
    content = answer_content(reviews, outcome)
    state.completions += 1
    prompt_tokens = estimate_messages_tokens([m for m in messages if isinstance(m, dict)])
    completion_tokens = math.ceil(len(content) / CHARS_PER_TOKEN)
    return web.json_response(
        {
            "id": f"chatcmpl-sim-{state.completions}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": cfg.model,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": content},
                    "finish_reason": "stop",
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }
    )


async def _models(request: web.Request) -> web.Response:
    model = request.app[STATE_KEY].config.model
    return web.json_response(
        {
            "object": "list",
            "data": [{"id": model, "object": "model", "owned_by": "reviewpulse-sim"}],
        }
    )


async def _health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _get_config(request: web.Request) -> web.Response:
    return web.json_response(asdict(request.app[STATE_KEY].config))


async def _post_config(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        changes = await request.json()
        if not isinstance(changes, dict):
            raise ValueError("config must be a JSON object")
        state.update(changes)
    except (ValueError, TypeError) as exc:
        return _error(400, str(exc), "invalid_config")
    return web.json_response(asdict(state.config))


async def _get_requests(request: web.Request) -> web.Response:
    return web.json_response(list(request.app[STATE_KEY].requests))


async def _clear_requests(request: web.Request) -> web.Response:
    request.app[STATE_KEY].requests.clear()
    return web.json_response({"cleared": True})


async def _on_shutdown(app: web.Application) -> None:
    app[STATE_KEY].stopping.set()


def build_app(config: SimulatorConfig | None = None) -> web.Application:
    """The aiohttp application; build it inside a running event loop."""
    app = web.Application()
    app[STATE_KEY] = SimulatorState(config or SimulatorConfig())
    app.router.add_post("/v1/chat/completions", _chat_completions)
    app.router.add_get("/v1/models", _models)
    app.router.add_get("/health", _health)
    app.router.add_get("/_sim/config", _get_config)
    app.router.add_post("/_sim/config", _post_config)
    app.router.add_get("/_sim/requests", _get_requests)
    app.router.add_delete("/_sim/requests", _clear_requests)
    app.on_shutdown.append(_on_shutdown)
    return app


async def start_simulator(
    host: str = "127.0.0.1", port: int = 0, config: SimulatorConfig | None = None
) -> tuple[web.AppRunner, int]:
    """Start on ``host:port`` (0 = a free port); returns the runner and the bound port.

    Stop it with ``await runner.cleanup()``; ``runner.app[STATE_KEY]`` is the live state.
    """
    runner = web.AppRunner(build_app(config), shutdown_timeout=1.0, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    log.info("llm simulator listening on http://%s:%d/v1", host, bound_port)
    return runner, bound_port


def run_simulator(
    host: str = "127.0.0.1", port: int = 8000, config: SimulatorConfig | None = None
) -> None:
    """Serve until interrupted (``reviewpulse llm-sim --port P``)."""

    async def _app() -> web.Application:
        return build_app(config)

    web.run_app(_app(), host=host, port=port, shutdown_timeout=1.0, print=None)
