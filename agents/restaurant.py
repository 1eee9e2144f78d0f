"""The restaurant stage: the one agent that reads the by-restaurant topic and writes all state.

Per ``take_events`` batch (several partitions mixed):

1. read each event in its partition: decode, find its pane, skip what a pane already
   holds (a redelivery after a crash) and what the dedupe table has seen (a duplicate);
2. enrich every new review in one ``enrich_batch`` call (sub-batches in flight together:
   LLM parallelism without ``concurrency > 1`` agents, faust #606);
3. send enriched reviews, critical alerts, retries and dead letters;
4. fold into panes and close due windows, then send aggregates and alerts;
5. wait until every output is acknowledged, and only then write the panes: a crash
   before this point replays the batch, a crash after it finds the panes marked applied.

Dedupe marks are written while the LLM answers (step 2): a mark holds the offset of the
delivery it accepted, so a replay of that same record passes it and only a copy at
another offset is a duplicate. They are acknowledged before the panes are written.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any

from agents.aggregate import Closed, PartitionState
from agents.context import app, llm, runtime, settings, spec, tables, thresholds
from agents.decode import count_consumed
from agents.enrich import count_outcome, critical_alert_record, enrich_request, enriched_record
from agents.llm.enricher import enrich_batch
from agents.llm.outcome import EnrichOutcome, EnrichStatus, fallback_outcome
from agents.outbox import H_ID, checkpoint_key, outbox
from agents.ticks import merged_watermark, record_progress
from schema_registry.errors import SerdeError
from streams import metrics
from streams.codecs import to_ms
from streams.dlq import Origin
from streams.logs import event as log_event
from streams.settings import FailurePolicy
from streams.topics import (
    H_ATTEMPT,
    H_FIRST_FAILURE,
    H_KIND,
    H_NOT_BEFORE,
    H_ORIGIN,
    H_TRACE,
)
from tables.rules import budget_exceeded_record
from tables.state import partition_of
from tables.webdata import recent
from tables.windows import utc_day

H_FIRST_OFFSET = "rp-first-offset"  # by-restaurant offset where a retried review was first seen
BUDGET_CAP_REASON = "restaurant daily cost cap reached"
MARKS_PER_YIELD = 100  # dedupe writes between yields to the LLM calls (~10 ms of CPU)


def header(event: Any, name: str) -> bytes | None:
    for key, value in event.message.headers or ():
        if key == name:
            return value
    return None


def header_int(event: Any, name: str, default: int) -> int:
    value = header(event, name)
    return int(value) if value else default


@dataclass
class Item:
    """One review or order of the batch that is new (not a duplicate, not yet applied)."""

    event: Any
    kind: str
    record: dict[str, Any]
    restaurant_id: str
    occurred_ms: int
    pane_start: int
    late: bool
    first_offset: int
    attempt: int = 1
    known: bool = False  # the dedupe table already holds this event id (a retried review)
    outcome: EnrichOutcome | None = None
    final: bool = True  # False: sent to reviews.retry, nothing folded now

    @property
    def offset(self) -> int:
        return int(self.event.message.offset)


class RestaurantStage:
    def __init__(self) -> None:
        self._batch_seen: dict[str, int] = {}  # event_id -> first offset, within one batch
        self._daily_read: dict[str, dict[str, Any]] = {}  # day key -> entry read this batch
        # partition -> sender -> (watermark, sent_at) of its last tick (see agents/ticks.py)
        self.tick_senders: dict[int, dict[str, tuple[int, int]]] = {}
        self._watermarks: dict[int, int] = {}

    def watermark(self, partition: int) -> int:
        """Closing and lateness follow the input watermark the ticks carry, never one event."""
        return self._watermarks.get(partition, 0)

    async def process(self, events: list[Any]) -> None:
        t0 = time.perf_counter()
        now_ms = int(time.time() * 1000)
        groups: dict[int, list[Any]] = {}
        for ev in events:
            groups.setdefault(ev.message.partition, []).append(ev)
        pending: list[Awaitable[Any]] = []
        states: dict[int, PartitionState] = {}
        items: dict[int, list[Item]] = {}
        ticked: set[int] = set()
        spent: dict[str, int] = {}
        self._batch_seen = {}
        self._daily_read = {}
        for partition, evs in groups.items():
            with partition_of(evs[-1]):
                state = states[partition] = PartitionState(tables, spec, partition)
                found = items[partition] = []
                for ev in evs:
                    item = await self._read(ev, state, now_ms=now_ms, ticked=ticked, pending=pending)
                    if item is None:
                        continue
                    found.append(item)
                    if item.kind == "review" and item.restaurant_id not in spent:
                        day_key = _day_key(item.restaurant_id, now_ms)
                        daily = self._daily_read[day_key] = tables.daily_cost.get(day_key) or {}
                        # Once the cap fired, the rest of the day is heuristic (estimates are
                        # above actual costs, so the spend alone could let reviews through again).
                        cap = settings.restaurant_daily_cost_cap_micro_usd
                        spent[item.restaurant_id] = cap if daily.get("alerted") else daily.get("spent", 0)
        reviews = [i for found in items.values() for i in found if i.kind == "review"]
        t1 = time.perf_counter()
        # The marks' table writes are CPU work; the LLM calls are waiting: do both at once.
        enriching = self._enrich(reviews, spent=spent, now_ms=now_ms, pending=pending)
        _, marked = await asyncio.gather(enriching, self._mark(groups, items))
        t2 = time.perf_counter()
        closed = Closed()
        budget_alerts: list[tuple[int, dict[str, Any]]] = []
        daily_writes: dict[int, dict[str, dict[str, Any]]] = {}
        for partition, evs in groups.items():
            with partition_of(evs[-1]):
                state = states[partition]
                daily_writes[partition] = {}
                self._fold(state, items[partition], now_ms=now_ms, daily=daily_writes[partition],
                           budget_alerts=budget_alerts)
                due = {i.restaurant_id for i in items[partition]}
                if partition in ticked:
                    due |= state.index()
                if partition not in outbox.recovered:
                    await outbox.recover(partition, tables.closures.get(checkpoint_key(partition)))
                for restaurant_id in sorted(due):
                    state.close(restaurant_id, watermark_ms=self.watermark(partition), now_ms=now_ms,
                                thresholds=thresholds, out=closed)
        sent = await self._send_closed(closed, budget_alerts)
        pending += [future for _, _, future in sent]
        t3 = time.perf_counter()
        await asyncio.gather(*pending)
        for topic, partition, future in sent:
            outbox.acknowledged(topic, partition, future.result().offset)
        t4 = time.perf_counter()
        # Outputs are acknowledged: now the state may say "applied" (see module docstring).
        # Dedupe marks acknowledged first, then panes: the two are different changelog topics,
        # and a pane that survived a crash without its events' marks would count the copies
        # decode re-forwards (new offsets) a second time. A durable pane implies durable marks.
        if marked:
            await app.producer.flush()
        for partition, evs in groups.items():
            with partition_of(evs[-1]):
                states[partition].flush()
                for key, value in daily_writes[partition].items():
                    tables.daily_cost[key] = value
                for restaurant_id, record in closed.latest.get(partition, {}).items():
                    tables.latest[restaurant_id] = record
                checkpoint = outbox.checkpoint(partition)
                if checkpoint is not None:
                    tables.closures[checkpoint_key(partition)] = checkpoint
        record_progress(events)
        t5 = time.perf_counter()
        log_event("restaurant_batch", level=10, events=len(events), reviews=len(reviews),
                  read_ms=round((t1 - t0) * 1000, 1), enrich_ms=round((t2 - t1) * 1000, 1),
                  fold_ms=round((t3 - t2) * 1000, 1), acks_ms=round((t4 - t3) * 1000, 1),
                  write_ms=round((t5 - t4) * 1000, 1))

    # --- 1. reading --------------------------------------------------------------------------
    async def _read(self, ev: Any, state: PartitionState, *, now_ms: int, ticked: set[int],
                    pending: list[Awaitable[Any]]) -> Item | None:
        message = ev.message
        kind = (header(ev, H_KIND) or b"review").decode()
        if kind == "tick":
            tick = json.loads(message.value)
            senders = self.tick_senders.setdefault(message.partition, {})
            senders[tick["s"]] = (tick["wm"], tick["at"])
            self._watermarks[message.partition] = max(self._watermarks.get(message.partition, 0),
                                                      merged_watermark(senders))
            ticked.add(message.partition)
            return None
        count_consumed(message.topic)
        try:
            name = "ReviewCreated" if kind == "review" else "OrderDelivered"
            record = await runtime.codecs.decode(name, message.value)
        except SerdeError as exc:  # decode checked it already; only a registry change gets here
            pending.append(await runtime.dead_letters.send(
                Origin.of(message), stage="restaurant", reason=exc.reason, error=exc))
            return None
        restaurant_id = (record["entity"] if kind == "review" else record)["restaurant_id"]
        occurred_ms = to_ms(record["occurred_at"])
        watermark = self.watermark(message.partition)
        # A replay after a crash is recognised in the pane it went to: its own pane, or (if it
        # was late then) the open pane it was counted late in. Its window may have closed
        # since, so the own pane is asked first, whatever lateness says now.
        if state.pane(restaurant_id, spec.pane_of(occurred_ms)).seen(message.offset):
            return None
        pane_start, late = state.target_pane(restaurant_id, occurred_ms, watermark_ms=watermark)
        if late and state.pane(restaurant_id, pane_start).seen(message.offset):
            return None
        event_id = record["event_id"]
        first_offset = header_int(ev, H_FIRST_OFFSET, message.offset)
        seen_at = tables.dedupe.get(event_id)
        known = seen_at is not None
        if seen_at is None:
            seen_at = self._batch_seen.get(event_id)
        if seen_at is not None and seen_at not in (message.offset, first_offset):
            metrics.DUPLICATES.inc()
            log_event("duplicate", level=10, event_id=event_id, restaurant=restaurant_id)
            return None
        self._batch_seen[event_id] = first_offset
        return Item(event=ev, kind=kind, record=record, restaurant_id=restaurant_id,
                    occurred_ms=occurred_ms, pane_start=pane_start, late=late,
                    first_offset=first_offset, attempt=header_int(ev, H_ATTEMPT, 1), known=known)

    async def _mark(self, groups: dict[int, list[Any]], items: dict[int, list[Item]]) -> bool:
        """Write the dedupe mark of every new event; True if any was written.

        Yields every ``MARKS_PER_YIELD`` writes so the LLM requests of the same batch go out
        meanwhile. Safe before the outputs exist: a replay of this batch (same offsets)
        passes its own marks (see ``_read``)."""
        marked = 0
        for partition, evs in groups.items():
            for item in items[partition]:
                if item.known:  # read in _read: no second table read per event
                    continue
                if marked % MARKS_PER_YIELD == 0:
                    await asyncio.sleep(0)
                with partition_of(evs[-1]):
                    tables.dedupe[item.record["event_id"]] = item.first_offset
                marked += 1
        return marked > 0

    # --- 2-3. enriching and sending ------------------------------------------------------------
    async def _enrich(self, reviews: list[Item], *, spent: dict[str, int], now_ms: int,
                      pending: list[Awaitable[Any]]) -> None:
        if not reviews:
            return
        outcomes = await enrich_batch(
            [enrich_request(i.record) for i in reviews],
            client=llm.client, cache=llm.cache, token_budget=llm.budget,
            restaurant_spent_micro_usd=spent,
            restaurant_cap_micro_usd=settings.restaurant_daily_cost_cap_micro_usd,
            batch_size=settings.llm_batch_size, concurrency=settings.llm_concurrency,
        )
        metrics.BUDGET_REMAINING.set(llm.budget.remaining)
        enriched_at_ms = int(time.time() * 1000)
        topics = app.topics_
        for item, outcome in zip(reviews, outcomes, strict=True):
            if outcome.status is EnrichStatus.TRANSIENT_FAILURE:
                retry = (settings.llm_failure_policy is FailurePolicy.RETRY_THEN_FALLBACK
                         and item.attempt < settings.llm_max_attempts)
                if retry:
                    pending.append(await self._send_retry(item, now_ms=now_ms))
                    item.final = False
                    continue
                pending.append(await self._dead_letter_exhausted(item, outcome))
                outcome = fallback_outcome(enrich_request(item.record), reason=outcome.error,
                                           text=outcome.text)
            item.outcome = outcome
            count_outcome(outcome)
            record = enriched_record(item.record, outcome, attempts=item.attempt,
                                     enriched_at_ms=enriched_at_ms)
            metrics.PROCESSING_LAG.observe(record["processing_lag_ms"] / 1000)
            key = item.restaurant_id.encode()
            headers = [(H_TRACE, record["trace_id"].encode())]
            pending.append(await topics.enriched.send(
                key=key, value=runtime.codecs.encode("ReviewEnriched", record), headers=headers,
                force=True))
            if record["sentiment"] == "CRITICAL":
                metrics.CRITICAL_ALERTS.inc()
                recent.remember_critical(record)
                log_event("critical_review", restaurant=item.restaurant_id, trace_id=record["trace_id"])
                pending.append(await topics.critical_alert.send(
                    key=key, value=runtime.codecs.encode("CriticalAlert", critical_alert_record(record)),
                    headers=headers, force=True))

    async def _send_retry(self, item: Item, *, now_ms: int) -> Awaitable[Any]:
        delay_ms = int(settings.llm_retry_delay_s * 1000 * 2 ** (item.attempt - 1))
        headers = [
            (H_KIND, b"review"),
            (H_ATTEMPT, str(item.attempt + 1).encode()),
            (H_NOT_BEFORE, str(now_ms + delay_ms).encode()),
            (H_FIRST_OFFSET, str(item.first_offset).encode()),
            (H_FIRST_FAILURE, header(item.event, H_FIRST_FAILURE) or str(now_ms).encode()),
            (H_ORIGIN, header(item.event, H_ORIGIN) or b""),
            (H_TRACE, item.record["metadata"]["trace_id"].encode()),
        ]
        metrics.EVENTS_RETRIED.inc()
        log_event("retry_scheduled", restaurant=item.restaurant_id, attempt=item.attempt + 1,
                  delay_ms=delay_ms, trace_id=item.record["metadata"]["trace_id"])
        return await app.topics_.retry.send(key=item.restaurant_id.encode(),
                                            value=item.event.message.value, headers=headers, force=True)

    async def _dead_letter_exhausted(self, item: Item, outcome: EnrichOutcome) -> Awaitable[Any]:
        """Fallback keeps the flow live; the dead letter keeps the review replayable for the LLM."""
        message = item.event.message
        origin_text = (header(item.event, H_ORIGIN) or b"").decode()
        topic, _, rest = origin_text.partition(":")
        partition, _, offset = rest.partition(":")
        origin = Origin(
            topic=topic or message.topic, partition=int(partition or message.partition),
            offset=int(offset or message.offset), key=message.key, value=message.value,
            headers=tuple((k, v) for k, v in (message.headers or ()) if not k.startswith("rp-")),
        )
        first = header(item.event, H_FIRST_FAILURE)
        return await runtime.dead_letters.send(
            origin, stage="enrich", reason="llm_exhausted",
            error=RuntimeError(outcome.error or "LLM unavailable"), attempts=item.attempt,
            first_failure_ms=int(first) if first else None, trace_id=item.record["metadata"]["trace_id"])

    # --- 4. folding ----------------------------------------------------------------------------
    def _fold(self, state: PartitionState, items: list[Item], *, now_ms: int,
              daily: dict[str, dict[str, Any]], budget_alerts: list[tuple[int, dict[str, Any]]]) -> None:
        for item in items:
            if not item.final:
                continue
            pane = state.touch(item.restaurant_id, item.pane_start)
            if item.late:
                pane.add_late()
                metrics.LATE_EVENTS.inc()
            elif item.kind == "order":
                record = item.record
                pane.add_order(delay_ms=to_ms(record["delivered_at"]) - to_ms(record["promised_at"]))
            else:
                outcome = item.outcome
                assert outcome is not None and outcome.enrichment is not None
                enrichment = outcome.enrichment
                pane.add_review(
                    rating=item.record["entity"]["rating"], score=enrichment.score,
                    label=str(enrichment.label), categories=enrichment.categories,
                    status=str(outcome.status), cache_hit=outcome.cache_hit,
                    tokens_in=outcome.tokens_in, tokens_out=outcome.tokens_out,
                    cost_micro_usd=outcome.cost_micro_usd,
                    processing_lag_ms=max(0, now_ms - item.occurred_ms),
                )
            pane.mark_applied(item.offset)
            if item.kind == "review" and item.outcome is not None:
                self._book_cost(item, now_ms=now_ms, daily=daily, budget_alerts=budget_alerts)

    def _book_cost(self, item: Item, *, now_ms: int, daily: dict[str, dict[str, Any]],
                   budget_alerts: list[tuple[int, dict[str, Any]]]) -> None:
        outcome = item.outcome
        assert outcome is not None
        key = _day_key(item.restaurant_id, now_ms)
        entry = daily.get(key)
        if entry is None:
            entry = daily[key] = {"spent": 0, "alerted": False, **self._daily_read.get(key, {})}
        entry["spent"] += outcome.cost_micro_usd
        capped = outcome.status is EnrichStatus.BUDGET_SKIPPED and outcome.error == BUDGET_CAP_REASON
        if capped and not entry["alerted"]:
            entry["alerted"] = True
            budget_alerts.append((item.event.message.partition, budget_exceeded_record(
                restaurant_id=item.restaurant_id, spent_micro_usd=entry["spent"],
                cap_micro_usd=settings.restaurant_daily_cost_cap_micro_usd, day_of_ms=now_ms,
                emitted_at_ms=now_ms)))

    async def _send_closed(self, closed: Closed, budget_alerts: list[tuple[int, dict[str, Any]]],
                           ) -> list[tuple[str, int, Any]]:
        """Send final aggregates and alerts not sent before a crash (see agents.outbox)."""
        topics, codecs = app.topics_, runtime.codecs
        sent = []
        outputs = [(topics.aggregates, "RestaurantWindowAggregate", "aggregate_id", p, r)
                   for p, r in closed.aggregates]
        outputs += [(topics.restaurant_alerts, "RestaurantAlert", "alert_id", p, r)
                    for p, r in [*closed.alerts, *budget_alerts]]
        for topic, record_name, id_field, partition, record in outputs:
            if outbox.already_sent(partition, record[id_field]):
                log_event("already_sent", id=record[id_field])
                continue
            if record_name == "RestaurantAlert":
                metrics.ALERTS.labels(record["rule"]).inc()
                recent.remember_alert(record)
                log_event("restaurant_alert", restaurant=record["restaurant_id"], rule=record["rule"],
                          severity=record["severity"], value=round(record["value"], 3))
            else:
                metrics.AGGREGATES.labels(record["window_kind"]).inc()
            future = await topic.send(
                key=record["restaurant_id"].encode(), value=codecs.encode(record_name, record),
                partition=partition, headers=[(H_ID, record[id_field].encode())], force=True)
            sent.append((topic.get_topic_name(), partition, future))
        return sent


def _day_key(restaurant_id: str, now_ms: int) -> str:
    return f"{restaurant_id}|{utc_day(now_ms)[0]}"


stage = RestaurantStage()


@app.agent(app.topics_.by_restaurant, name="restaurant-stage")
async def restaurant_stage(stream: Any) -> None:
    await runtime.ready()
    # Where enrichment goes, once per worker (httpx's per-request lines are silenced).
    log_event("llm_client", endpoint=f"{llm.client.base_url}/chat/completions", model=llm.client.model,
              batch_size=settings.llm_batch_size, concurrency=settings.llm_concurrency)
    async for events in stream.take_events(settings.take_max_events, within=settings.take_within_s):
        await stage.process(list(events))
