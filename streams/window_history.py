"""A restaurant's closed windows over a time range, read back from ``restaurants.aggregates``.

The web view's chart keeps about an hour of windows in memory, lost on a restart (issue 33,
"a restaurant's history beyond the last hour"). The topic keeps every final aggregate
already, keyed by restaurant and on the restaurant's partition, so history is a read of one
partition between two times, never a scan from the start: ``offsets_for_times`` finds the
first aggregate sent at or after ``from``; the read stops at the first one sent later than
the last window of the range can be (its end, the grace and :data:`CLOSE_SLACK_MS`).

The read is synchronous (librdkafka); the web view runs it in a thread and decodes the
matching values with the worker's codecs. Only records whose key is the restaurant's are
kept, so a partition shared with many restaurants costs a key comparison per record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from streams.settings import Settings
from streams.topic_io import KAFKA_TIMEOUT_S, read_to_end, reader_consumer
from streams.topics import AGGREGATES

# An aggregate goes out once the watermark passes its window's end plus the grace: a quiet
# restaurant's tick marks move the watermark within seconds, a stalled worker later. A window
# sent later than this after its end is missed by a range that ends with it.
CLOSE_SLACK_MS = 300_000
WINDOW_KINDS = ("TUMBLING", "HOPPING")


class RangeError(ValueError):
    """A range the history refuses: empty, reversed, or wider than the setting allows."""


@dataclass(frozen=True)
class Scan:
    """What one read found: the restaurant's raw aggregate values, and how much was read."""

    values: list[bytes]
    records_read: int


def check_range(from_ms: int, to_ms: int, *, max_range_s: int) -> None:
    if to_ms <= from_ms:
        raise RangeError("'to' must be after 'from'")
    if to_ms - from_ms > max_range_s * 1000:
        raise RangeError(f"a range of {(to_ms - from_ms) / 1000:.0f} s is wider than the limit of "
                         f"{max_range_s} s (REVIEWPULSE_HISTORY_MAX_RANGE_S)")


def scan(settings: Settings, restaurant_id: str, *, partition: int, from_ms: int, to_ms: int,
         longest_window_ms: int) -> Scan:
    """The raw values of ``restaurant_id``'s aggregates sent from ``from_ms`` until the last
    window starting before ``to_ms`` may have been sent."""
    from confluent_kafka import TopicPartition

    key = restaurant_id.encode()
    stop_ms = to_ms + longest_window_ms + settings.window_grace_s * 1000 + CLOSE_SLACK_MS
    consumer = reader_consumer(settings, "history")
    values: list[bytes] = []
    read = 0
    try:
        if AGGREGATES not in consumer.list_topics(timeout=KAFKA_TIMEOUT_S).topics:
            return Scan([], 0)  # no window ever closed
        [start] = consumer.offsets_for_times([TopicPartition(AGGREGATES, partition, from_ms)],
                                             timeout=KAFKA_TIMEOUT_S)
        if start.offset < 0:  # nothing sent at or after from_ms
            return Scan([], 0)
        for message in read_to_end(consumer, [TopicPartition(AGGREGATES, partition, start.offset)]):
            read += 1
            if message.timestamp()[1] > stop_ms:
                break
            if message.key() == key and message.value() is not None:
                values.append(message.value())
    finally:
        consumer.close()
    return Scan(values, read)


def select(decoded: Iterable[dict[str, Any]], *, from_ms: int, to_ms: int,
           kind: str) -> list[dict[str, Any]]:
    """The windows of ``kind`` starting in ``[from_ms, to_ms)``, oldest first, one per window
    (a window sent twice, at least once, is the same ``aggregate_id``: the last copy wins)."""
    by_id: dict[str, dict[str, Any]] = {}
    for record in decoded:
        if record["window_kind"] == kind and from_ms <= record["window_start"] < to_ms:
            by_id[record["aggregate_id"]] = record
    return sorted(by_id.values(), key=lambda r: r["window_start"])
