"""The LLM simulator's behaviour: its knobs, its seeded failure draws, and its answers.

Kept apart from the HTTP layer (simulator.py) so the draws and answers are testable,
and reusable by benchmarks, without a server.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from agents.llm.heuristic import enrich_heuristic
from agents.llm.labels import ReviewInput
from agents.llm.prompt import extract_reviews

MALFORMED_KINDS = ("invalid_json", "wrong_count", "bad_label")
OUTCOMES = ("ok", "500", "429", "hang", *MALFORMED_KINDS)
# Recorded request bodies kept for inspection; bounded so a long demo cannot grow memory.
MAX_RECORDED_REQUESTS = 5_000


@dataclass(slots=True)
class SimulatorConfig:
    """Behaviour knobs; rates are probabilities in [0, 1] drawn per request."""

    latency_ms: float = 20.0
    jitter_ms: float = 0.0
    error_500_rate: float = 0.0
    rate_429_rate: float = 0.0
    retry_after_s: float = 1.0
    hang_rate: float = 0.0
    hang_s: float = 600.0  # longer than any sane client timeout: forces LLMTimeoutError
    malformed_rate: float = 0.0
    malformed_kind: str = "invalid_json"
    seed: int | None = None
    model: str = "reviewpulse-sim-1"
    script: list[str] = field(default_factory=list)

    def validate(self) -> None:
        for name in ("error_500_rate", "rate_429_rate", "hang_rate", "malformed_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be within [0, 1]")
        if self.latency_ms < 0 or self.jitter_ms < 0 or self.hang_s < 0:
            raise ValueError("latency_ms, jitter_ms and hang_s must not be negative")
        if self.malformed_kind not in MALFORMED_KINDS:
            raise ValueError(f"malformed_kind must be one of {MALFORMED_KINDS}")
        unknown = [o for o in self.script if o not in OUTCOMES]
        if unknown:
            raise ValueError(f"unknown script outcomes {unknown}; use {OUTCOMES}")


class SimulatorState:
    """Mutable state shared by the handlers of one simulator instance."""

    def __init__(self, config: SimulatorConfig) -> None:
        config.validate()
        self.config = config
        self.rng = random.Random(config.seed)
        self.requests: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDED_REQUESTS)
        self.completions = 0
        self.stopping = asyncio.Event()

    def update(self, changes: dict[str, Any]) -> None:
        known = {f.name for f in fields(SimulatorConfig)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise ValueError(f"unknown config fields {unknown}")
        candidate = SimulatorConfig(**{**asdict(self.config), **changes})
        candidate.validate()
        self.config = candidate
        if "seed" in changes:
            self.rng = random.Random(candidate.seed)

    def next_outcome(self) -> str:
        if self.config.script:
            return self.config.script.pop(0)
        cfg, draw = self.config, self.rng.random
        for outcome, rate in (
            ("hang", cfg.hang_rate),
            ("500", cfg.error_500_rate),
            ("429", cfg.rate_429_rate),
            (cfg.malformed_kind, cfg.malformed_rate),
        ):
            if rate and draw() < rate:
                return outcome
        return "ok"


def answer_content(reviews: list[dict[str, Any]], outcome: str = "ok") -> str:
    """The assistant message for ``reviews`` (heuristic), damaged as ``outcome`` says."""
    results = []
    for item in reviews:
        try:
            rating = int(item.get("rating", 3))
        except (TypeError, ValueError):
            rating = 3
        review = ReviewInput(
            ref=str(item.get("ref", "")), text=str(item.get("text", "")), rating=rating
        )
        enrichment = enrich_heuristic(review)
        results.append(
            {
                "ref": review.ref,
                "label": enrichment.label.value,
                "score": enrichment.score,
                "categories": list(enrichment.categories),
                "reply_draft": enrichment.reply_draft,
            }
        )
    if outcome == "wrong_count" and results:
        results.pop()
    elif outcome == "bad_label" and results:
        results[0]["label"] = "VERY_POSITIVE"
    content = json.dumps({"results": results}, ensure_ascii=False)
    if outcome == "invalid_json":
        content = content[: max(len(content) // 2, 1)]
    return content


def text_of(content: Any) -> str:
    """Message content as text: a string, or OpenAI's list of {"type": "text"} parts."""
    if isinstance(content, list):
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return str(content or "")


def reviews_in(user_text: str) -> list[dict[str, Any]]:
    """The reviews of a prompt: the delimited block, else the outermost JSON array."""
    try:
        return extract_reviews(user_text)
    except ValueError:
        pass
    start, end = user_text.find("["), user_text.rfind("]")
    if 0 <= start < end:
        try:
            items = json.loads(user_text[start : end + 1])
        except json.JSONDecodeError:
            items = None
        if isinstance(items, list) and items and all(isinstance(i, dict) for i in items):
            return items
    raise ValueError("no reviews data block and no JSON array of reviews")
