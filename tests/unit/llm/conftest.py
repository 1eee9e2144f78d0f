"""Fixtures for the LLM library tests: a fake clock, a recording sleep, a live simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from agents.llm.breaker import CircuitBreaker
from agents.llm.client import LLMClient
from agents.llm.simulator import STATE_KEY, SimulatorConfig, SimulatorState, start_simulator

TEST_API_KEY = "sk-test-DO-NOT-LEAK-7f3a9c"


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingSleep:
    """Stands in for asyncio.sleep: records the delays, returns at once."""

    delays: list[float] = field(default_factory=list)

    async def __call__(self, delay_s: float) -> None:
        self.delays.append(delay_s)


@dataclass
class Simulator:
    port: int
    state: SimulatorState

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        return list(self.state.requests)

    def script(self, *outcomes: str) -> None:
        self.state.update({"script": list(outcomes)})


@pytest.fixture
def api_key_value() -> str:
    """The plaintext test key, to assert it never leaks."""
    return TEST_API_KEY


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def recording_sleep() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    runner, port = await start_simulator(config=SimulatorConfig(latency_ms=1.0, seed=7))
    try:
        yield Simulator(port=port, state=runner.app[STATE_KEY])
    finally:
        await runner.cleanup()


@pytest.fixture
async def make_client(
    simulator: Simulator, recording_sleep: RecordingSleep, clock: FakeClock
) -> AsyncIterator[Callable[..., LLMClient]]:
    """Factory: an LLMClient on the simulator; a test overrides only what it is about."""
    made: list[LLMClient] = []

    def factory(**overrides: Any) -> LLMClient:
        options: dict[str, Any] = {
            "base_url": simulator.base_url,
            "model": "sim-model",
            "api_key": SecretStr(TEST_API_KEY),
            "timeout_s": 2.0,
            "max_retries": 2,
            "backoff_base_s": 0.1,
            "backoff_max_s": 5.0,
            "price_in_usd_per_mtok": 0.15,
            "price_out_usd_per_mtok": 0.60,
            "breaker": CircuitBreaker(failure_threshold=50, reset_timeout_s=30.0, clock=clock),
            "sleep": recording_sleep,
            "rand": lambda: 0.5,
        }
        options.update(overrides)
        client = LLMClient(**options)
        made.append(client)
        return client

    yield factory
    for client in made:
        await client.aclose()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client
