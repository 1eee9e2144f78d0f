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

import heapq
from collections.abc import MutableMapping
from dataclasses import dataclass, field
from typing import Any

from streams import metrics
from streams.protocol import closure_key, index_bucket, index_key, pane_key
from tables.rules import RuleThresholds, alert_record, judge_window
from tables.values import PaneAggregate
from tables.windows import WindowKind, WindowSpec

# A restaurant's closure record: the end of the last window closed, per kind, and its panes.
TUMBLING_CLOSED = "tumbling_closed_end"
HOPPING_CLOSED = "hopping_closed_end"
CLOSED_SLOTS = ((WindowKind.TUMBLING, TUMBLING_CLOSED), (WindowKind.HOPPING, HOPPING_CLOSED))
EMPTY_CLOSURE: dict[str, Any] = {TUMBLING_CLOSED: None, HOPPING_CLOSED: None, "panes": []}
_OLD_SLOTS = {"t": TUMBLING_CLOSED, "h": HOPPING_CLOSED}  # before issue 31: changelogs may hold them


def read_closure(stored: dict[str, Any] | None) -> dict[str, Any]:
    """A closure record as stored (a fresh copy), its keys of before issue 31 renamed."""
    if not stored:
        return dict(EMPTY_CLOSURE)
    return {_OLD_SLOTS.get(key, key): value for key, value in stored.items()}
ACTIVE = 0  # index value of a restaurant with panes (otherwise: when its state may be retired)


@dataclass
class Closed:
    """What closing produced: Avro-ready records for the output topics."""

    # (state partition, record): outputs go to the same partition number (agents.outbox)
    aggregates: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    alerts: list[tuple[int, dict[str, Any]]] = field(default_factory=list)
    latest: dict[int, dict[str, dict[str, Any]]] = field(default_factory=dict)  # by partition


@dataclass
class PartitionCache:
    """A partition's pane, closure and index records as its last batch left them.

    The restaurant stage is the only writer of these tables, so what a batch wrote is what
    the next one would read: keeping the decoded records saves a RocksDB read and a JSON
    decode per record and batch (an answered review's join touches the pane its first
    sight wrote a batch before). Cleared when that may stop being true (a rebalance, a
    failed batch) or when it holds more than ``max_records``.
    """

    panes: dict[tuple[str, int], PaneAggregate] = field(default_factory=dict)
    closures: dict[str, dict[str, Any]] = field(default_factory=dict)
    buckets: dict[int, dict[str, int]] = field(default_factory=dict)
    max_records: int = 20_000

    def clear(self) -> None:
        self.panes.clear()
        self.closures.clear()
        self.buckets.clear()

    def trim(self) -> None:
        if len(self.panes) + len(self.closures) > self.max_records:
            self.clear()


class PartitionState:
    """The pane and closure records one batch touches in one partition: read once, written once.

    ``panes`` and ``closures`` are the partition's tables as mappings (Faust tables bound to
    the partition in the worker, dicts in unit tests).

    The partition's index (in ``INDEX_BUCKETS`` closures keys, so a change rewrites one small
    record, not one list of every restaurant) maps each restaurant that has state to
    ``ACTIVE`` while it keeps panes, and afterwards to the time its closure may be retired:
    the last closed end plus ``retention_ms``. Decode refuses events older than
    ``event_time_max_age_s``, so past that no event can reopen a closed window and the
    closure, its daily cost entries and its latest aggregate can go (bounded state).
    """

    def __init__(self, *, panes: MutableMapping[str, Any], closures: MutableMapping[str, Any],
                 spec: WindowSpec, partition: int, retention_ms: int = 8 * 86_400_000,
                 cache: PartitionCache | None = None) -> None:
        self.panes_table = panes
        self.closures_table = closures
        self.spec = spec
        self.partition = partition
        self.retention_ms = retention_ms
        cache = cache if cache is not None else PartitionCache()
        self._panes = cache.panes
        self._closures = cache.closures
        self._buckets = cache.buckets
        self._dirty_panes: set[tuple[str, int]] = set()
        self._deleted_panes: set[tuple[str, int]] = set()
        self._dirty_closures: set[str] = set()
        self._deleted_closures: set[str] = set()
        self._dirty_buckets: set[int] = set()

    # --- reading ---------------------------------------------------------------------------
    def closure(self, restaurant_id: str) -> dict[str, Any]:
        record = self._closures.get(restaurant_id)
        if record is None:
            record = read_closure(self.closures_table.get(closure_key(restaurant_id)))
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

    def _bucket(self, restaurant_id: str) -> dict[str, int]:
        return self._bucket_at(index_bucket(restaurant_id))

    def _bucket_at(self, bucket: int) -> dict[str, int]:
        entries = self._buckets.get(bucket)
        if entries is None:
            entries = self._buckets[bucket] = dict(
                self.closures_table.get(index_key(self.partition, bucket)) or {})
        return entries

    def _index_set(self, restaurant_id: str, value: int | None) -> None:
        bucket = self._bucket(restaurant_id)
        if value is None:
            if bucket.pop(restaurant_id, None) is None:
                return
        elif bucket.get(restaurant_id) == value:
            return
        else:
            bucket[restaurant_id] = value
        self._dirty_buckets.add(index_bucket(restaurant_id))

    def index(self) -> dict[str, int]:
        """Every restaurant with state in the partition: ``ACTIVE`` or its retirement time."""
        from streams.protocol import INDEX_BUCKETS

        out: dict[str, int] = {}
        for bucket in range(INDEX_BUCKETS):
            out.update(self._bucket_at(bucket))
        return out

    # --- folding ---------------------------------------------------------------------------
    def target_pane(self, restaurant_id: str, occurred_ms: int, *, watermark_ms: int) -> tuple[int, bool]:
        """(pane an event counts in, is it late). A late event counts as late in the open pane."""
        closed_end = self.closure(restaurant_id)[TUMBLING_CLOSED]
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
            self._index_set(restaurant_id, ACTIVE)
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
        for kind, slot in CLOSED_SLOTS:
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
                ends = [end for end in (closure[TUMBLING_CLOSED], closure[HOPPING_CLOSED]) if end is not None]
                self._index_set(restaurant_id, max(ends, default=0) + self.retention_ms)

    # --- when to look again ------------------------------------------------------------------
    def next_due_ms(self, restaurant_id: str) -> int | None:
        """The watermark at which this restaurant next needs :meth:`close` or :meth:`retire`.

        With panes: the earliest end + grace of a window not closed yet that holds one of
        them (so a tick touches only restaurants with something to close, not every one
        indexed). Without: its retirement time. None: nothing is kept for it.
        """
        closure = self.closure(restaurant_id)
        starts = closure["panes"]
        if not starts:
            return self._bucket(restaurant_id).get(restaurant_id)
        spec, best = self.spec, None
        for kind, slot in CLOSED_SLOTS:
            step, size, last = spec.step_ms(kind), spec.size_ms(kind), closure[slot]
            for start in starts:
                after = start if last is None else max(start, last)
                end = after - after % step + step  # first grid end past both
                if end <= start - start % step + size and (best is None or end < best):
                    best = end
        if best is None:  # every window holding its panes is closed: collect them now
            return 0
        return best + spec.grace_ms

    def retire(self, restaurant_id: str, *, watermark_ms: int) -> list[int] | None:
        """Forget a paneless restaurant past its retention; the UTC days it booked costs on.

        None when it is not retirable yet (it has panes again, or its time has not come).
        """
        closure = self.closure(restaurant_id)
        due = self._bucket(restaurant_id).get(restaurant_id)
        if closure["panes"] or due is None or due == ACTIVE or due > watermark_ms:
            return None
        self._index_set(restaurant_id, None)
        self._deleted_closures.add(restaurant_id)
        self._dirty_closures.discard(restaurant_id)
        days = list(closure.get("days", ()))
        self._closures[restaurant_id] = dict(EMPTY_CLOSURE)
        return days

    def note_day(self, restaurant_id: str, day_start_ms: int, *, keep_from_ms: int) -> list[int]:
        """Record that the restaurant booked cost on ``day_start_ms``; days before
        ``keep_from_ms`` are dropped from the closure and returned (their entries can go)."""
        closure = self.closure(restaurant_id)
        days = list(closure.get("days", ()))
        old = [d for d in days if d < keep_from_ms]
        keep = [d for d in days if d >= keep_from_ms]
        if day_start_ms not in keep:
            keep.append(day_start_ms)
        if keep != days:
            closure["days"] = sorted(keep)
            self._dirty_closures.add(restaurant_id)
        return old

    # --- writing ---------------------------------------------------------------------------
    def flush(self) -> None:
        """Write each touched record once (every write is a changelog record)."""
        panes, closures = self.panes_table, self.closures_table
        # ``update``: a worker's table writes them in one store write (streams.faust).
        panes.update({pane_key(restaurant_id, start): self._panes[(restaurant_id, start)].to_json()
                      for restaurant_id, start in self._dirty_panes})
        for restaurant_id, start in self._deleted_panes:
            key = pane_key(restaurant_id, start)
            self._panes.pop((restaurant_id, start), None)
            if key in panes:
                del panes[key]
        closures.update({closure_key(restaurant_id): self._closures[restaurant_id]
                         for restaurant_id in self._dirty_closures})
        for restaurant_id in self._deleted_closures:
            if closure_key(restaurant_id) in closures:
                del closures[closure_key(restaurant_id)]
        closures.update({index_key(self.partition, bucket): self._buckets[bucket]
                         for bucket in self._dirty_buckets})
        self._dirty_buckets.clear()
        self._deleted_closures.clear()
        self._dirty_panes.clear()
        self._deleted_panes.clear()
        self._dirty_closures.clear()


class DueIndex:
    """When each restaurant of one partition next needs closing (or retiring): a lazy heap.

    In memory, rebuilt from the partition's index after a start or rebalance, so a tick
    costs one heap pop per restaurant that is due, whatever the number of restaurants.
    """

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._due)

    def set(self, restaurant_id: str, due_ms: int | None) -> None:
        if due_ms is None:
            self._due.pop(restaurant_id, None)
            return
        if self._due.get(restaurant_id) != due_ms:
            self._due[restaurant_id] = due_ms
            heapq.heappush(self._heap, (due_ms, restaurant_id))

    def pop_due(self, watermark_ms: int) -> list[str]:
        """The restaurants due at ``watermark_ms``, removed (set them again after handling)."""
        out = []
        heap = self._heap
        while heap and heap[0][0] <= watermark_ms:
            due_ms, restaurant_id = heapq.heappop(heap)
            if self._due.get(restaurant_id) == due_ms:
                del self._due[restaurant_id]
                out.append(restaurant_id)
        return out
