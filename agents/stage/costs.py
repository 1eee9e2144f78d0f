"""LLM spend per restaurant and UTC day: reserved before a call, booked when it joins.

The daily cap is fleet-wide because state is partitioned by restaurant: one worker owns a
restaurant's ``daily_cost`` entries. Before a call, :meth:`Costs.ledger` gives today's spend
of the call's restaurants as this process knows it (the estimates of calls in flight
included, so concurrent calls never spend the same headroom twice). When an answer joins,
:meth:`Costs.book` adds its cost to the day's entry, and the first ``BUDGET_SKIPPED`` for the
cap gives the restaurant's ``budget_exceeded`` alert (CRITICAL), once a day. Before it, the
first booking that takes the day's spend to ``warning_share`` of the cap gives its
``budget_warning`` (WARNING), once a day too: both flags live in the day's entry, so a
replay or another owner after a rebalance never sends them twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from agents.llm.outcome import EnrichOutcome, EnrichStatus
from agents.stage.batch import PartitionBatch
from agents.stage.jobs import Job
from streams.protocol import day_key
from tables.rules import budget_exceeded_record, budget_warning_record
from tables.state import PartitionTables
from tables.windows import DAY_MS, utc_day

BUDGET_CAP_REASON = "restaurant daily cost cap reached"


class Costs:
    def __init__(self, *, cap_micro_usd: int, tables_for: Callable[[int, Any], PartitionTables],
                 warning_share: float = 0.8) -> None:
        self.cap_micro_usd = cap_micro_usd
        self.warning_share = warning_share
        self.tables_for = tables_for
        self._ledger: dict[str, int] = {}
        self._ledger_day = 0

    def ledger(self, jobs: Sequence[Job], *, now_ms: int) -> dict[str, int]:
        """Today's spend of the jobs' restaurants; the call reserves its estimates in it."""
        day = utc_day(now_ms)[0]
        if day != self._ledger_day:
            self._ledger, self._ledger_day = {}, day
        for rid, job in {job.item.restaurant_id: job for job in jobs}.items():
            entry = self.tables_for(job.partition, job.event).daily_cost.get(day_key(rid, day)) or {}
            # Once the cap fired, the rest of the day is heuristic (estimates are above
            # actual costs, so the spend alone could let reviews through again).
            booked = self.cap_micro_usd if entry.get("alerted") else int(entry.get("spent", 0))
            self._ledger[rid] = max(booked, self._ledger.get(rid, 0))
        return self._ledger

    def book(self, batch: PartitionBatch, job: Job, outcome: EnrichOutcome, *,
             now_ms: int) -> list[dict[str, Any]]:
        """Add the outcome's cost to today's entry; returns the budget alerts that fire."""
        restaurant_id, tables, daily = job.item.restaurant_id, batch.tables, batch.daily
        day = utc_day(now_ms)[0]
        key = day_key(restaurant_id, day)
        entry = daily.get(key)
        if entry is None:
            entry = daily[key] = {"spent": 0, "alerted": False, **(tables.daily_cost.get(key) or {})}
            # Budgets need today only; yesterday stays for the web view's "today" at midnight.
            for old in batch.state.note_day(restaurant_id, day, keep_from_ms=day - DAY_MS):
                tables.daily_cost.pop(day_key(restaurant_id, old), None)
        entry["spent"] += outcome.cost_micro_usd
        alerts = []
        capped = outcome.status is EnrichStatus.BUDGET_SKIPPED and outcome.error == BUDGET_CAP_REASON
        if (not entry.get("warned") and self.cap_micro_usd
                and (capped or entry["spent"] >= self.cap_micro_usd * self.warning_share)):
            entry["warned"] = True  # a cap reached in one step still warns first, once
            alerts.append(budget_warning_record(
                restaurant_id=restaurant_id, spent_micro_usd=entry["spent"],
                cap_micro_usd=self.cap_micro_usd, share=self.warning_share, day_of_ms=now_ms,
                emitted_at_ms=now_ms))
        if capped and not entry["alerted"]:
            entry["alerted"] = True
            alerts.append(budget_exceeded_record(
                restaurant_id=restaurant_id, spent_micro_usd=entry["spent"],
                cap_micro_usd=self.cap_micro_usd, day_of_ms=now_ms, emitted_at_ms=now_ms))
        return alerts
