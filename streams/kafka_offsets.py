"""Offsets read from Kafka fetches, for brokers whose ListOffsets answer cannot be trusted.

aiokafka only: no Faust here, so the outbox (agents.outbox) and the Faust shim
(streams.faust, point 2) share it without one importing the other.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, TopicPartition

FETCH_HIGHWATER_TIMEOUT_S = 10.0
TP = TypeVar("TP", bound=Any)  # any (topic, partition) named tuple: Faust's TP in the worker


async def fetched_highwaters(consumer: AIOKafkaConsumer, listed: Mapping[TP, int]) -> dict[TP, int]:
    """High watermarks from fetch responses, for partitions whose ListOffsets answer is ``listed``."""
    # aiokafka asserts its own TopicPartition type (Faust's TP is another namedtuple).
    tps = {TopicPartition(tp.topic, tp.partition): tp for tp in listed}
    consumer.assign(list(tps))
    for tp, original in tps.items():
        consumer.seek(tp, max(listed[original] - 1, 0))  # inside the last batch: the fetch returns it
    loop = asyncio.get_running_loop()
    deadline = loop.time() + FETCH_HIGHWATER_TIMEOUT_S
    while any(consumer.highwater(tp) is None for tp in tps) and loop.time() < deadline:
        await consumer.getmany(*tps, timeout_ms=100, max_records=1)
    return {original: max(listed[original], consumer.highwater(tp) or 0) for tp, original in tps.items()}
