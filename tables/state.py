"""The changelogged tables of the restaurant stage: names, the tables record, their key layout.

One agent (the restaurant stage) writes every table here, once per key per batch; the key
formats are defined in :mod:`streams.protocol`; :mod:`streams.app` declares them on the
Faust app. Table names are data: renaming one drops its state (a new changelog topic).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from typing import Any

import faust

# Table names are data: renaming one drops its state (a new changelog topic).
DEDUPE = "dedupe"
PANES = "panes"
CLOSURES = "closures"
DAILY_COST = "daily-cost"
LATEST = "latest-aggregates"
REVIEW_STATES = "review-states"


@dataclass(frozen=True)
class Tables:
    dedupe: faust.Table  # event_id -> by-restaurant offset where it was first seen (MarksTable)
    panes: faust.Table  # "restaurant|pane_start_ms" -> PaneAggregate.to_json()
    closures: faust.Table  # "r:<restaurant>" -> tables.panes.EMPTY_CLOSURE's shape; "~p<n>" index
    daily_cost: faust.Table  # "restaurant|day_start_ms" -> {"spent", "alerted", "warned"}
    latest: faust.GlobalTable  # restaurant -> latest closed tumbling RestaurantWindowAggregate
    review_states: faust.Table  # review_state_key -> tables.review_states record (RocksDB TTL)


@dataclass(frozen=True)
class PartitionTables:
    """The tables as one partition sees them: plain mappings, so the stage core is testable.

    In the worker each is a Faust table bound to an event of the partition
    (``streams.faust.BoundTable``); in unit tests, dicts.
    """

    dedupe: MutableMapping[str, Any]
    panes: MutableMapping[str, Any]
    closures: MutableMapping[str, Any]
    daily_cost: MutableMapping[str, Any]
    latest: MutableMapping[str, Any]
    review_states: MutableMapping[str, Any]
