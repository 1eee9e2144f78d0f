"""Every topic name as a constant, beside a function that declares it on the app.

Values and keys travel as raw bytes: Avro decoding happens inside the agents, where a
failure can be dead-lettered with its reason instead of crashing the stream.
"""

from __future__ import annotations

from dataclasses import dataclass

import faust

# Inputs, written by other services (Avro, Confluent wire format).
REVIEWS_CREATED = "reviews.created"
ORDERS_DELIVERED = "orders.delivered"

# Outputs (key: restaurant id, value: Avro under TopicNameStrategy `<topic>-value`).
REVIEWS_ENRICHED = "reviews.enriched"
CRITICAL_ALERT = "reviews.critical_alert"
AGGREGATES = "restaurants.aggregates"
RESTAURANT_ALERTS = "restaurants.alerts"
BUDGET_ALERTS = "budget.alerts"
RETRY = "reviews.retry"
DLQ = "reviewpulse.dlq"

# Which record each Avro topic carries; `reviewpulse schemas register` registers these.
TOPIC_RECORDS: dict[str, str] = {
    REVIEWS_CREATED: "ReviewCreated",
    ORDERS_DELIVERED: "OrderDelivered",
    REVIEWS_ENRICHED: "ReviewEnriched",
    CRITICAL_ALERT: "CriticalAlert",
    AGGREGATES: "RestaurantWindowAggregate",
    RESTAURANT_ALERTS: "RestaurantAlert",
    BUDGET_ALERTS: "BudgetAlert",
    DLQ: "DeadLetter",
}

# Headers are defined once, in streams.protocol (re-exported for the offline commands).
from streams.protocol import H_ORIGIN, H_REPLAY, H_TRACE  # noqa: E402

__all__ = ["H_ORIGIN", "H_REPLAY", "H_TRACE"]


def by_restaurant_topic_name(app_id: str) -> str:
    """The repartition topic: every input keyed by restaurant id (one hop, then all state is local)."""
    return f"{app_id}-by-restaurant"


@dataclass(frozen=True)
class Topics:
    """The declared topics of one app."""

    reviews_created: faust.TopicT
    orders_delivered: faust.TopicT
    by_restaurant: faust.TopicT
    retry: faust.TopicT
    enriched: faust.TopicT
    critical_alert: faust.TopicT
    aggregates: faust.TopicT
    restaurant_alerts: faust.TopicT
    budget_alerts: faust.TopicT
    dlq: faust.TopicT


def declare_topics(app: faust.App, *, app_id: str, partitions: int) -> Topics:
    def raw(name: str, *, internal: bool = False) -> faust.TopicT:
        return app.topic(
            name,
            key_type=bytes,
            value_type=bytes,
            key_serializer="raw",
            value_serializer="raw",
            partitions=partitions,
            internal=internal,
        )

    return Topics(
        reviews_created=raw(REVIEWS_CREATED),
        orders_delivered=raw(ORDERS_DELIVERED),
        by_restaurant=raw(by_restaurant_topic_name(app_id), internal=True),
        retry=raw(RETRY, internal=True),
        enriched=raw(REVIEWS_ENRICHED, internal=True),
        critical_alert=raw(CRITICAL_ALERT, internal=True),
        aggregates=raw(AGGREGATES, internal=True),
        restaurant_alerts=raw(RESTAURANT_ALERTS, internal=True),
        budget_alerts=raw(BUDGET_ALERTS, internal=True),
        dlq=raw(DLQ, internal=True),
    )
