"""CPU per LLM request: httpx against aiohttp, and our LLMClient, against the simulator.

Run: ``.venv/bin/python -m bench.http_client [--requests N]``. It starts the LLM simulator
as its own process (its CPU is not counted), sends one real 10-review request body
(``LLMClient.request_body``) N times with 8 in flight through each HTTP library, then N
batches through :class:`agents.llm.client.LLMClient`, and prints this process's CPU time
per request. Issue 13 measured an httpx request at about 1.3 ms of CPU; at batch 10 that
is one tenth per review of the worker's budget.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import httpx

from agents.llm.client import LLMClient
from agents.llm.labels import ReviewInput
from bench.measure import cpu_seconds
from streams.dev.stack import start_llm_sim

IN_FLIGHT = 8
REVIEWS = [ReviewInput(f"r{i}", f"Pedido {i}: a comida chegou fria e atrasada, entregador educado.",
                       1 + i % 5) for i in range(10)]


async def cpu_per_call_us(call: Callable[[], Awaitable[object]], n: int) -> float:
    for _ in range(20):  # connections open, code paths warm
        await call()
    started = cpu_seconds(os.getpid())
    for _ in range(n // IN_FLIGHT):
        await asyncio.gather(*(call() for _ in range(IN_FLIGHT)))
    return (cpu_seconds(os.getpid()) - started) / (n // IN_FLIGHT * IN_FLIGHT) * 1e6


async def measure(base_url: str, n: int) -> dict[str, float]:
    client = LLMClient(base_url=base_url, model="sim", max_concurrency=IN_FLIGHT)
    body, url = client.request_body(REVIEWS), f"{base_url}/chat/completions"
    figures: dict[str, float] = {}
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=2 * IN_FLIGHT)) as http:
        async def with_httpx() -> object:
            response = await http.post(url, json=body, timeout=12)
            response.raise_for_status()
            return response.json()
        figures["httpx"] = await cpu_per_call_us(with_httpx, n)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=2 * IN_FLIGHT)) as session:
        async def with_aiohttp() -> object:
            async with session.post(url, json=body) as response:
                response.raise_for_status()
                return await response.json()
        figures["aiohttp"] = await cpu_per_call_us(with_aiohttp, n)
    async with client:
        figures["LLMClient.complete_batch"] = await cpu_per_call_us(lambda: client.complete_batch(REVIEWS), n)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=800)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        sim = start_llm_sim(log_dir=Path(logs))
        try:
            figures = asyncio.run(measure(f"{sim.url}/v1", args.requests))
        finally:
            sim.stop()
    print(f"CPU of this process per 10-review request ({args.requests} requests, {IN_FLIGHT} in flight, "
          "simulator at 0 ms in its own process):")
    for name, us in figures.items():
        print(f"  {name:26s} {us:7,.0f} us per request = {us / len(REVIEWS):5,.0f} us per review")


if __name__ == "__main__":
    main()
