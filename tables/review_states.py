"""A review's enrichment state: where it is, so a UI can tell "still being enriched" from "lost".

Seed 000 §5.2 names the risk ("the UI sees the review but not its enrichment yet") and its
answer: states, pending → processing → enriched, with light polling. The states:

- ``PENDING``: folded at first sight, counted with the local heuristic's *provisional* label;
- ``PROCESSING``: its LLM call is queued or in flight, or a retry is scheduled (``attempt``);
- one final state: ``ENRICHED``, ``FALLBACK`` (the heuristic's label: the LLM failed, the
  backlog was full, the pane owed its cap), ``BUDGET_SKIPPED`` (a cap or quota refused the
  call), or ``DEAD_LETTERED`` (the stage could not fold it: its dead letter says why).

A state never goes backwards (:func:`advance`): a replay after a crash, a late retry copy or
a second worker's answer cannot move a final review back to ``PENDING``. The record is
keyed by restaurant and review id; a *new event* of the same review (another ``event_id``)
starts its own states, as decode counts it as a review of its own.

The stage writes ``PENDING`` and the final state into the ``review-states`` table with its
batches; a scheduled retry is written as ``PROCESSING`` with its attempt. A call queued or
in flight is known only to the owner's memory: :func:`view` lays it over the stored record.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class ReviewState(StrEnum):
    PENDING = "PENDING"
    PROCESSING = "PROCESSING"
    ENRICHED = "ENRICHED"
    FALLBACK = "FALLBACK"
    BUDGET_SKIPPED = "BUDGET_SKIPPED"
    DEAD_LETTERED = "DEAD_LETTERED"


FINAL = frozenset({ReviewState.ENRICHED, ReviewState.FALLBACK, ReviewState.BUDGET_SKIPPED,
                   ReviewState.DEAD_LETTERED})
HISTORY_MAX = 8  # states kept per record: PENDING, a few PROCESSING attempts, the final one
REASON_MAX_CHARS = 200


def rank(state: str) -> int:
    if state in FINAL:
        return 2
    return 1 if state == ReviewState.PROCESSING else 0


@dataclass(frozen=True, slots=True)
class Entered:
    """A review entering a state, as the stage saw it."""

    restaurant_id: str
    review_id: str
    event_id: str
    trace_id: str | None
    state: ReviewState
    at_ms: int
    label: str | None = None
    provisional: bool = False
    score: float | None = None
    attempt: int = 1
    model: str | None = None
    prompt_version: str | None = None
    reason: str | None = None

    def step(self) -> dict[str, Any]:
        return {"state": str(self.state), "entered_at_ms": self.at_ms, "attempt": self.attempt,
                "label": self.label, "provisional": self.provisional}


def moves(stored: dict[str, Any] | None, entered: Entered) -> bool:
    """Whether ``entered`` moves the review on: forward, or a later attempt of PROCESSING."""
    if stored is None or stored.get("event_id") != entered.event_id:
        return True  # a review never seen, or a new event of it
    before, after = rank(stored["state"]), rank(entered.state)
    if after != before:
        return after > before
    return entered.state == ReviewState.PROCESSING and entered.attempt > int(stored.get("attempt", 1))


def advance(stored: dict[str, Any] | None, entered: Entered) -> dict[str, Any] | None:
    """The stored record after ``entered``; None when it would not move the review on.

    What a state does not know yet (the provisional label of a PROCESSING written at a
    retry, say) is kept from the record before.
    """
    if not moves(stored, entered):
        return None
    same = stored is not None and stored.get("event_id") == entered.event_id
    history = list(stored["history"]) if same and stored is not None else []
    record = {
        "restaurant_id": entered.restaurant_id, "review_id": entered.review_id,
        "event_id": entered.event_id, "trace_id": entered.trace_id, "state": str(entered.state),
        "entered_at_ms": entered.at_ms, "label": entered.label, "provisional": entered.provisional,
        "score": entered.score, "attempt": entered.attempt, "model": entered.model,
        "prompt_version": entered.prompt_version,
        "reason": None if entered.reason is None else entered.reason[:REASON_MAX_CHARS],
        "first_seen_ms": stored["first_seen_ms"] if same and stored is not None else entered.at_ms,
        "history": [*history, entered.step()][-HISTORY_MAX:],
    }
    if same and stored is not None and entered.label is None:
        record["label"], record["provisional"] = stored.get("label"), bool(stored.get("provisional"))
        record["score"] = stored.get("score")
        record["history"][-1].update(label=record["label"], provisional=record["provisional"])
    return record


@dataclass(frozen=True, slots=True)
class InFlight:
    """What only the owner's memory knows: the review's call is queued or in flight."""

    attempt: int
    since_ms: int


def view(stored: dict[str, Any] | None, in_flight: InFlight | None, *, now_ms: int,
         ttl_ms: int) -> dict[str, Any] | None:
    """The API's answer for a stored record (None: unknown, or older than ``ttl_ms``).

    A review whose call is queued or in flight reads ``PROCESSING`` with its attempt, even
    while the table still says ``PENDING``; a final state is never overlaid.
    """
    if stored is None or now_ms - int(stored.get("first_seen_ms", stored["entered_at_ms"])) > ttl_ms:
        return None
    answer = {key: value for key, value in stored.items() if key != "first_seen_ms"}
    answer["history"] = [dict(step) for step in stored["history"]]
    if in_flight is not None:
        processing = Entered(stored["restaurant_id"], stored["review_id"], stored["event_id"],
                             stored.get("trace_id"), ReviewState.PROCESSING, in_flight.since_ms,
                             attempt=in_flight.attempt)
        overlaid = advance(stored, processing)
        if overlaid is not None:
            answer = {key: value for key, value in overlaid.items() if key != "first_seen_ms"}
    answer["final"] = answer["state"] in FINAL
    return answer
