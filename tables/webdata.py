"""What the web view reads: recent critical reviews and alerts, window history, and pure
readings of table values (stats, alerts, summary rows). No routes here."""

from __future__ import annotations

from typing import Any

import orjson

from streams import metrics
from streams.memory import Rings, compact_json
from tables.rules import RuleThresholds, judge_window
from tables.values import Histogram, PaneAggregate
from tables.windows import WindowKind, WindowSpec

SEVERITY_RANK = {"OK": 0, "WARNING": 1, "CRITICAL": 2}


# --- recent critical reviews and alerts, window history (worker's memory) --------------------
# Both are bounded in bytes (issue 30, finding 9), the default bounds below until the runtime
# applies the settings (:func:`configure`). Entries are kept as compact JSON: their length is
# the size counted, and a dict of the same record costs several times its JSON
# (bench/memory_history.py prints both).
RECENT_MAX_BYTES = 32 * 1024 * 1024  # Settings.web_recent_max_bytes
HISTORY_MAX_BYTES = 64 * 1024 * 1024  # Settings.web_history_max_bytes


class RecentActivity:
    """The last critical reviews and alerts per restaurant, kept by the worker that emits them.

    In memory and bounded: ``per_restaurant`` items each, and ``max_bytes`` over both kinds
    and every restaurant (the oldest item of all goes first). After a restart or rebalance
    the new owner starts empty; the topics hold the full history.
    """

    def __init__(self, *, per_restaurant: int = 20, max_bytes: int = RECENT_MAX_BYTES) -> None:
        self.per_restaurant = per_restaurant
        self._critical = Rings(part="web_recent", max_bytes=max_bytes // 2, per_key=per_restaurant)
        self._alerts = Rings(part="web_recent", max_bytes=max_bytes - max_bytes // 2, per_key=per_restaurant)

    @property
    def bytes(self) -> int:
        return self._critical.bytes + self._alerts.bytes

    @property
    def evicted(self) -> int:
        return self._critical.evicted + self._alerts.evicted

    def set_max_bytes(self, max_bytes: int) -> None:
        """Half for critical reviews (they carry text), half for alerts."""
        self._critical.max_bytes = max_bytes // 2
        self._alerts.max_bytes = max_bytes - max_bytes // 2

    def remember_critical(self, enriched: dict[str, Any]) -> None:
        """A CRITICAL ``ReviewEnriched`` record (text already redacted)."""
        keep = (
            "event_id",
            "review_id",
            "rating",
            "text",
            "sentiment_score",
            "categories",
            "status",
            "occurred_at",
            "enriched_at",
            "trace_id",
        )
        self._critical.append(enriched["restaurant_id"], compact_json({k: enriched.get(k) for k in keep}))
        metrics.MEMORY_BYTES.labels("web_recent").set(self.bytes)

    def remember_alert(self, alert: dict[str, Any]) -> None:
        """A ``RestaurantAlert`` record, as sent."""
        self._alerts.append(alert["restaurant_id"], compact_json(alert))
        metrics.MEMORY_BYTES.labels("web_recent").set(self.bytes)

    def critical(self, restaurant_id: str) -> list[dict[str, Any]]:
        """Newest first."""
        return [orjson.loads(b) for b in reversed(self._critical.entries(restaurant_id))]

    def alerts(self, restaurant_id: str) -> list[dict[str, Any]]:
        """Newest first."""
        return [orjson.loads(b) for b in reversed(self._alerts.entries(restaurant_id))]

    def alerted_restaurants(self) -> list[str]:
        return self._alerts.keys()


class WindowHistory:
    """Closed tumbling windows per restaurant, as every worker sees them in ``latest``: the
    chart history beyond the panes the owner keeps (one hopping window; nothing once a
    restaurant is quiet). In memory, from start-up.

    At most ``per_restaurant`` windows each (60 = an hour of the default 60 s windows) and
    ``max_bytes`` in all: past it the oldest windows of all restaurants go first, and a
    window no newer than one that went is not taken in again (the timer offers every
    restaurant's latest window every few seconds: without that floor, an evicted latest
    window would come back at once and push out another).
    """

    def __init__(self, *, per_restaurant: int = 60, max_bytes: int = HISTORY_MAX_BYTES) -> None:
        self._rings = Rings(part="web_history", max_bytes=max_bytes, per_key=per_restaurant)

    @property
    def bytes(self) -> int:
        return self._rings.bytes

    @property
    def evicted(self) -> int:
        return self._rings.evicted

    def __len__(self) -> int:
        """Windows held."""
        return len(self._rings)

    def set_max_bytes(self, max_bytes: int) -> None:
        self._rings.max_bytes = max_bytes

    def observe(self, restaurant_id: str, record: dict[str, Any]) -> None:
        """Take in the restaurant's latest closed window, if it is newer than what is held."""
        start = record["window_start"]
        floor = self._rings.evicted_tag
        if floor is not None and start <= floor:
            return
        last = self._rings.last_tag(restaurant_id)
        if last is None or last < start:
            self._rings.append(restaurant_id, compact_json(record), tag=start)

    def windows(self, restaurant_id: str) -> list[dict[str, Any]]:
        """The restaurant's windows, oldest first."""
        return [orjson.loads(b) for b in self._rings.entries(restaurant_id)]


HISTORY_WINDOWS = 60
recent = RecentActivity()
history = WindowHistory(per_restaurant=HISTORY_WINDOWS)


def configure(*, history_max_bytes: int, recent_max_bytes: int) -> None:
    """Apply the settings' bounds (the runtime calls it at start; the module holds defaults)."""
    history.set_max_bytes(history_max_bytes)
    recent.set_max_bytes(recent_max_bytes)


def observe_latest(restaurant_id: str, record: dict[str, Any]) -> None:
    history.observe(restaurant_id, record)


# --- pure reading of table values ----------------------------------------------------------
def pane_from_record(record: dict[str, Any]) -> PaneAggregate:
    """A ``RestaurantWindowAggregate`` record back as a value the rules can judge."""

    def hist(stats: dict[str, Any]) -> Histogram:
        return Histogram(stats["count"], stats["sum_ms"], stats["max_ms"], list(stats["bucket_counts"]))

    counters = {
        k: record[k]
        for k in (
            "reviews",
            "rating_sum",
            "score_sum_milli",
            "positive",
            "neutral",
            "negative",
            "critical",
            "llm_calls",
            "tokens_in",
            "tokens_out",
            "cost_micro_usd",
            "cache_hits",
            "fallbacks",
            "budget_skips",
            "orders_delivered",
            "late_events",
        )
    }
    return PaneAggregate(
        **counters,
        categories=dict(record["categories"]),
        processing_lag=hist(record["processing_lag"]),
        event_age=hist(record["event_age"]) if record.get("event_age") else Histogram(),
        delivery_delay=hist(record["delivery_delay"]),
    )


def window_stats(window: PaneAggregate, *, start_ms: int, end_ms: int) -> dict[str, Any]:
    """What the view shows of one window (units in the names)."""
    minutes = (end_ms - start_ms) / 60_000
    return {
        "window_start_ms": start_ms,
        "window_end_ms": end_ms,
        "reviews": window.reviews,
        "reviews_per_min": round(window.reviews / minutes, 2) if minutes else 0.0,
        "sentiment_avg": round(window.sentiment_avg, 3),
        "negative_share": round(window.negative_share, 3),
        "positive": window.positive,
        "neutral": window.neutral,
        "negative": window.negative,
        "critical": window.critical,
        "cost_micro_usd": window.cost_micro_usd,
        "processing_lag_p95_ms": window.processing_lag.percentile(0.95),
        "event_age_p95_ms": window.event_age.percentile(0.95),
        "delivery_delay_p95_ms": window.delivery_delay.percentile(0.95),
        "orders_delivered": window.orders_delivered,
        "late_events": window.late_events,
        "fallbacks": window.fallbacks,
        "budget_skips": window.budget_skips,
        "llm_calls": window.llm_calls,
        "cache_hits": window.cache_hits,
    }


def window_alerts(window: PaneAggregate, previous: PaneAggregate | None = None, *,
                  thresholds: RuleThresholds, start_ms: int, end_ms: int) -> list[dict[str, Any]]:
    """The stream's own rules on one tumbling window (negative_share is a hopping-window
    rule: the view shows it from the alerts the stream emitted), each with its window."""
    decisions = judge_window(WindowKind.TUMBLING, window, previous, thresholds)
    return [{"rule": str(d.rule), "severity": str(d.severity), "message": d.message,
             "window_start_ms": start_ms, "window_end_ms": end_ms, "emitted_at_ms": None}
            for d in decisions]


def current_alerts(restaurant_id: str, *, now_ms: int, spec: WindowSpec) -> list[dict[str, Any]]:
    """Alerts this worker emitted for the restaurant that may still apply (recent windows,
    today), each with the window it judged and when it went out."""
    recent_ms = 2 * spec.size_ms(WindowKind.TUMBLING) + spec.grace_ms + 5_000
    return [
        {"rule": a["rule"], "severity": a["severity"], "message": a["message"],
         "window_start_ms": a["window_start"], "window_end_ms": a["window_end"],
         "emitted_at_ms": a["emitted_at"]}
        for a in recent.alerts(restaurant_id)
        if a["window_end"] > now_ms or a["emitted_at"] >= now_ms - recent_ms
    ]


def rank_alerts(alerts: list[dict[str, Any]], *, latest_end_ms: int | None,
                now_ms: int) -> list[dict[str, Any]]:
    """One alert per rule, each marked ``current`` when it judged a window ending at or after
    the latest closed window (so it describes what the row's numbers show) or older, with its
    age; current ones first, then by severity. A row's severity is its current alerts' worst
    (:func:`current_severity`): an alert from a window 30 s earlier no longer ranks the row.
    """
    best: dict[str, dict[str, Any]] = {}
    for alert in alerts:
        shown = {**alert, "current": latest_end_ms is None or alert["window_end_ms"] >= latest_end_ms,
                 "age_ms": max(0, now_ms - (alert["emitted_at_ms"] or alert["window_end_ms"]))}
        kept = best.get(shown["rule"])
        if kept is None or (shown["current"], SEVERITY_RANK[shown["severity"]]) > (
                kept["current"], SEVERITY_RANK[kept["severity"]]):
            best[shown["rule"]] = shown
    return sorted(best.values(), key=lambda a: (not a["current"], -SEVERITY_RANK[a["severity"]], a["rule"]))


def current_severity(alerts: list[dict[str, Any]]) -> str:
    return worst([a for a in alerts if a.get("current", True)])


def worst(alerts: list[dict[str, Any]]) -> str:
    return max((a["severity"] for a in alerts), key=SEVERITY_RANK.__getitem__, default="OK")


def summary_row(restaurant_id: str, record: dict[str, Any], *, thresholds: RuleThresholds) -> dict[str, Any]:
    stats = window_stats(
        pane_from_record(record), start_ms=record["window_start"], end_ms=record["window_end"]
    )
    alerts = window_alerts(pane_from_record(record), thresholds=thresholds, start_ms=record["window_start"],
                           end_ms=record["window_end"])
    return {
        "restaurant_id": restaurant_id,
        **stats,
        "closed_at_ms": record["closed_at"],
        "alerts": alerts,
        "severity": worst(alerts),
    }
