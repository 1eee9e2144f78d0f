"""The dashboard says which window an alert means (issue 33.4): an alert about the latest
closed window is current; one from an earlier window is shown with its age but no longer
ranks the row (seen in the demo: CRITICAL sentiment_drop beside a +0.95, 0 % negative row)."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tables.webdata import SEVERITY_RANK, current_severity, rank_alerts

NOW = 1_796_000_100_000
LATEST_END = NOW - 2_000  # the latest closed tumbling window ended 2 s ago


def alert(rule: str, severity: str, end_ms: int, emitted_ms: int | None = None) -> dict[str, Any]:
    return {"rule": rule, "severity": severity, "message": rule, "window_start_ms": end_ms - 60_000,
            "window_end_ms": end_ms, "emitted_at_ms": emitted_ms}


def test_an_alert_of_an_earlier_window_is_shown_old_and_does_not_rank_the_row() -> None:
    ranked = rank_alerts([alert("sentiment_drop", "CRITICAL", LATEST_END - 30_000, LATEST_END - 29_000),
                          alert("processing_lag", "WARNING", LATEST_END)],
                         latest_end_ms=LATEST_END, now_ms=NOW)
    assert [(a["rule"], a["current"], a["age_ms"]) for a in ranked] == [
        ("processing_lag", True, 2_000), ("sentiment_drop", False, 31_000)]
    assert current_severity(ranked) == "WARNING"


def test_a_rule_keeps_its_current_alert_over_a_worse_old_one_and_a_day_alert_is_current() -> None:
    ranked = rank_alerts([alert("negative_share", "CRITICAL", LATEST_END - 60_000),
                          alert("negative_share", "WARNING", LATEST_END),
                          alert("budget_exceeded", "CRITICAL", NOW + 3_600_000, NOW - 5_000)],
                         latest_end_ms=LATEST_END, now_ms=NOW)
    assert [(a["rule"], a["severity"], a["current"]) for a in ranked] == [
        ("budget_exceeded", "CRITICAL", True), ("negative_share", "WARNING", True)]
    assert current_severity(ranked) == "CRITICAL"


severities = st.sampled_from(sorted(SEVERITY_RANK))


@given(st.lists(st.tuples(st.sampled_from(["a", "b", "c"]), severities, st.integers(-5, 5)), max_size=12))
def test_one_alert_per_rule_current_first_and_the_row_ranks_by_current_ones(
        raw: list[tuple[str, str, int]]) -> None:
    alerts = [alert(rule, sev, LATEST_END + k * 10_000) for rule, sev, k in raw if sev != "OK"]
    ranked = rank_alerts(alerts, latest_end_ms=LATEST_END, now_ms=NOW)
    assert sorted(a["rule"] for a in ranked) == sorted({a["rule"] for a in alerts})
    flags = [a["current"] for a in ranked]
    assert flags == sorted(flags, reverse=True)
    current = [SEVERITY_RANK[a["severity"]] for a in alerts if a["window_end_ms"] >= LATEST_END]
    expected = max(current, default=SEVERITY_RANK["OK"])
    assert SEVERITY_RANK[current_severity(ranked)] == expected
