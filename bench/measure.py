"""What the benchmark reads back: topic end offsets over time, and latencies from records."""

from __future__ import annotations

import bisect
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.dev.reader import Record


class RecordCounter:
    """Counts the records of one topic by reading them (no decoding), from the beginning.

    High watermarks are not used: on Tansu they were seen to trail the records a
    consumer reads (19,969 vs 20,000), so counting is the honest measure.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reviewpulse-bench",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        self.assigned = False
        self.count = 0

    def close(self) -> None:
        self.consumer.close()

    def __call__(self) -> int:
        if not self.assigned:
            metadata = self.consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if metadata is None or metadata.error is not None or not metadata.partitions:
                return 0
            self.consumer.assign([TopicPartition(self.topic, p, OFFSET_BEGINNING)
                                  for p in metadata.partitions])
            self.assigned = True
        while True:
            batch = self.consumer.consume(num_messages=100_000, timeout=0.02)
            self.count += sum(1 for m in batch if not m.error())
            if not batch:
                return self.count


@dataclass
class Progress:
    """(monotonic time, records) samples while a topic grows from ``base`` to ``base + target``."""

    base: int
    target: int
    samples: list[tuple[float, int]] = field(default_factory=list)

    def rate_between(self, low: float = 0.1, high: float = 0.9) -> float:
        """Records/s while progress went from ``low`` to ``high`` of the target (the steady part)."""
        lo_n, hi_n = self.target * low, self.target * high
        t_lo = next((t for t, n in self.samples if n >= lo_n), None)
        t_hi = next((t for t, n in self.samples if n >= hi_n), None)
        if t_lo is None or t_hi is None or t_hi <= t_lo:
            return float("nan")
        return (hi_n - lo_n) / (t_hi - t_lo)

    @property
    def done(self) -> int:
        return self.samples[-1][1] if self.samples else 0

    def first_to_last_s(self) -> float:
        t_first = next((t for t, n in self.samples if n > 0), None)
        t_last = next((t for t, n in self.samples if n >= self.done), None)
        if t_first is None or t_last is None:
            return float("nan")
        return t_last - t_first


def follow(count: Callable[[], int], *, target: int, timeout_s: float, stall_s: float = 30.0,
           interval_s: float = 0.1) -> Progress:
    """Poll ``count`` until it reaches ``target``, stops growing for ``stall_s`` (after it
    started), or ``timeout_s`` passes; the samples say which (``Progress.done``)."""
    progress = Progress(base=0, target=target)
    deadline = time.monotonic() + timeout_s
    last_change, last = time.monotonic(), -1
    while time.monotonic() < deadline:
        done = count()
        now = time.monotonic()
        progress.samples.append((now, done))
        if done >= target:
            break
        if done != last:
            last_change, last = now, done
        elif done > 0 and now - last_change > stall_s:
            break
        time.sleep(interval_s)
    return progress


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), 0 when it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class CpuMeter:
    """CPU seconds per named process between ``start`` and ``shares`` (cores busy)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.c0 = {name: cpu_seconds(pid) for name, pid in pids.items()}

    def shares(self) -> dict[str, float]:
        elapsed = time.monotonic() - self.t0
        return {name: (cpu_seconds(pid) - self.c0[name]) / elapsed for name, pid in self.pids.items()}


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def visible_latencies_ms(enriched: list[Record], changelog: list[Record], *,
                         pane_size_ms: int) -> tuple[list[float], list[float], int]:
    """Per review: (enriched_at - occurred_at, pane write - occurred_at), and unmatched reviews.

    The restaurant stage writes a review's pane once per batch, after the batch's outputs
    are acknowledged; every table write is a changelog record whose timestamp is the
    write time on the worker's clock. So the first changelog record of the review's pane
    key stamped at or after ``enriched_at`` is the write that made the review visible.
    """
    writes: dict[bytes, list[int]] = {}
    for rec in changelog:
        if rec.key is not None and rec.value is not None:
            writes.setdefault(rec.key, []).append(rec.timestamp_ms)
    for stamps in writes.values():
        stamps.sort()
    enrich_lag, visible_lag, unmatched = [], [], 0
    for rec in enriched:
        value = rec.value
        occurred, enriched_at = value["occurred_at"], value["enriched_at"]
        occurred_ms = occurred if isinstance(occurred, int) else int(occurred.timestamp() * 1000)
        enriched_ms = enriched_at if isinstance(enriched_at, int) else int(enriched_at.timestamp() * 1000)
        enrich_lag.append(enriched_ms - occurred_ms)
        pane = occurred_ms - occurred_ms % pane_size_ms
        key = f'"{value["restaurant_id"]}|{pane}"'.encode()
        stamps = writes.get(key, [])
        i = bisect.bisect_left(stamps, enriched_ms)
        if i == len(stamps):
            unmatched += 1
            continue
        visible_lag.append(stamps[i] - occurred_ms)
    return enrich_lag, visible_lag, unmatched
