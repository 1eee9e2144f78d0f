"""Delayed redelivery: reviews whose LLM call failed transiently wait here, then go back.

A record waits until its ``rp-not-before-ms`` header, then returns to the by-restaurant
topic with its attempt count. Delays grow per attempt, so the head of a partition is
(nearly) always the first due: waiting on it in order costs little.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agents.context import app, runtime
from agents.restaurant import header_int
from agents.ticks import record_progress
from streams.topics import H_NOT_BEFORE


@app.agent(app.topics_.retry, name="retry")
async def retry_stage(stream: Any) -> None:
    await runtime.ready()
    async for event in stream.events():
        wait_s = header_int(event, H_NOT_BEFORE, 0) / 1000 - time.time()
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        message = event.message
        sent = await app.topics_.by_restaurant.send(
            key=message.key, value=message.value, headers=list(message.headers or ()), force=True)
        await sent
        record_progress([event])
