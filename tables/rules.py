"""Alert rules on closed windows: pure functions from aggregates and thresholds to decisions.

Each rule returns an :class:`AlertDecision` or ``None``; at most one decision per rule and
window (the highest severity that applies), which is what makes ``alert_id`` unique.
Severities follow the ``AlertSeverity`` contract (WARNING: look today; CRITICAL: act now):

============== ========== ================================================================
rule           window     fires (WARNING) / CRITICAL
============== ========== ================================================================
negative_share hopping    share > X with >= N reviews / share >= min(2X, 1)
sentiment_drop tumbling   avg falls by > D vs the previous window, both with >= M reviews
                          / falls by >= 2D
window_cost    tumbling   cost > cap / never (the daily budget is the hard stop)
processing_lag tumbling   p95 > SLO / p95 > critical
delivery_delay tumbling   p95 > SLO, only with delivered orders / never
============== ========== ================================================================

negative_share escalates on the share, not on "any CRITICAL review": each CRITICAL review
already pages on its own through ``reviews.critical_alert``; this rule is about a trend.
Comparisons are strict ("exceeds"), made on exact values where it matters: the share is
a correctly rounded int division compared with the decimal setting, and the sentiment drop
is compared in integer thousandths, so a value exactly at the threshold never fires.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from tables.values import PaneAggregate
from tables.windows import utc_day


class Rule(StrEnum):
    """The ``AlertRule`` Avro enum (``unknown`` is only a reader default)."""

    NEGATIVE_SHARE = "negative_share"
    SENTIMENT_DROP = "sentiment_drop"
    WINDOW_COST = "window_cost"
    PROCESSING_LAG = "processing_lag"
    DELIVERY_DELAY = "delivery_delay"
    BUDGET_EXCEEDED = "budget_exceeded"
    BUDGET_WARNING = "budget_warning"


class Severity(StrEnum):
    """The ``AlertSeverity`` Avro enum."""

    WARNING = "WARNING"
    CRITICAL = "CRITICAL"


@dataclass(frozen=True, slots=True)
class RuleThresholds:
    """Every alert threshold, in integer units where the data is integer."""

    negative_share: float = 0.4
    negative_min_reviews: int = 5
    sentiment_drop_milli: int = 500  # thousandths of a score point, like score_sum_milli
    sentiment_min_reviews: int = 3
    window_cost_micro_usd: int = 500_000
    processing_lag_slo_ms: int = 8_000
    processing_lag_critical_ms: int = 30_000
    delivery_delay_slo_ms: int = 600_000

    @classmethod
    def from_settings(cls, settings: Any) -> RuleThresholds:
        """From ``streams.settings.Settings`` (the alert_* and *_slo_* fields)."""
        return cls(
            negative_share=settings.alert_negative_share,
            negative_min_reviews=settings.alert_negative_min_reviews,
            sentiment_drop_milli=round(settings.alert_sentiment_drop * 1000),
            sentiment_min_reviews=settings.alert_sentiment_min_reviews,
            window_cost_micro_usd=settings.alert_window_cost_micro_usd,
            processing_lag_slo_ms=round(settings.processing_lag_slo_s * 1000),
            processing_lag_critical_ms=round(settings.processing_lag_critical_s * 1000),
            delivery_delay_slo_ms=round(settings.delivery_delay_slo_s * 1000),
        )


@dataclass(frozen=True, slots=True)
class AlertDecision:
    """A rule fired: what, how bad, the observed value and the threshold it crossed."""

    rule: Rule
    severity: Severity
    value: float
    threshold: float
    message: str


# --- the rules -----------------------------------------------------------------------------
def negative_share(window: PaneAggregate, th: RuleThresholds) -> AlertDecision | None:
    """NEGATIVE + CRITICAL share of a hopping window over X, with at least N reviews."""
    if window.reviews < th.negative_min_reviews:
        return None
    share = window.negative_share
    if share <= th.negative_share:
        return None
    critical_at = min(2 * th.negative_share, 1.0)
    if share >= critical_at:
        severity, threshold = Severity.CRITICAL, critical_at
    else:
        severity, threshold = Severity.WARNING, th.negative_share
    bad = window.negative + window.critical
    return AlertDecision(
        Rule.NEGATIVE_SHARE,
        severity,
        share,
        threshold,
        f"{bad} of {window.reviews} reviews are negative or critical ({share:.0%}), "
        f"above the {threshold:.0%} threshold.",
    )


def sentiment_drop(
    current: PaneAggregate, previous: PaneAggregate | None, th: RuleThresholds
) -> AlertDecision | None:
    """Tumbling average fell by more than D against the previous tumbling window."""
    n_min = th.sentiment_min_reviews
    if previous is None or current.reviews < n_min or previous.reviews < n_min:
        return None
    # drop_milli = prev_sum/prev_n - cur_sum/cur_n, compared without division.
    num = previous.score_sum_milli * current.reviews - current.score_sum_milli * previous.reviews
    den = previous.reviews * current.reviews
    if num <= th.sentiment_drop_milli * den:
        return None
    critical = num >= 2 * th.sentiment_drop_milli * den
    threshold_milli = th.sentiment_drop_milli * (2 if critical else 1)
    drop = num / den / 1000
    return AlertDecision(
        Rule.SENTIMENT_DROP,
        Severity.CRITICAL if critical else Severity.WARNING,
        drop,
        threshold_milli / 1000,
        f"Average sentiment fell from {previous.sentiment_avg:+.2f} to "
        f"{current.sentiment_avg:+.2f} ({drop:.2f} points, threshold {threshold_milli / 1000:.2f}).",
    )


def window_cost(current: PaneAggregate, th: RuleThresholds) -> AlertDecision | None:
    """One tumbling window's LLM cost over the cap (micro-dollars; a cap of 0 fires on any cost)."""
    if current.cost_micro_usd <= th.window_cost_micro_usd:
        return None
    return AlertDecision(
        Rule.WINDOW_COST,
        Severity.WARNING,
        float(current.cost_micro_usd),
        float(th.window_cost_micro_usd),
        f"LLM cost of the window was ${current.cost_micro_usd / 1e6:.4f} over "
        f"{current.llm_calls} calls, above the ${th.window_cost_micro_usd / 1e6:.4f} cap.",
    )


def processing_lag(current: PaneAggregate, th: RuleThresholds) -> AlertDecision | None:
    """Processing-lag p95 of a tumbling window over the SLO (CRITICAL over the critical value)."""
    if not current.processing_lag.count:
        return None
    p95 = current.processing_lag.percentile(0.95)
    if p95 <= th.processing_lag_slo_ms:
        return None
    critical = p95 > th.processing_lag_critical_ms
    threshold = th.processing_lag_critical_ms if critical else th.processing_lag_slo_ms
    return AlertDecision(
        Rule.PROCESSING_LAG,
        Severity.CRITICAL if critical else Severity.WARNING,
        float(p95),
        float(threshold),
        f"Processing lag p95 was {p95 / 1000:.1f} s over {current.processing_lag.count} "
        f"reviews, above {threshold / 1000:.1f} s.",
    )


def delivery_delay(current: PaneAggregate, th: RuleThresholds) -> AlertDecision | None:
    """Delivery-delay p95 of a tumbling window over the SLO (only with delivered orders)."""
    if not current.orders_delivered:
        return None
    p95 = current.delivery_delay.percentile(0.95)
    if p95 <= th.delivery_delay_slo_ms:
        return None
    return AlertDecision(
        Rule.DELIVERY_DELAY,
        Severity.WARNING,
        float(p95),
        float(th.delivery_delay_slo_ms),
        f"Delivery delay p95 was {p95 / 60_000:.1f} min over {current.orders_delivered} "
        f"orders, above {th.delivery_delay_slo_ms / 60_000:.1f} min.",
    )


def evaluate_tumbling(
    current: PaneAggregate, previous: PaneAggregate | None, thresholds: RuleThresholds
) -> list[AlertDecision]:
    """Every tumbling-window rule that fires; ``previous`` is None when unknown or empty."""
    decisions = (
        sentiment_drop(current, previous, thresholds),
        window_cost(current, thresholds),
        processing_lag(current, thresholds),
        delivery_delay(current, thresholds),
    )
    return [d for d in decisions if d is not None]


def evaluate_hopping(window: PaneAggregate, thresholds: RuleThresholds) -> list[AlertDecision]:
    """Every hopping-window rule that fires."""
    decision = negative_share(window, thresholds)
    return [] if decision is None else [decision]


def judge_window(kind: str, window: PaneAggregate, previous: PaneAggregate | None,
                 thresholds: RuleThresholds) -> list[AlertDecision]:
    """The one rule engine: what fires on a closed window of ``kind``.

    The stream judges every window it closes with this, and the web view judges the
    windows it shows with it too, so a window is never judged by two sets of rules.
    ``previous`` (the tumbling window before) matters for sentiment_drop only.
    """
    if str(kind) == "TUMBLING":
        return evaluate_tumbling(window, None if previous is None or previous.is_empty else previous,
                                 thresholds)
    return evaluate_hopping(window, thresholds)


# --- records -------------------------------------------------------------------------------
def alert_record(
    decision: AlertDecision,
    *,
    restaurant_id: str,
    window_start_ms: int,
    window_end_ms: int,
    emitted_at_ms: int,
) -> dict[str, Any]:
    """The ``RestaurantAlert`` Avro record (timestamps as int ms)."""
    rule = str(decision.rule)
    return {
        "alert_id": f"{restaurant_id}:{rule}:{window_start_ms}",
        "restaurant_id": restaurant_id,
        "rule": rule,
        "severity": str(decision.severity),
        "window_start": window_start_ms,
        "window_end": window_end_ms,
        "value": float(decision.value),
        "threshold": float(decision.threshold),
        "message": decision.message,
        "emitted_at": emitted_at_ms,
    }


def budget_exceeded_record(
    *,
    restaurant_id: str,
    spent_micro_usd: int,
    cap_micro_usd: int,
    day_of_ms: int,
    emitted_at_ms: int,
) -> dict[str, Any]:
    """The once-a-day ``budget_exceeded`` alert; the window is the UTC day of ``day_of_ms``.

    The budget module decides when (the first BUDGET_SKIPPED review of the day); the
    deterministic ``alert_id`` (restaurant, rule, day start) lets consumers drop repeats.
    CRITICAL (issue 32.3): the money ran out, the restaurant is served by the heuristic
    until the day ends; its WARNING came earlier (:func:`budget_warning_record`).
    """
    start, end = utc_day(day_of_ms)
    decision = AlertDecision(
        Rule.BUDGET_EXCEEDED,
        Severity.CRITICAL,
        float(spent_micro_usd),
        float(cap_micro_usd),
        f"Daily LLM budget reached: ${spent_micro_usd / 1e6:.4f} spent of a "
        f"${cap_micro_usd / 1e6:.4f} cap; reviews use the heuristic until the UTC day ends.",
    )
    return alert_record(decision, restaurant_id=restaurant_id, window_start_ms=start, window_end_ms=end,
                        emitted_at_ms=emitted_at_ms)


def budget_warning_record(
    *,
    restaurant_id: str,
    spent_micro_usd: int,
    cap_micro_usd: int,
    share: float,
    day_of_ms: int,
    emitted_at_ms: int,
) -> dict[str, Any]:
    """The once-a-day ``budget_warning`` alert (WARNING): ``share`` of the daily cap is spent.

    Paged before the money runs out, not after (issue 32.3); the threshold is the share of
    the cap in micro-dollars, the value what was spent.
    """
    start, end = utc_day(day_of_ms)
    decision = AlertDecision(
        Rule.BUDGET_WARNING,
        Severity.WARNING,
        float(spent_micro_usd),
        float(cap_micro_usd * share),
        f"Daily LLM budget {share:.0%} spent: ${spent_micro_usd / 1e6:.4f} of a "
        f"${cap_micro_usd / 1e6:.4f} cap; past the cap reviews use the heuristic until the UTC day ends.",
    )
    return alert_record(decision, restaurant_id=restaurant_id, window_start_ms=start, window_end_ms=end,
                        emitted_at_ms=emitted_at_ms)
