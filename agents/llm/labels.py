"""The enrichment vocabulary (labels, categories) and the value types that carry it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum


class Sentiment(StrEnum):
    """Sentiment labels; the values are the Avro enum symbols of ``ReviewEnriched``."""

    POSITIVE = "POSITIVE"
    NEUTRAL = "NEUTRAL"
    NEGATIVE = "NEGATIVE"
    CRITICAL = "CRITICAL"


class Category(StrEnum):
    """What a review is about; the values are the Avro enum symbols (lower case)."""

    DELIVERY_TIME = "delivery_time"
    FOOD_QUALITY = "food_quality"
    TEMPERATURE = "temperature"
    PACKAGING = "packaging"
    PRICE = "price"
    SERVICE = "service"
    HYGIENE = "hygiene"
    OTHER = "other"


SENTIMENT_VALUES: frozenset[str] = frozenset(s.value for s in Sentiment)
CATEGORY_VALUES: frozenset[str] = frozenset(c.value for c in Category)


@dataclass(frozen=True, slots=True)
class Enrichment:
    """One review's enrichment, whoever produced it (LLM, cache or heuristic).

    Validated on construction so that no code path can emit a label or category the
    downstream Avro enums would reject.
    """

    label: Sentiment
    score: float
    categories: tuple[str, ...]
    reply_draft: str

    def __post_init__(self) -> None:
        if self.label not in SENTIMENT_VALUES:
            raise ValueError(f"unknown sentiment label {self.label!r}")
        object.__setattr__(self, "label", Sentiment(self.label))
        if not math.isfinite(self.score) or not -1.0 <= self.score <= 1.0:
            raise ValueError(f"score {self.score!r} is outside [-1, 1]")
        if not self.categories:
            raise ValueError("categories must not be empty (use 'other')")
        unknown = [c for c in self.categories if c not in CATEGORY_VALUES]
        if unknown:
            raise ValueError(f"unknown categories {unknown!r}")
        object.__setattr__(self, "categories", tuple(str(c) for c in self.categories))


@dataclass(frozen=True, slots=True)
class ReviewInput:
    """What the LLM sees of a review: an opaque ``ref``, the (redacted) text, the rating."""

    ref: str
    text: str
    rating: int
    language: str | None = None
