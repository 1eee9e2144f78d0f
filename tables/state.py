"""The changelogged tables of the restaurant stage: names, declarations, and their key layout.

One agent (the restaurant stage) writes every table here, once per key per batch; the key
formats are defined in :mod:`streams.protocol`. Table names are data: renaming one drops
its state (a new changelog topic).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import faust

from streams.faust_internals import MarksTable
from streams.settings import Settings

# Table names are data: renaming one drops its state (a new changelog topic).
DEDUPE = "dedupe"
PANES = "panes"
CLOSURES = "closures"
DAILY_COST = "daily-cost"
LATEST = "latest-aggregates"


@dataclass(frozen=True)
class Tables:
    dedupe: faust.Table  # event_id -> by-restaurant offset where it was first seen (MarksTable)
    panes: faust.Table  # "restaurant|pane_start_ms" -> PaneAggregate.to_json()
    closures: faust.Table  # "r:<restaurant>" -> {"t": end, "h": end, "panes": [...]}; "~p<n>" index
    daily_cost: faust.Table  # "restaurant|day_start_ms" -> {"spent": micro_usd, "alerted": bool}
    latest: faust.GlobalTable  # restaurant -> latest closed tumbling RestaurantWindowAggregate


def declare_tables(app: faust.App, settings: Settings) -> Tables:
    # Keys and values are JSON (key_type str, no value type: Faust picks json for both).
    def table(name: str, **extra: Any) -> faust.Table:
        return app.Table(
            name, default=None, key_type=str, partitions=settings.topic_partitions, **extra,
        )

    def marks_table(name: str, **extra: Any) -> faust.Table:  # what app.Table does, our class
        return app.tables.add(MarksTable(
            app, name=name, default=None, key_type=str, partitions=settings.topic_partitions,
            beacon=app.tables.beacon, **extra))

    ttl_ms = settings.dedupe_ttl_s * 1000
    return Tables(
        # RocksDB's TTL expires local entries; compact+delete with retention bounds the
        # changelog, so a week of event ids never grows without limit.
        # One changelog record per batch of marks (streams.faust_internals point 6).
        dedupe=marks_table(DEDUPE, options={"ttl": settings.dedupe_ttl_s},
                     extra_topic_configs={"cleanup.policy": "compact,delete",
                                          "retention.ms": str(ttl_ms)}),
        panes=table(PANES),
        closures=table(CLOSURES),
        daily_cost=table(DAILY_COST),
        # Same partitioning as the rest (written in the restaurant's partition); global:
        # every worker reads every partition, so any worker's web view can list all.
        # synchronize_all_active_partitions: without it a GlobalTable only holds what this
        # worker wrote (faust-streaming #283), measured with two workers.
        latest=app.GlobalTable(LATEST, default=None, key_type=str,
                               partitions=settings.topic_partitions,
                               synchronize_all_active_partitions=True),
    )


@dataclass(frozen=True)
class PartitionTables:
    """The tables as one partition sees them: plain mappings, so the stage core is testable.

    In the worker each is a Faust table bound to an event of the partition
    (``streams.faust_internals.BoundTable``); in unit tests, dicts.
    """

    dedupe: MutableMapping[str, Any]
    panes: MutableMapping[str, Any]
    closures: MutableMapping[str, Any]
    daily_cost: MutableMapping[str, Any]
    latest: MutableMapping[str, Any]
