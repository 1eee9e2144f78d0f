"""Closing windows: the restaurants a batch touched, and those whose time has come.

Each partition keeps a :class:`~tables.panes.DueIndex` (restaurant -> the watermark at which
its next window closes), so a batch closes only what is due instead of scanning every
restaurant. It is rebuilt from the partition's table index after a start or a rebalance.
"""

from __future__ import annotations

from agents.stage.batch import PartitionBatch
from agents.stage.watermarks import Watermarks
from streams.protocol import day_key
from tables.panes import Closed, DueIndex
from tables.rules import RuleThresholds


class Closer:
    def __init__(self, *, watermarks: Watermarks, thresholds: RuleThresholds) -> None:
        self.watermarks, self.thresholds = watermarks, thresholds
        self._due: dict[int, DueIndex] = {}  # rebuilt from the partition's index when missing

    def reset(self) -> None:
        """After a rebalance: each partition's index is rebuilt from its (restored) tables."""
        self._due.clear()

    def close_due(self, partition: int, batch: PartitionBatch, *, now_ms: int) -> Closed:
        """Close (or retire) the due restaurants of the partition; returns the final records."""
        closed = Closed()
        state, watermark = batch.state, self.watermarks.of(partition)
        due = self._due.get(partition)
        if due is None:  # first batch since start or rebalance: everything indexed, once
            due = self._due[partition] = DueIndex()
            for restaurant_id in state.index():
                due.set(restaurant_id, 0)
        for restaurant_id in sorted(batch.due | set(due.pop_due(watermark))):
            state.close(restaurant_id, watermark_ms=watermark, now_ms=now_ms,
                        thresholds=self.thresholds, out=closed)
            days = state.retire(restaurant_id, watermark_ms=watermark)
            if days is not None:
                for day in days:
                    batch.tables.daily_cost.pop(day_key(restaurant_id, day), None)
                batch.tables.latest.pop(restaurant_id, None)
                closed.latest.get(partition, {}).pop(restaurant_id, None)
            due.set(restaurant_id, state.next_due_ms(restaurant_id))
        return closed
