"""Panes and closing: one partition's window state, read once and written once per batch.

State is kept in panes (``gcd(window size, hopping step)``, 60 s by default) keyed
``restaurant|pane_start``; a tumbling or hopping window is the merge of its panes.
Each pane carries the highest input offset folded into it, so an event redelivered
after a crash is recognised and not counted twice (Tansu has no transactions).

Closing is ours, not Faust's ``on_window_close`` (which gets no value and loses windows
around rebalances): a window closes when its end plus grace is behind the partition's
watermark, which moves with event time and, through ticks, with the wall clock. The
restaurant's closure record (last closed end per window kind) is changelogged, so a
restarted worker neither repeats nor skips a final aggregate.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from streams import metrics
from streams.protocol import closure_key, index_key, pane_key
from tables.rules import RuleThresholds, alert_record, judge_window
from tables.values import PaneAggregate
from tables.windows import WindowKind, WindowSpec

EMPTY_CLOSURE: dict[str, Any] = {"t": None, "h": None, "panes": []}


@dataclass
class Closed:
    """What closing produced: Avro-ready records for the output topics."""

    # (state partition, record): outputs go to the same partition number (agents.outbox)
    aggregates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    alerts: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    latest: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)  # by partition


class PartitionState:
    """The pane and closure records one batch touches in one partition: read once, written once.

    ``panes`` and ``closures`` are the partition's tables as mappings (Faust tables bound to
    the partition in the worker, dicts in unit tests).
    """

    def __init__(self, *, panes: MutableMapping[str, Any], closures: MutableMapping[str, Any],
                 spec: WindowSpec, partition: int) -> None:
        self.panes_table = panes
        self.closures_table = closures
        self.spec = spec
        self.partition = partition
        self._panes: dict[tuple[str, int], PaneAggregate] = {}
        self._closures: dict[str, dict[str, Any]] = {}
        self._dirty_panes: set[tuple[str, int]] = set()
        self._deleted_panes: set[tuple[str, int]] = set()
        self._dirty_closures: set[str] = set()
        self._index: set[str] | None = None
        self._index_dirty = False

    # --- reading ---------------------------------------------------------------------------
    def closure(self, restaurant_id: str) -> dict[str, Any]:
        record = self._closures.get(restaurant_id)
        if record is None:
            stored = self.closures_table.get(closure_key(restaurant_id))
            record = dict(stored) if stored else dict(EMPTY_CLOSURE)
            self._closures[restaurant_id] = record
        return record

    def pane(self, restaurant_id: str, start_ms: int) -> PaneAggregate:
        key = (restaurant_id, start_ms)
        pane = self._panes.get(key)
        if pane is None:
            stored = self.panes_table.get(pane_key(restaurant_id, start_ms))
            pane = PaneAggregate.from_json(stored) if stored else PaneAggregate()
            self._panes[key] = pane
        return pane

    def index(self) -> set[str]:
        if self._index is None:
            self._index = set(self.closures_table.get(index_key(self.partition)) or ())
        return self._index

    # --- folding ---------------------------------------------------------------------------
    def target_pane(self, restaurant_id: str, occurred_ms: int, *, watermark_ms: int) -> tuple[int, bool]:
        """(pane an event counts in, is it late). A late event counts as late in the open pane."""
        closed_end = self.closure(restaurant_id)["t"]
        if self.spec.is_late(occurred_ms, watermark_ms=watermark_ms, last_closed_end_ms=closed_end):
            # The open pane: after a restart the watermark restarts at 0, but the closure
            # record still says how far windows have closed.
            floor = closed_end if closed_end is not None else occurred_ms
            return self.spec.late_pane(max(watermark_ms, occurred_ms, floor)), True
        return self.spec.pane_of(occurred_ms), False

    def touch(self, restaurant_id: str, start_ms: int) -> PaneAggregate:
        """The pane, marked for writing at flush, registered in the closure and index."""
        pane = self.pane(restaurant_id, start_ms)
        self._dirty_panes.add((restaurant_id, start_ms))
        closure = self.closure(restaurant_id)
        if start_ms not in closure["panes"]:
            closure["panes"] = sorted([*closure["panes"], start_ms])
            self._dirty_closures.add(restaurant_id)
            index = self.index()
            if restaurant_id not in index:
                index.add(restaurant_id)
                self._index_dirty = True
        return pane

    def has_pane(self, restaurant_id: str, start_ms: int) -> bool:
        """Whether the restaurant still keeps this pane (closed and collected panes are gone)."""
        return start_ms in self.closure(restaurant_id)["panes"]

    # --- closing ---------------------------------------------------------------------------
    def close(self, restaurant_id: str, *, watermark_ms: int, now_ms: int,
              thresholds: RuleThresholds, out: Closed) -> None:
        """Close every window of the restaurant whose end + grace is behind ``watermark_ms``."""
        spec = self.spec
        closure = self.closure(restaurant_id)
        horizon = spec.close_horizon_ms(watermark_ms)
        starts = closure["panes"]
        changed = False
        for kind, slot in ((WindowKind.TUMBLING, "t"), (WindowKind.HOPPING, "h")):
            step, size = spec.step_ms(kind), spec.size_ms(kind)
            aligned = horizon - horizon % step  # greatest window end on the grid <= horizon
            last = closure[slot]
            if last is not None and aligned <= last:
                continue
            if starts:
                after = starts[0] if last is None else max(last, starts[0] - size)
                for start in spec.windows_ending_between(after, horizon, kind):
                    self._close_window(restaurant_id, kind, start, start + size, now_ms=now_ms,
                                       thresholds=thresholds, out=out)
            closure[slot] = aligned if last is None else max(last, aligned)
            changed = True
        if changed:
            self._dirty_closures.add(restaurant_id)
            self._collect_garbage(restaurant_id, watermark_ms)

    def _close_window(self, restaurant_id: str, kind: WindowKind, start: int, end: int, *,
                      now_ms: int, thresholds: RuleThresholds, out: Closed) -> None:
        panes = [self.pane(restaurant_id, s) for s in self.closure(restaurant_id)["panes"]
                 if start <= s < end]
        window = PaneAggregate.merge_all(panes)
        if window.is_empty:
            return
        record = window.to_record(restaurant_id=restaurant_id, window_kind=kind,
                                  window_start_ms=start, window_end_ms=end, closed_at_ms=now_ms)
        out.aggregates.append((self.partition, record))
        if window.provisional_labels:
            metrics.PROVISIONAL_LABELS.labels(str(kind)).inc(window.provisional_labels)
        previous = None
        if kind == WindowKind.TUMBLING:
            size = end - start
            previous = PaneAggregate.merge_all(
                self.pane(restaurant_id, s) for s in self.closure(restaurant_id)["panes"]
                if start - size <= s < start)
            out.latest.setdefault(self.partition, {})[restaurant_id] = record
        decisions = judge_window(kind, window, previous, thresholds)
        out.alerts += [(self.partition, alert_record(d, restaurant_id=restaurant_id, window_start_ms=start,
                                                     window_end_ms=end, emitted_at_ms=now_ms))
                       for d in decisions]

    def _collect_garbage(self, restaurant_id: str, watermark_ms: int) -> None:
        closure = self.closure(restaurant_id)
        oldest = self.spec.oldest_pane_needed(watermark_ms)
        keep = [s for s in closure["panes"] if s >= oldest]
        for start in closure["panes"]:
            if start < oldest:
                self._deleted_panes.add((restaurant_id, start))
                self._dirty_panes.discard((restaurant_id, start))
        if len(keep) != len(closure["panes"]):
            closure["panes"] = keep
            if not keep:
                self.index().discard(restaurant_id)
                self._index_dirty = True

    # --- writing ---------------------------------------------------------------------------
    def flush(self) -> None:
        """Write each touched record once (every write is a changelog record)."""
        panes, closures = self.panes_table, self.closures_table
        for restaurant_id, start in self._dirty_panes:
            panes[pane_key(restaurant_id, start)] = self._panes[(restaurant_id, start)].to_json()
        for restaurant_id, start in self._deleted_panes:
            key = pane_key(restaurant_id, start)
            if key in panes:
                del panes[key]
        for restaurant_id in self._dirty_closures:
            closures[closure_key(restaurant_id)] = self._closures[restaurant_id]
        if self._index_dirty:
            closures[index_key(self.partition)] = sorted(self.index())
        self._index_dirty = False
        self._dirty_panes.clear()
        self._deleted_panes.clear()
        self._dirty_closures.clear()
