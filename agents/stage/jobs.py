"""A review whose final enrichment is owed, and the ledger of which reviews are owed.

A job lives from the batch that folds (or replays) its review until its outcome is joined
into the review's pane, or handed on as a ``reviews.retry`` record. A rebalance abandons
every job of the current *generation* (:meth:`agents.stage.StageCore.abandon`): an answer
of an older generation is dropped, because its partition may belong to another worker.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agents.stage.ports import Ack
from streams.memory import str_bytes
from streams.protocol import Item
from streams.settings import FailurePolicy, Settings


def enrich_attempts(settings: Settings) -> int:
    """How many times a worker tries one review's enrichment call (and emission) before it
    gives the heuristic and a dead letter: as many as reviews.retry redelivers it under
    retry_then_fallback, once under fallback_now (issue 30, finding 7)."""
    if settings.llm_failure_policy is FailurePolicy.RETRY_THEN_FALLBACK:
        return settings.llm_max_attempts
    return 1


async def _not_acked(event: Any) -> None:
    raise RuntimeError("a job was acked before the batch that made it gave its ack")


@dataclass(slots=True)
class Job:
    """A review whose final enrichment is owed: the event to ack and the pane to join."""

    event: Any
    partition: int
    item: Item
    pane_start_ms: int
    late: bool
    attempt: int = 1
    provisional: tuple[str, float, tuple[str, ...]] | None = None  # what the fold counted, if known
    generation: int = 0  # the stage's generation when submitted; an older one was abandoned
    owed: bool = False  # counted in OwedReviews: its enrichment is queued, in flight or unjoined
    failures: int = 0  # this worker's failed tries at enriching or emitting it (agents.stage.enricher)
    given_up: str | None = None  # why its tries were spent: it is emitted as FALLBACK + dead letter
    retried_for: str | None = None  # why it was handed on to reviews.retry (its review's state says)
    ack: Ack = _not_acked  # the ack of the stream its event came from, given with its batch
    size_bytes: int = 0  # job_bytes(), counted against enrich_backlog_max_bytes while owed


# Objects an owed review holds besides its payloads: Faust's Event and Message, the Item, its
# Origin, this Job, and the record's dicts (entity, metadata). tracemalloc measured ~2.6 KB
# (tests/unit/agents/test_enrichment_memory.py); rounded up.
JOB_OVERHEAD_BYTES = 4096


def job_bytes(job: Job) -> int:
    """What an owed review holds in memory, estimated once, without a walk (issue 30, finding 9).

    The by-restaurant record's bytes twice (its value, and what decoding it made: the record's
    strings and the original record's bytes it carries), its text again as Python holds it
    (up to 4 bytes a character: one emoji widens the whole string), and the objects.
    """
    value = job.event.message.value or b""
    text = job.item.record.get("entity", {}).get("text")
    return 2 * len(value) + str_bytes(text if isinstance(text, str) else None) + JOB_OVERHEAD_BYTES


class OwedReviews:
    """Event id -> how many of its jobs are submitted and not yet joined (or retried).

    A retry copy (or a replayed original) arriving while one is owed is a duplicate, not a
    second enrichment.
    """

    def __init__(self) -> None:
        self._count: dict[str, int] = {}

    def __contains__(self, event_id: str) -> bool:
        return bool(self._count.get(event_id))

    def submit(self, job: Job, *, generation: int) -> None:
        job.generation, job.owed = generation, True
        event_id = job.item.event_id
        self._count[event_id] = self._count.get(event_id, 0) + 1

    def release(self, job: Job, *, generation: int) -> None:
        """The job's enrichment no longer stands in for its review (joined, or retried)."""
        if not job.owed or job.generation != generation:
            return
        job.owed = False
        event_id = job.item.event_id
        left = self._count.get(event_id, 0) - 1
        if left > 0:
            self._count[event_id] = left
        else:
            self._count.pop(event_id, None)

    def clear(self) -> None:
        self._count.clear()
