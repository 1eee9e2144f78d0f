"""Delayed redelivery: reviews whose LLM call failed transiently wait here, then go back.

A record waits until its not-before time, then returns to the by-restaurant topic, where
the restaurant stage enriches it again and joins the answer into the pane the review was
folded into at first sight (it is never folded twice). Delays grow per attempt, so the
head of a partition is (nearly) always the first due: waiting on it in order costs little.
A not-before time further ahead than the longest delay the settings allow (a forged or
clock-skewed record) is capped at that delay, so no record stalls its partition.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from agents.ticks import record_progress
from streams.app import app, runtime
from streams.protocol import Origin, ProtocolError, read_item

BY_RESTAURANT = app.topics_.by_restaurant.get_topic_name()


def longest_delay_s() -> float:
    settings = app.settings
    return settings.llm_retry_delay_s * 2 ** max(0, settings.llm_max_attempts - 1)


@app.agent(app.topics_.retry, name="retry")
async def retry_stage(stream: Any) -> None:
    await runtime.ready()
    async for event in stream.events():
        message = event.message
        try:
            item = read_item(message.value)
        except ProtocolError as exc:
            await (await runtime.dead_letters.send(Origin.of(message), stage="retry", reason=exc.reason,
                                                   error=exc))
            record_progress([event])
            continue
        wait_s = min(item.not_before_ms / 1000 - time.time(), longest_delay_s())
        if wait_s > 0:
            await asyncio.sleep(wait_s)
        await (await runtime.send(BY_RESTAURANT, key=message.key, value=message.value,
                                  headers=list(message.headers or ())))
        record_progress([event])
