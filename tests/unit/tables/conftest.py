"""Factories for the pure table value types: a test states only what it is about."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from typing import Any

import fastavro
import pytest
from fastavro.validation import validate

from avro_schemas import schema_path
from tables.values import PaneAggregate

REVIEW_DEFAULTS: dict[str, Any] = {
    "rating": 4,
    "score": 0.5,
    "label": "POSITIVE",
    "categories": ("food_quality",),
    "status": "ENRICHED",
    "cache_hit": False,
    "tokens_in": 120,
    "tokens_out": 30,
    "cost_micro_usd": 36,
    "processing_lag_ms": 900,
}


@pytest.fixture
def review() -> Callable[..., dict[str, Any]]:
    """``review(**overrides)``: keyword arguments for ``PaneAggregate.add_review``."""

    def make(**overrides: Any) -> dict[str, Any]:
        return {**REVIEW_DEFAULTS, **overrides}

    return make


@pytest.fixture
def pane(review: Callable[..., dict[str, Any]]) -> Callable[..., PaneAggregate]:
    """``pane(*reviews, orders=(delays...), late=n)``: a pane with those events folded in."""

    def make(*reviews: dict[str, Any], orders: tuple[int, ...] = (), late: int = 0) -> PaneAggregate:
        agg = PaneAggregate()
        for r in reviews:
            agg.add_review(**review(**r))
        for delay_ms in orders:
            agg.add_order(delay_ms=delay_ms)
        for _ in range(late):
            agg.add_late()
        return agg

    return make


class AvroContract:
    """One output schema: validate a record and round-trip it through fastavro's binary."""

    def __init__(self, record_name: str) -> None:
        self.schema = fastavro.parse_schema(json.loads(schema_path(record_name).read_text()))

    def validate(self, record: dict[str, Any]) -> bool:
        return validate(record, self.schema, raise_errors=True)

    def round_trip(self, record: dict[str, Any]) -> dict[str, Any]:
        buf = io.BytesIO()
        fastavro.schemaless_writer(buf, self.schema, record)
        buf.seek(0)
        return fastavro.schemaless_reader(buf, self.schema)


@pytest.fixture(scope="session")
def aggregate_contract() -> AvroContract:
    return AvroContract("RestaurantWindowAggregate")


@pytest.fixture(scope="session")
def alert_contract() -> AvroContract:
    return AvroContract("RestaurantAlert")
