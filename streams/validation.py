"""Value rules of the inputs beyond their Avro schema (rating range, text length, ids).

Pure, so the decode agent and the offline commands (reprocess, dlq replay) apply the same
rules without building the Faust app.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Invalid(Exception):
    """A decoded value that breaks a rule of ours; ``reason`` labels the dead letter."""

    reason: str
    detail: str

    def __str__(self) -> str:
        return self.detail


def validate_review(review: dict[str, Any], *, text_max_chars: int) -> None:
    entity = review["entity"]
    if not review["event_id"]:
        raise Invalid("invalid_value", "event_id is empty")
    if not entity["restaurant_id"]:
        raise Invalid("invalid_value", "entity.restaurant_id is empty")
    if not 1 <= entity["rating"] <= 5:
        raise Invalid("invalid_value", f"entity.rating is {entity['rating']}, expected 1 to 5")
    if len(entity["text"]) > text_max_chars:
        raise Invalid("text_too_long",
                      f"entity.text has {len(entity['text'])} chars, cap is {text_max_chars}")


def validate_order(order: dict[str, Any]) -> None:
    if not order["event_id"]:
        raise Invalid("invalid_value", "event_id is empty")
    if not order["restaurant_id"]:
        raise Invalid("invalid_value", "restaurant_id is empty")
