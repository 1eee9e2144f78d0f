"""What the web view reads: recent critical reviews and alerts, window history, and pure
readings of table values (stats, alerts, summary rows). No routes here."""

from __future__ import annotations

from collections import OrderedDict, deque
from typing import Any

from tables.rules import RuleThresholds, judge_window
from tables.values import Histogram, PaneAggregate
from tables.windows import WindowKind, WindowSpec

SEVERITY_RANK = {"OK": 0, "WARNING": 1, "CRITICAL": 2}


# --- recent critical reviews and alerts (owner's memory) -------------------------------------
class RecentActivity:
    """The last critical reviews and alerts per restaurant, kept by the worker that emits them.

    In memory and bounded (``per_restaurant`` items, ``restaurants`` LRU entries): after a
    restart or rebalance the new owner starts empty; the topics hold the full history.
    """

    def __init__(self, *, per_restaurant: int = 20, restaurants: int = 5_000) -> None:
        self.per_restaurant = per_restaurant
        self.restaurants = restaurants
        self._critical: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()
        self._alerts: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()

    def _ring(self, rings: OrderedDict[str, deque[dict[str, Any]]], key: str) -> deque[dict[str, Any]]:
        ring = rings.get(key)
        if ring is None:
            ring = rings[key] = deque(maxlen=self.per_restaurant)
            if len(rings) > self.restaurants:
                rings.popitem(last=False)
        rings.move_to_end(key)
        return ring

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
        self._ring(self._critical, enriched["restaurant_id"]).appendleft({k: enriched.get(k) for k in keep})

    def remember_alert(self, alert: dict[str, Any]) -> None:
        """A ``RestaurantAlert`` record, as sent."""
        self._ring(self._alerts, alert["restaurant_id"]).appendleft(dict(alert))

    def critical(self, restaurant_id: str) -> list[dict[str, Any]]:
        return list(self._critical.get(restaurant_id, ()))

    def alerts(self, restaurant_id: str) -> list[dict[str, Any]]:
        return list(self._alerts.get(restaurant_id, ()))

    def alerted_restaurants(self) -> list[str]:
        return list(self._alerts)


recent = RecentActivity()

# Closed tumbling windows per restaurant, as every worker sees them in ``latest``: the chart
# history beyond the panes the owner keeps (one hopping window; nothing once a restaurant
# is quiet). 60 windows = an hour of the default 60 s windows. In memory, from start-up.
HISTORY_WINDOWS = 60
history: OrderedDict[str, deque[dict[str, Any]]] = OrderedDict()


def observe_latest(restaurant_id: str, record: dict[str, Any]) -> None:
    ring = history.get(restaurant_id)
    if ring is None:
        ring = history[restaurant_id] = deque(maxlen=HISTORY_WINDOWS)
        if len(history) > recent.restaurants:
            history.popitem(last=False)
    if not ring or ring[-1]["window_start"] < record["window_start"]:
        ring.append(record)


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
    }


def window_alerts(window: PaneAggregate, previous: PaneAggregate | None = None, *,
                  thresholds: RuleThresholds) -> list[dict[str, Any]]:
    """The stream's own rules on one tumbling window (negative_share is a hopping-window
    rule: the view shows it from the alerts the stream emitted)."""
    decisions = judge_window(WindowKind.TUMBLING, window, previous, thresholds)
    return [{"rule": str(d.rule), "severity": str(d.severity), "message": d.message} for d in decisions]


def current_alerts(restaurant_id: str, *, now_ms: int, spec: WindowSpec) -> list[dict[str, Any]]:
    """Alerts this worker emitted for the restaurant that still apply (recent windows, today)."""
    recent_ms = 2 * spec.size_ms(WindowKind.TUMBLING) + spec.grace_ms + 5_000
    return [
        {"rule": a["rule"], "severity": a["severity"], "message": a["message"]}
        for a in recent.alerts(restaurant_id)
        if a["window_end"] > now_ms or a["emitted_at"] >= now_ms - recent_ms
    ]


def worst(alerts: list[dict[str, Any]]) -> str:
    return max((a["severity"] for a in alerts), key=SEVERITY_RANK.__getitem__, default="OK")


def summary_row(restaurant_id: str, record: dict[str, Any], *, thresholds: RuleThresholds) -> dict[str, Any]:
    stats = window_stats(
        pane_from_record(record), start_ms=record["window_start"], end_ms=record["window_end"]
    )
    alerts = window_alerts(pane_from_record(record), thresholds=thresholds)
    return {
        "restaurant_id": restaurant_id,
        **stats,
        "closed_at_ms": record["closed_at"],
        "alerts": alerts,
        "severity": worst(alerts),
    }
