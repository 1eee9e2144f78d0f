"""The input watermark of each by-restaurant partition, from the ticks decode sends.

Closing and lateness follow this watermark, never one event's time: every decode worker
sends, for each input partition it reads, the event time it has read up to (a *mark*), and
a partition's watermark is the minimum over every input partition (Kafka Streams' stream
time, per input partition).
"""

from __future__ import annotations

from streams.protocol import Tick


class Watermarks:
    def __init__(self, *, tick_skew_ms: int) -> None:
        self.tick_skew_ms = tick_skew_ms
        # by-restaurant partition -> input partition ("topic:p") -> (mark, sent_at) of its newest tick
        self.input_marks: dict[int, dict[str, tuple[int, int]]] = {}
        self._input_partitions: dict[int, dict[str, int]] = {}  # input topic -> partitions
        self._watermarks: dict[int, int] = {}

    def of(self, partition: int) -> int:
        return self._watermarks.get(partition, 0)

    def on_tick(self, partition: int, tick: Tick, *, now_ms: int) -> None:
        """Keep the newest mark of every input partition; the watermark is their minimum.

        A mark is capped at this worker's clock plus the allowed skew: a forged or
        clock-skewed tick cannot close windows ahead of time by more than that. No watermark
        until every input partition has a mark: one nobody has read holds everything back.
        """
        marks = self.input_marks.setdefault(partition, {})
        for tp, mark in tick.marks.items():
            previous = marks.get(tp)
            if previous is None or tick.sent_at_ms >= previous[1]:
                marks[tp] = (min(mark, now_ms + self.tick_skew_ms), tick.sent_at_ms)
        counts = self._input_partitions.setdefault(partition, {})
        counts.update(tick.partitions)
        if any(f"{topic}:{p}" not in marks for topic, n in counts.items() for p in range(n)):
            return
        self._watermarks[partition] = max(self.of(partition), min(m for m, _ in marks.values()))
