"""Everything the stage sends: a review's outcome, its retry record or dead letter, and the
final aggregates and alerts of closed windows (once each, through :mod:`agents.outbox`).

Each send returns its delivery; the caller awaits the acknowledgements before any state
says "applied" (a crash before that sends them again).
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable
from typing import Any

from agents.llm.outcome import EnrichOutcome
from agents.llm.records import count_enrich_outcome, critical_alert_record, enriched_record
from agents.outbox import Outbox
from agents.stage.jobs import Job
from agents.stage.ports import OutputTopics, Ports
from streams import metrics
from streams.logs import event as log_event
from streams.protocol import H_ID, H_TRACE, RETRY, RETRY_REASON_MAX_CHARS, Item, write_item
from streams.settings import Settings

Sent = tuple[str, int, Any]  # (topic, partition, delivery) of a final output


class Deferred:
    """Sends kept for the batch that joins them (exactly-once: an answer's records must be
    in the transaction of the batch that joins it and commits its review's offset)."""

    def __init__(self) -> None:
        self.sends: list[tuple[Any, str, dict[str, Any]]] = []  # (the job it is for, topic, kwargs)
        self._job: Any = None

    def mark(self, job: Any) -> None:
        """The sends from here on are ``job``'s (the joining batch drops those of a job whose
        review another job joined first)."""
        self._job = job

    async def send(self, topic: str, **kwargs: Any) -> Awaitable[Any]:
        self.sends.append((self._job, topic, kwargs))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done


class Outputs:
    def __init__(self, *, ports: Ports, topics: OutputTopics, settings: Settings, outbox: Outbox) -> None:
        self.ports, self.topics, self.settings, self.outbox = ports, topics, settings, outbox

    def deferred(self) -> tuple[Outputs, Deferred]:
        """These outputs with every send kept (dead letters still go at once) for a batch to make."""
        kept = Deferred()
        return Outputs(ports=dataclasses.replace(self.ports, send=kept.send), topics=self.topics,
                       settings=self.settings, outbox=self.outbox), kept

    async def enriched(self, job: Job, outcome: EnrichOutcome, *, now_ms: int) -> list[Awaitable[Any]]:
        """The review's ``reviews.enriched`` record, and its critical alert when it is one."""
        count_enrich_outcome(outcome)
        record = enriched_record(job.item.record, outcome, attempts=job.attempt, enriched_at_ms=now_ms,
                                 received_ms=job.item.origin.timestamp_ms)
        metrics.PROCESSING_LAG.observe(record["processing_lag_ms"] / 1000)
        metrics.EVENT_AGE.observe(record["event_age_ms"] / 1000)
        key = job.item.restaurant_id.encode()
        headers = [(H_TRACE, record["trace_id"].encode())]
        ports = self.ports
        stage = job.partition  # the transaction the sends belong to, under exactly-once
        futures = [await ports.send(self.topics.enriched, key=key, headers=headers, stage_partition=stage,
                                    value=ports.encode("ReviewEnriched", record))]
        if record["sentiment"] == "CRITICAL":
            metrics.CRITICAL_ALERTS.inc()
            log_event("critical_review", restaurant=job.item.restaurant_id, trace_id=record["trace_id"])
            ports.remember_critical(record)
            futures.append(await ports.send(
                self.topics.critical_alert, key=key, headers=headers, stage_partition=stage,
                value=ports.encode("CriticalAlert", critical_alert_record(record))))
        return futures

    async def retry(self, job: Job, *, now_ms: int, reason: str | None = None) -> Awaitable[Any]:
        """The review again on ``reviews.retry``, after an exponential delay per attempt;
        ``reason`` (the failed attempt's error) travels with it, for ``reviewpulse trace``."""
        delay_ms = int(self.settings.llm_retry_delay_s * 1000 * 2 ** (job.attempt - 1))
        item = job.item
        retry = Item(kind=RETRY, record=item.record, origin=item.origin, attempt=job.attempt + 1,
                     not_before_ms=now_ms + delay_ms, pane_start_ms=job.pane_start_ms, late=job.late,
                     first_failure_ms=item.first_failure_ms or now_ms,
                     retry_reason=None if reason is None else reason[:RETRY_REASON_MAX_CHARS])
        metrics.EVENTS_RETRIED.inc()
        metrics.input_outcome(item.origin.topic, "retry_scheduled")
        log_event("retry_scheduled", restaurant=item.restaurant_id, attempt=job.attempt + 1,
                  delay_ms=delay_ms, trace_id=item.trace_id)
        # Never in a transaction (no stage_partition): a transactional topic gets a commit
        # marker per transaction, which the retry stage's stream takes for a missed offset and
        # seeks back over, one seek per marker (and aiokafka 0.14's fetcher once crashed on such
        # a seek, KeyError in fetched_records). A copy sent twice is a duplicate to the stage.
        return await self.ports.send(self.topics.retry, key=item.restaurant_id.encode(),
                                     value=write_item(retry),
                                     headers=[(H_TRACE, (item.trace_id or "").encode())])

    async def exhausted(self, job: Job, outcome: EnrichOutcome, *, now_ms: int,
                        attempts: int | None = None) -> Awaitable[Any]:
        """Fallback keeps the flow live; the dead letter keeps the review replayable for the LLM."""
        item = job.item
        return await self.ports.dead_letter(
            item.origin, stage="enrich", reason="llm_exhausted",
            error=RuntimeError(outcome.error or "LLM unavailable"),
            attempts=job.attempt if attempts is None else attempts,
            first_failure_ms=item.first_failure_ms or now_ms, trace_id=item.trace_id)

    async def finals(self, aggregates: list[tuple[int, dict[str, Any]]],
                     alerts: list[tuple[int, dict[str, Any]]]) -> list[Sent]:
        """Send final aggregates and alerts not sent before a crash (see agents.outbox)."""
        outputs = [(self.topics.aggregates, "RestaurantWindowAggregate", "aggregate_id", p, r)
                   for p, r in aggregates]
        outputs += [(self.topics.restaurant_alerts, "RestaurantAlert", "alert_id", p, r) for p, r in alerts]
        sent = []
        for topic, record_name, id_field, partition, record in outputs:
            if self.outbox.already_sent(partition, record[id_field]):
                log_event("already_sent", id=record[id_field])
                continue
            if record_name == "RestaurantAlert":
                metrics.ALERTS.labels(record["rule"]).inc()
                self.ports.remember_alert(record)
                log_event("restaurant_alert", restaurant=record["restaurant_id"], rule=record["rule"],
                          severity=record["severity"], value=round(record["value"], 3))
            else:
                metrics.AGGREGATES.labels(record["window_kind"]).inc()
            future = await self.ports.send(
                topic, key=record["restaurant_id"].encode(), value=self.ports.encode(record_name, record),
                partition=partition, stage_partition=partition, headers=[(H_ID, record[id_field].encode())])
            sent.append((topic, partition, future))
        return sent

    def acknowledged(self, sent: list[Sent]) -> None:
        """Their offsets go into the partition's outbox checkpoint (written with the batch)."""
        for topic, partition, future in sent:
            self.outbox.acknowledged(topic, partition, future.result().offset)
