"""The simulator's HTTP surface: models, health, runtime config, recorded requests, concurrency."""

from __future__ import annotations

import asyncio
import time

from agents.llm.labels import ReviewInput
from agents.llm.simulator import SimulatorConfig, SimulatorState


async def test_models_and_health(simulator, http) -> None:
    base = f"http://127.0.0.1:{simulator.port}"
    models = (await http.get(f"{base}/v1/models")).json()
    assert models["data"][0]["id"] == "reviewpulse-sim-1"
    assert (await http.get(f"{base}/health")).json() == {"status": "ok"}


async def test_config_changes_at_runtime_and_rejects_bad_values(simulator, http) -> None:
    url = f"http://127.0.0.1:{simulator.port}/_sim/config"
    changed = await http.post(url, json={"malformed_rate": 0.5, "malformed_kind": "wrong_count"})
    assert changed.status_code == 200 and changed.json()["malformed_rate"] == 0.5
    assert (await http.post(url, json={"hang_rate": 2})).status_code == 400
    assert (await http.post(url, json={"nonsense": 1})).status_code == 400
    assert (await http.post(url, json={"malformed_kind": "weird"})).status_code == 400
    assert (await http.get(url)).json()["malformed_kind"] == "wrong_count"


async def test_recorded_requests_can_be_listed_and_cleared(make_client, simulator, http) -> None:
    await make_client().complete_batch([ReviewInput("a", "bom", 4)])
    url = f"http://127.0.0.1:{simulator.port}/_sim/requests"
    recorded = (await http.get(url)).json()
    assert len(recorded) == 1 and recorded[0]["model"] == "sim-model"
    assert (await http.delete(url)).status_code == 200
    assert (await http.get(url)).json() == []


async def test_usage_scales_with_prompt_and_answer_size(make_client) -> None:
    client = make_client()
    small = await client.complete_batch([ReviewInput("a", "bom", 4)])
    big = await client.complete_batch([ReviewInput(f"b{i}", "bom " * 200, 4) for i in range(5)])
    assert big.tokens_in > small.tokens_in + 5 * 150
    assert big.tokens_out > 4 * small.tokens_out


async def test_serves_requests_concurrently(make_client, simulator) -> None:
    simulator.state.update({"latency_ms": 200.0})
    client = make_client(max_concurrency=8)
    started = time.perf_counter()
    await asyncio.gather(
        *(client.complete_batch([ReviewInput(f"r{i}", "ok", 3)]) for i in range(8))
    )
    assert time.perf_counter() - started < 1.0  # 8 x 200 ms served in parallel, not in series


def test_seeded_failure_draws_are_reproducible() -> None:
    def draws() -> list[str]:
        state = SimulatorState(SimulatorConfig(seed=42, error_500_rate=0.3, malformed_rate=0.3))
        return [state.next_outcome() for _ in range(50)]

    first = draws()
    assert first == draws()
    assert {"ok", "500", "invalid_json"} <= set(first)


async def test_prompt_without_markers_falls_back_to_a_json_array_or_400(simulator, http) -> None:
    url = f"http://127.0.0.1:{simulator.port}/v1/chat/completions"
    parts = [{"type": "text", "text": 'reviews: [{"ref": "x", "rating": 1, "text": "cold"}]'}]
    ok = await http.post(url, json={"messages": [{"role": "user", "content": parts}]})
    assert ok.status_code == 200
    assert '"ref": "x"' in ok.json()["choices"][0]["message"]["content"]
    bad = await http.post(url, json={"messages": [{"role": "user", "content": "hello"}]})
    assert bad.status_code == 400
