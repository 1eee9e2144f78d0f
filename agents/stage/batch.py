"""What one batch of one partition reads and writes: its state, tables, marks and cost entries.

A batch reads each table once per key and writes each once, after its outputs are
acknowledged (:mod:`agents.stage.publish`). :class:`States` keeps, per partition, the records
the last batch wrote (:class:`tables.panes.PartitionCache`): the stage is their only writer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from streams.protocol import read_dedupe_mark
from tables.panes import PartitionCache, PartitionState
from tables.state import PartitionTables
from tables.windows import WindowSpec


@dataclass
class PartitionBatch:
    state: PartitionState
    tables: PartitionTables
    due: set[str] = field(default_factory=set)  # restaurants it touched: closed at its end
    marks: dict[str, Any] = field(default_factory=dict)  # event_id -> dedupe mark to write
    daily: dict[str, dict[str, Any]] = field(default_factory=dict)  # day key -> cost entry to write
    reviews: dict[str, dict[str, Any]] = field(default_factory=dict)  # review key -> its state record
    # Reviews this batch made a job for: they are owed from here on, though submitted only
    # after the batch (two copies of one review in a batch would be enriched, and sent, twice).
    owing: set[str] = field(default_factory=set)

    def mark_of(self, event_id: str) -> int | None:
        """The event's dedupe mark (first offset), as this batch left it or the table holds it."""
        mark = self.marks.get(event_id)
        return read_dedupe_mark(mark if mark is not None else self.tables.dedupe.get(event_id))


class States:
    """Opens each partition's batch over its tables and its cache of what was last written."""

    def __init__(self, *, spec: WindowSpec, retention_ms: int) -> None:
        self.spec, self.retention_ms = spec, retention_ms
        self._caches: dict[int, PartitionCache] = {}

    def open(self, partition: int, tables: PartitionTables) -> PartitionBatch:
        cache = self._caches.get(partition)
        if cache is None:
            cache = self._caches[partition] = PartitionCache()
        state = PartitionState(panes=tables.panes, closures=tables.closures, spec=self.spec,
                               partition=partition, retention_ms=self.retention_ms, cache=cache)
        return PartitionBatch(state=state, tables=tables)

    def trim(self, partition: int) -> None:
        self._caches[partition].trim()

    def forget(self) -> None:
        """The caches may no longer be what the tables hold: a failed batch changed records in
        memory it did not write, or a rebalance restored them (maybe from another owner)."""
        for cache in self._caches.values():
            cache.clear()
        self._caches.clear()
