"""An enrichment answered: each review's outcome is sent before it may join its pane.

Per job: the outcome goes to ``reviews.enriched`` (and the critical alert); a transient
failure goes to ``reviews.retry`` while attempts remain, else to the FALLBACK label and a
dead letter (``llm_exhausted``); a job whose tries this worker spent (``given_up``) likewise.
Two jobs of one review (a replayed original and its retry copy) emit once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from agents.llm.outcome import EnrichOutcome, EnrichStatus, fallback_outcome
from agents.llm.records import enrich_request
from agents.stage.jobs import Job
from agents.stage.outputs import Outputs
from streams import metrics
from streams.protocol import RETRY
from streams.settings import FailurePolicy, Settings

Final = tuple[Job, EnrichOutcome]  # a job and the outcome its pane joins


def give_up(jobs: Sequence[Job], error: BaseException) -> list[EnrichOutcome]:
    """The heuristic for jobs whose enrichment kept failing; :func:`emit` dead-letters them.

    The dead letter is ``llm_exhausted``, as for answers that stayed transient failures:
    the review has its FALLBACK output, and ``reviewpulse dlq replay`` re-enriches it.
    """
    outcomes = []
    for job in jobs:
        job.given_up = f"enrichment failed {job.failures} times: {error!r}"
        outcomes.append(fallback_outcome(enrich_request(job.item.record), reason=job.given_up))
    return outcomes


async def emit(jobs: Sequence[Job], outcomes: Sequence[EnrichOutcome], *, outputs: Outputs,
               settings: Settings, now_ms: int, retried: Callable[[Job], None],
               mark: Callable[[Job], None] = lambda job: None) -> list[Final]:
    """Send each job's outcome and await the acknowledgements; returns what joins.

    ``retried(job)`` is told of each job handed on to reviews.retry as its record is sent:
    the retry record carries it on, so its copy is not a duplicate. ``mark(job)`` is told of
    each job before its sends."""
    pending: list[Awaitable[Any]] = []
    final: list[Final] = []
    finals: set[str] = set()
    returned: set[str] = set()
    for job, outcome in zip(jobs, outcomes, strict=True):
        mark(job)  # whose sends follow (exactly-once keeps them per job)
        record = job.item.record
        if job.item.kind == RETRY:  # each copy counted retry_returned: all but one are duplicates
            if job.item.event_id in returned:
                metrics.DUPLICATES.inc()
                metrics.input_outcome(job.item.origin.topic, "duplicate")
            returned.add(job.item.event_id)
        if job.item.event_id in finals:
            continue  # a second job of the same review (replayed original + retry copy)
        if job.given_up is not None:  # outcome is the heuristic's (give_up)
            pending.append(await outputs.exhausted(job, outcome, now_ms=now_ms, attempts=job.failures))
        elif outcome.status is EnrichStatus.TRANSIENT_FAILURE:
            if (settings.llm_failure_policy is FailurePolicy.RETRY_THEN_FALLBACK
                    and job.attempt < settings.llm_max_attempts):
                pending.append(await outputs.retry(job, now_ms=now_ms, reason=outcome.error))
                job.retried_for = outcome.error or "transient failure"
                retried(job)
                continue
            pending.append(await outputs.exhausted(job, outcome, now_ms=now_ms))
            outcome = fallback_outcome(enrich_request(record), reason=outcome.error, text=outcome.text)
        final.append((job, outcome))
        finals.add(job.item.event_id)
        metrics.input_outcome(job.item.origin.topic, "enriched")
        pending += await outputs.enriched(job, outcome, now_ms=now_ms)
    await asyncio.gather(*pending)
    return final
