"""What the restaurant stage needs from the world, and the topics it writes.

No Faust and no Kafka in the stage: the worker (:mod:`streams.runtime`) wires Faust's
tables, producer and codecs into :class:`Ports`; unit tests wire dicts and fakes. The
stream's ack is not a port: the agent passes it with each batch (:meth:`StageCore.process`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from tables.state import PartitionTables

# (topic, *, key, value, partition, headers) -> the delivery future; await it for the acknowledgement
Send = Callable[..., Awaitable[Awaitable[Any]]]
# The event's offset may be committed now (Faust's stream.ack)
Ack = Callable[[Any], Awaitable[Any]]


async def _nothing_to_publish(written: Sequence[PartitionTables]) -> Sequence[Awaitable[Any]]:
    return ()


async def _nothing_to_commit(partitions: set[int] | frozenset[int]) -> None:
    return None


@dataclass
class Ports:
    """What the stage needs from the world; the worker wires Faust, tests wire fakes."""

    tables_for: Callable[[int, Any], PartitionTables]  # (partition, an event of it) -> tables
    send: Send
    dead_letter: Callable[..., Awaitable[Awaitable[Any]]]  # (origin, *, stage, reason, ...)
    encode: Callable[[str, dict[str, Any]], bytes]
    flush_producer: Callable[[], Awaitable[None]]
    # Sends the changelog records of the tables a batch wrote (the worker's tables hold them
    # until then: streams.faust point 7) and returns their deliveries; dicts have none.
    publish_tables: Callable[[Sequence[PartitionTables]], Awaitable[Sequence[Awaitable[Any]]]] = (
        _nothing_to_publish)
    # Under exactly-once: commit the transactions of a batch's partitions, with the input
    # offset each reached (its events are acked by then); at-least-once has nothing to do.
    commit_batch: Callable[[set[int] | frozenset[int]], Awaitable[None]] = _nothing_to_commit
    clock_ms: Callable[[], int] = lambda: int(time.time() * 1000)
    # What the web view remembers of recent activity (a critical review, an alert as sent).
    remember_critical: Callable[[dict[str, Any]], None] = lambda record: None
    remember_alert: Callable[[dict[str, Any]], None] = lambda record: None


@dataclass(frozen=True)
class OutputTopics:
    enriched: str
    critical_alert: str
    aggregates: str
    restaurant_alerts: str
    retry: str
