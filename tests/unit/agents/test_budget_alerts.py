"""Budget alerts per restaurant and UTC day (issue 32.3): one WARNING at the configured share
of the daily cap, one CRITICAL when the cap stops a review, never repeated in the day even
across batches, and again the next day."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from agents.llm.outcome import EnrichOutcome, EnrichStatus
from agents.stage.costs import BUDGET_CAP_REASON, Costs
from tables.windows import DAY_MS

DAY0 = 1_699_920_000_000  # 2023-11-14T00:00:00Z
CAP = 1_000


class Day:
    """One partition's daily_cost table, written after each batch as the stage does."""

    def __init__(self) -> None:
        self.table: dict[str, Any] = {}
        self.costs = Costs(cap_micro_usd=CAP, tables_for=lambda p, e: SimpleNamespace(daily_cost=self.table),
                           warning_share=0.8)

    def book(self, cost: int, *, now_ms: int, capped: bool = False,
             rid: str = "r-1") -> list[tuple[str, str]]:
        batch = SimpleNamespace(tables=SimpleNamespace(daily_cost=self.table), daily={},
                                state=SimpleNamespace(note_day=lambda *a, **k: []))
        job = SimpleNamespace(item=SimpleNamespace(restaurant_id=rid), partition=0)
        outcome = EnrichOutcome(ref="x", restaurant_id=rid,
                                status=EnrichStatus.BUDGET_SKIPPED if capped else EnrichStatus.ENRICHED,
                                enrichment=None, model="m", prompt_version="v", cost_micro_usd=cost,
                                error=BUDGET_CAP_REASON if capped else None)
        alerts = self.costs.book(batch, job, outcome, now_ms=now_ms)  # type: ignore[arg-type]
        self.table.update(batch.daily)
        return [(a["rule"], a["severity"]) for a in alerts]


def test_warning_once_at_the_share_and_critical_once_at_the_cap_per_utc_day() -> None:
    day = Day()
    fired = [day.book(cost, now_ms=DAY0 + i) for i, cost in enumerate((300, 300, 199))]
    assert fired == [[], [], []]  # 799 < 800
    assert day.book(1, now_ms=DAY0 + 10) == [("budget_warning", "WARNING")]  # 800: 80 %
    assert day.book(150, now_ms=DAY0 + 11) == []
    assert day.book(0, now_ms=DAY0 + 12, capped=True) == [("budget_exceeded", "CRITICAL")]
    assert day.book(0, now_ms=DAY0 + 13, capped=True) == []
    assert day.book(500, now_ms=DAY0 + 14) == []
    # The next UTC day starts over.
    assert day.book(900, now_ms=DAY0 + DAY_MS + 1) == [("budget_warning", "WARNING")]
    assert day.book(0, now_ms=DAY0 + DAY_MS + 2, capped=True) == [("budget_exceeded", "CRITICAL")]


def test_a_cap_reached_before_the_share_still_warns_first_and_restaurants_are_apart() -> None:
    day = Day()
    assert day.book(100, now_ms=DAY0, rid="a") == []
    assert day.book(0, now_ms=DAY0 + 1, capped=True, rid="a") == [
        ("budget_warning", "WARNING"), ("budget_exceeded", "CRITICAL")]
    assert day.book(850, now_ms=DAY0 + 2, rid="b") == [("budget_warning", "WARNING")]
    assert day.book(0, now_ms=DAY0 + 3, capped=True, rid="a") == []


def test_the_alert_records_say_what_was_spent_against_which_threshold() -> None:
    day = Day()
    batch = SimpleNamespace(tables=SimpleNamespace(daily_cost=day.table), daily={},
                            state=SimpleNamespace(note_day=lambda *a, **k: []))
    job = SimpleNamespace(item=SimpleNamespace(restaurant_id="r"), partition=0)
    outcome = EnrichOutcome(ref="x", restaurant_id="r", status=EnrichStatus.ENRICHED, enrichment=None,
                            model="m", prompt_version="v", cost_micro_usd=812)
    [warning] = day.costs.book(batch, job, outcome, now_ms=DAY0 + 5)  # type: ignore[arg-type]
    assert (warning["value"], warning["threshold"]) == (812.0, 800.0)
    assert warning["alert_id"] == f"r:budget_warning:{DAY0}"
    assert warning["window_end"] - warning["window_start"] == DAY_MS
