"""Every Prometheus metric, defined once (prefix ``reviewpulse_``, units in names).

Together they give the six rows of seed 000 §5.1: queue depth (consumer lag), processing
lag, LLM p99 (from the duration histogram), DLQ rate and retry rate (as ratios of
consumed events) and cost per 1,000 events (cost over consumed).
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from schema_registry.errors import RETRIABLE_REASONS

REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds, from 50 ms to 10 min: covers the 8 s target and the 30 s critical of seed 000.
LAG_BUCKETS_S = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 15, 30, 60, 120, 300, 600)
# LLM calls: seed 000 has p99 < 10 s target and > 18 s critical; 12 s is the timeout.
LLM_BUCKETS_S = (0.025, 0.05, 0.1, 0.2, 0.4, 0.8, 1.5, 3, 6, 10, 12, 18, 30)

EVENTS_CONSUMED = Counter(
    "reviewpulse_events_consumed", "Input records read, per topic.", ["topic"], registry=REGISTRY
)
CONSUMER_LAG = Gauge(
    "reviewpulse_consumer_lag_messages",
    "Records behind the end of each assigned partition (seed 000: queue_depth).",
    ["topic", "partition"], registry=REGISTRY,
)
PROCESSING_LAG = Histogram(
    "reviewpulse_processing_lag_seconds", "Enriched time minus the input record's Kafka timestamp "
    "(when it reached Kafka), per review: ReviewPulse's own delay.",
    buckets=LAG_BUCKETS_S, registry=REGISTRY,
)
EVENT_AGE = Histogram(
    "reviewpulse_event_age_seconds", "Enriched time minus occurred_at, per review: the event's age, "
    "how late its producer sent it included (kept apart from processing lag).",
    buckets=LAG_BUCKETS_S, registry=REGISTRY,
)
LLM_DURATION = Histogram(
    "reviewpulse_llm_request_duration_seconds", "Duration of one LLM HTTP request.",
    buckets=LLM_BUCKETS_S, registry=REGISTRY,
)
LLM_REQUESTS = Counter(
    "reviewpulse_llm_requests", "LLM requests by outcome (ok, timeout, server_error, "
    "rate_limited, connection_error, malformed, breaker_open, client_error).",
    ["outcome"], registry=REGISTRY,
)
LLM_RETRIES = Counter(
    "reviewpulse_llm_retries", "LLM requests retried inside one call (backoff).", registry=REGISTRY
)
EVENTS_RETRIED = Counter(
    "reviewpulse_events_retried", "Reviews sent to reviews.retry for a later attempt.",
    registry=REGISTRY,
)
DLQ_EVENTS = Counter(
    "reviewpulse_dlq_events", "Records dead-lettered, by reason.", ["reason"], registry=REGISTRY
)
ENRICHED = Counter(
    "reviewpulse_events_enriched", "Reviews emitted to reviews.enriched, by status.", ["status"],
    registry=REGISTRY,
)
DUPLICATES = Counter(
    "reviewpulse_duplicates_skipped", "Redelivered events skipped by event_id.", registry=REGISTRY
)
TOKENS = Counter(
    "reviewpulse_llm_tokens", "LLM tokens, by direction (in, out).", ["direction"], registry=REGISTRY
)
COST = Counter(
    "reviewpulse_llm_cost_micro_usd", "LLM cost in micro-dollars.", registry=REGISTRY
)
CACHE_HITS = Counter(
    "reviewpulse_llm_cache_hits", "Reviews answered from the result cache.", registry=REGISTRY
)
BREAKER_STATE = Gauge(
    "reviewpulse_llm_breaker_state", "Circuit breaker: 0 closed, 1 half-open, 2 open.",
    registry=REGISTRY,
)
BUDGET_REMAINING = Gauge(
    "reviewpulse_llm_token_budget_remaining", "Tokens left in this minute's global budget.",
    registry=REGISTRY,
)
BUDGET_SHARE = Gauge(
    "reviewpulse_budget_share", "Share of the group's token budgets this worker enforces: the "
    "by-restaurant partitions it owns out of all of them (changes on each rebalance).",
    registry=REGISTRY,
)
# Per upstream service (metadata.source). The label is a source listed in
# REVIEWPULSE_SOURCE_TOKEN_BUDGETS or "*" (agents.llm.quotas): bounded by configuration.
SOURCE_TOKENS = Counter(
    "reviewpulse_source_llm_tokens", "LLM tokens (in and out) spent on each source's reviews.",
    ["source"], registry=REGISTRY,
)
SOURCE_COST = Counter(
    "reviewpulse_source_llm_cost_micro_usd", "LLM cost of each source's reviews, micro-dollars.",
    ["source"], registry=REGISTRY,
)
SOURCE_SKIPPED = Counter(
    "reviewpulse_source_budget_skipped", "Reviews BUDGET_SKIPPED because their source's token "
    "quota was spent (reason source_quota).", ["source"], registry=REGISTRY,
)
BUDGET_ALERTS = Counter(
    "reviewpulse_budget_alerts", "BudgetAlert records raised (budget.alerts): a source's quota or the "
    "global budget at its warning share (WARNING) or refusing calls (CRITICAL).",
    ["scope", "severity"], registry=REGISTRY,
)
SOURCE_QUOTA_REMAINING = Gauge(
    "reviewpulse_source_token_quota_remaining", "Tokens left in this minute of this worker's "
    "share of each source's quota (of the global budget for a source without a quota).",
    ["source"], registry=REGISTRY,
)
SOURCE_DEFAULTED = Counter(
    "reviewpulse_source_defaulted", "Reviews counted under the default source \"*\", by why: "
    "unlisted, empty, malformed, overlong (a producer's source is never a label unbounded).",
    ["reason"], registry=REGISTRY,
)
CRITICAL_ALERTS = Counter(
    "reviewpulse_critical_alerts", "CriticalAlert records emitted.", registry=REGISTRY
)
ALERTS = Counter(
    "reviewpulse_alerts_emitted", "RestaurantAlert records emitted, by rule.", ["rule"],
    registry=REGISTRY,
)
AGGREGATES = Counter(
    "reviewpulse_aggregates_emitted", "Final window aggregates emitted, by window kind.", ["kind"],
    registry=REGISTRY,
)
LATE_EVENTS = Counter(
    "reviewpulse_late_events", "Events later than their window's grace, counted as late.",
    registry=REGISTRY,
)
PROVISIONAL_LABELS = Counter(
    "reviewpulse_window_provisional_labels", "Reviews counted in a final window aggregate with the "
    "heuristic's provisional label because their LLM answer had not arrived when it closed.",
    ["kind"], registry=REGISTRY,
)
ENRICHED_AFTER_CLOSE = Counter(
    "reviewpulse_enrichment_after_close", "Final enrichments that arrived after the review's "
    "tumbling window had closed: sent on reviews.enriched, never changing that final aggregate.",
    registry=REGISTRY,
)
ENRICH_PENDING = Gauge(
    "reviewpulse_enrichment_pending", "Reviews folded at first sight whose final enrichment is "
    "queued or in flight (their input offsets are not committed yet).", registry=REGISTRY,
)
ENRICH_UNJOINED = Gauge(
    "reviewpulse_enrichment_unjoined", "Reviews whose enrichment was sent but has not yet joined "
    "its pane durably: after a crash these are enriched again (bounded by "
    "REVIEWPULSE_ENRICH_MAX_UNJOINED).", registry=REGISTRY,
)
ENRICH_SHED = Counter(
    "reviewpulse_enrichment_shed", "Reviews enriched by the heuristic at once because the "
    "enrichment backlog was full (REVIEWPULSE_ENRICH_MAX_PENDING or _ENRICH_BACKLOG_MAX_BYTES) "
    "or their pane owed its cap of reviews (REVIEWPULSE_PANE_MAX_PENDING).", registry=REGISTRY,
)
MEMORY_BYTES = Gauge(
    "reviewpulse_memory_bytes", "Bytes a bounded in-memory part holds, as its own estimate counts "
    "them (payloads plus a per-entry overhead): enrich_backlog, llm_cache, web_history, "
    "web_recent, schema_cache. Each stays under its REVIEWPULSE_*_MAX_BYTES.",
    ["part"], registry=REGISTRY,
)
MEMORY_EVICTED = Counter(
    "reviewpulse_memory_evicted", "Entries a bounded in-memory part let go at its byte bound: "
    "the oldest cache entries and history windows; for enrich_backlog, reviews shed to the "
    "heuristic (FALLBACK) instead of queued.", ["part"], registry=REGISTRY,
)
INPUT_OUTCOMES = Counter(
    "reviewpulse_input_outcomes", "Where each consumed input record ended, per input topic: "
    "enriched (a review's final reviews.enriched) or folded (an order), dead_lettered, duplicate, "
    "retry_scheduled / retry_returned (a review waiting in reviews.retry is the difference). "
    "consumed = enriched + folded + dead_lettered + duplicate + retry_scheduled - retry_returned "
    "once nothing is in flight.", ["topic", "outcome"], registry=REGISTRY,
)
REGISTRY_WAITS = Counter(
    "reviewpulse_registry_waits", "Times decode waited for a schema registry that did not serve "
    "a writer schema, by reason: no_answer, server_error (5xx), timeout (408), rate_limited (429), "
    "unauthorized (401), forbidden (403), path_not_found (a 404 that is not the registry's "
    "verdict), redirected (3xx), unexpected_answer. The record is neither acked nor "
    "dead-lettered meanwhile.", ["reason"], registry=REGISTRY,
)
WORKER_HEALTHY = Gauge(
    "reviewpulse_worker_healthy", "1 while /health answers 200; 0 once the app crashed, an agent "
    "or an endless task died, or a commit is stuck (/health's JSON says which; streams.health).",
    registry=REGISTRY,
)
COMMIT_STALLED = Gauge(
    "reviewpulse_commit_stalled_seconds", "Per assigned partition an agent reads: seconds its "
    "committed offset has not moved while records wait behind it (0 when none wait); /health "
    "fails at REVIEWPULSE_COMMIT_STUCK_S.", ["topic", "partition"], registry=REGISTRY,
)
WEB_ROUTED = Counter(
    "reviewpulse_web_routed_requests", "Per-restaurant web requests, by how they were answered "
    "(local: this worker owns the partition; proxied: forwarded to the owner; unavailable: "
    "no owner known, rebalancing; error: the owner did not answer).",
    ["outcome"], registry=REGISTRY,
)

# Known label values start at 0, so a series exists (and rate() works) before its first event:
# a dashboard shows "0 timeouts", not "no data". Kept equal to the enums they mirror by
# tests/integration/test_metrics_endpoint.py (agents.llm.client.OUTCOMES, tables.rules.Rule, ...).
LLM_OUTCOMES = ("ok", "timeout", "server_error", "rate_limited", "connection_error", "malformed",
                "breaker_open", "client_error")
ALERT_RULES = ("negative_share", "sentiment_drop", "window_cost", "processing_lag",
               "delivery_delay", "budget_exceeded", "budget_warning")
SOURCE_DEFAULTED_REASONS = ("unlisted", "empty", "malformed", "overlong")  # agents.llm.quotas
ENRICH_STATUSES = ("ENRICHED", "FALLBACK", "BUDGET_SKIPPED")
WINDOW_KINDS = ("TUMBLING", "HOPPING")
INPUT_TOPICS = ("reviews.created", "orders.delivered")  # streams.topics (no import: no Faust here)
WEB_ROUTE_OUTCOMES = ("local", "proxied", "unavailable", "error")
REGISTRY_WAIT_REASONS = RETRIABLE_REASONS  # a wait's reason is its error's (schema_registry.errors)
MEMORY_PARTS = ("enrich_backlog", "llm_cache", "web_history", "web_recent", "schema_cache")
INPUT_OUTCOME_NAMES = ("enriched", "folded", "dead_lettered", "duplicate", "retry_scheduled",
                       "retry_returned")
_input_outcome_children: dict[tuple[str, str], Any] = {}


def input_outcome(topic: str, outcome: str) -> None:
    """One input record's outcome (the labelled child looked up once: .labels() costs µs)."""
    child = _input_outcome_children.get((topic, outcome))
    if child is None:
        child = _input_outcome_children[(topic, outcome)] = INPUT_OUTCOMES.labels(topic, outcome)
    child.inc()


def _initialise_labels() -> None:
    for outcome in LLM_OUTCOMES:
        LLM_REQUESTS.labels(outcome)
    for rule in ALERT_RULES:
        ALERTS.labels(rule)
    for status in ENRICH_STATUSES:
        ENRICHED.labels(status)
    for kind in WINDOW_KINDS:
        AGGREGATES.labels(kind)
        PROVISIONAL_LABELS.labels(kind)
    for topic in INPUT_TOPICS:
        EVENTS_CONSUMED.labels(topic)
        for outcome in INPUT_OUTCOME_NAMES:
            INPUT_OUTCOMES.labels(topic, outcome)
    for direction in ("in", "out"):
        TOKENS.labels(direction)
    for outcome in WEB_ROUTE_OUTCOMES:
        WEB_ROUTED.labels(outcome)
    for reason in REGISTRY_WAIT_REASONS:
        REGISTRY_WAITS.labels(reason)
    for part in MEMORY_PARTS:
        MEMORY_BYTES.labels(part)
        MEMORY_EVICTED.labels(part)
    for reason in SOURCE_DEFAULTED_REASONS:
        SOURCE_DEFAULTED.labels(reason)
    BUDGET_SHARE.set(1)
    WORKER_HEALTHY.set(1)  # alive until a check says otherwise (a gauge starts at 0)


_initialise_labels()
