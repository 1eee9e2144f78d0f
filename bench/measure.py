"""What the benchmark reads back: topic end offsets over time, and latencies from records."""

from __future__ import annotations

import bisect
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from streams.codecs import to_ms
from streams.dev.reader import Record


class RecordCounter:
    """Counts the records of one topic by reading them (no decoding), from the beginning.

    High watermarks are not used: on Tansu they were seen to trail the records a
    consumer reads (19,969 vs 20,000), so counting is the honest measure.
    """

    def __init__(self, bootstrap: str, topic: str, *, keep_timestamps: bool = False) -> None:
        self.topic = topic
        self.consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reviewpulse-bench",
                                  "enable.auto.commit": False, "fetch.wait.max.ms": 10})
        self.assigned = False
        self.count = 0
        self.keep_timestamps = keep_timestamps
        self.timestamps_ms: list[int] = []  # each record's own timestamp, when keep_timestamps

    def _add(self, batch: list[Any]) -> None:
        records = [m for m in batch if not m.error()]
        self.count += len(records)
        if self.keep_timestamps:
            self.timestamps_ms += [m.timestamp()[1] for m in records]

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
            # The first fetch of a new assignment takes longer than the 20 ms below: without
            # this wait the first count of a non-empty topic was 0 (seen in phase c).
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
                batch = self.consumer.consume(num_messages=100_000, timeout=0.2)
                self._add(batch)
                if batch:
                    break
        while True:
            batch = self.consumer.consume(num_messages=100_000, timeout=0.02)
            self._add(batch)
            if not batch:
                return self.count


def rate_between_timestamps(stamps_ms: list[int], low: float = 0.1, high: float = 0.9) -> float:
    """Records/s between the ``low`` and ``high`` quantiles of the records' own timestamps
    (when their producer wrote them), however seldom they were counted: a count that takes
    seconds to read a fast producer's records has too few samples for :meth:`Progress.rate_between`."""
    stamps = sorted(stamps_ms)
    lo, hi = int(len(stamps) * low), int(len(stamps) * high) - 1
    if hi <= lo or stamps[hi] <= stamps[lo]:
        return float("nan")
    return (hi - lo) / ((stamps[hi] - stamps[lo]) / 1000)


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


def p99_by_period(occurred_ms: list[int], latencies: list[float], *, periods: int = 3) -> list[float]:
    """The p99 of the latencies of each equal stretch of occurred_at time, in order (nan for
    a stretch without one). A fixed tail gives about equal figures; a p99 that rises from
    one stretch to the next is a backlog building: the pipeline is not keeping up."""
    if not occurred_ms:
        return [float("nan")] * periods
    start, span = min(occurred_ms), max(occurred_ms) - min(occurred_ms) + 1
    parts: list[list[float]] = [[] for _ in range(periods)]
    for at, latency in zip(occurred_ms, latencies, strict=True):
        parts[(at - start) * periods // span].append(latency)
    return [percentile(part, 99) if part else float("nan") for part in parts]


@dataclass
class Latencies:
    """Phase b's per-review figures (ms) and how each pane write was matched."""

    enriched: list[float] = field(default_factory=list)  # occurred_at -> enriched_at
    visible: list[float] = field(default_factory=list)  # occurred_at -> first pane write holding it
    visible_occurred_ms: list[int] = field(default_factory=list)  # the occurred_at of each ``visible``
    unmatched: int = 0  # no write of the review's pane key at or after occurred_at
    by_time_only: int = 0  # matched by time: no write at or after occurred_at held its rank
    earlier_write: int = 0  # the first write at or after occurred_at did not hold it yet


def _reviews_in(raw: bytes) -> int:
    """The ``reviews`` count of a pane changelog value (Faust json of PaneAggregate.to_json())."""
    try:
        value = json.loads(raw)
    except ValueError:
        return 0
    return int(value.get("reviews", 0)) if isinstance(value, dict) else 0


def visible_latencies_ms(enriched: list[Record], changelog: list[Record], *,
                         pane_size_ms: int, earlier: Sequence[Record] = ()) -> Latencies:
    """Per review: enriched_at - occurred_at, and (first pane write holding it) - occurred_at.

    The restaurant stage folds a review into its pane at first sight (provisional label)
    and writes the pane once per batch, after the batch's outputs are acknowledged; the
    LLM answer joins the pane later, in another write. Every table write is a changelog
    record stamped with the write time (worker clock; ``occurred_at`` is the producer's
    clock, both on this machine). A pane belongs to one restaurant, so to one partition,
    and its reviews are folded in the order they were produced (``occurred_at`` is stamped
    just before ``produce``): the review of rank *r* in its pane became visible at the first
    write of its pane key (``"restaurant|pane_start"``) at or after ``occurred_at`` whose
    ``reviews`` count is at least *r*. Earlier writes at or after ``occurred_at`` that hold
    fewer reviews (a join of an earlier review) are skipped and counted in ``earlier_write``;
    when no write holds enough, the first at or after ``occurred_at`` is taken (``by_time_only``).
    ``earlier``: the enriched records of reviews produced before these (earlier phases). They
    are not measured, but a pane that holds some of them counts them, so they rank first:
    without them a review's rank was too low, and its latency read too low.
    """
    writes: dict[bytes, list[tuple[int, bytes]]] = {}
    for rec in changelog:
        if rec.key is not None and rec.value is not None:
            writes.setdefault(rec.key, []).append((rec.timestamp_ms, rec.value))
    stamps_of: dict[bytes, list[int]] = {}
    for key, entries in writes.items():
        entries.sort(key=lambda e: e[0])
        stamps_of[key] = [t for t, _ in entries]
    counts: dict[tuple[bytes, int], int] = {}
    by_pane: dict[bytes, list[tuple[int, str]]] = {}
    for rec in [*earlier, *enriched]:
        occurred_ms = to_ms(rec.value["occurred_at"])
        pane = occurred_ms - occurred_ms % pane_size_ms
        key = f'"{rec.value["restaurant_id"]}|{pane}"'.encode()
        by_pane.setdefault(key, []).append((occurred_ms, rec.value["event_id"]))
    rank = {event_id: r for reviews in by_pane.values()
            for r, (_, event_id) in enumerate(sorted(set(reviews)), start=1)}
    out = Latencies()
    for rec in enriched:
        value = rec.value
        occurred_ms, enriched_ms = to_ms(value["occurred_at"]), to_ms(value["enriched_at"])
        out.enriched.append(enriched_ms - occurred_ms)
        pane = occurred_ms - occurred_ms % pane_size_ms
        key = f'"{value["restaurant_id"]}|{pane}"'.encode()
        stamps = stamps_of.get(key, [])
        first = bisect.bisect_left(stamps, occurred_ms)
        if first == len(stamps):
            out.unmatched += 1
            continue
        entries = writes[key]
        hit = None
        for i in range(first, len(entries)):
            held = counts.get((key, i))
            if held is None:
                held = counts[(key, i)] = _reviews_in(entries[i][1])
            if held >= rank[value["event_id"]]:
                hit = i
                break
        if hit is None:
            out.by_time_only += 1
            hit = first
        elif hit != first:
            out.earlier_write += 1
        out.visible.append(stamps[hit] - occurred_ms)
        out.visible_occurred_ms.append(occurred_ms)
    return out
