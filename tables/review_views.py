"""The web view of one review (issue 33): its enrichment state, its page, its timeline.

- ``/api/restaurants/{id}/reviews/{review_id}``: the review's state (:mod:`tables.review_states`),
  answered by the worker owning the restaurant's partition (its table, and its memory of a
  call queued or in flight), proxied there by any other worker;
- ``/api/restaurants/{id}/reviews/{review_id}/timeline``: the review's records on every
  topic (:mod:`streams.trace`), read back from the topics by whichever worker is asked, one
  read at a time per worker (each reads up to a day of several topics);
- ``/restaurants/{id}/reviews/{review_id}``: the page, a shell over the two (``review.js``).

A layer above :mod:`tables.views`: the timeline uses the offline readers of ``streams.trace``.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from streams import trace as review_trace
from streams import window_history
from streams.app import app, runtime
from streams.codecs import parse_time_ms
from streams.protocol import review_state_key
from tables.review_states import view as review_view
from tables.routing import H_WORKER, routed, self_url
from tables.views import page

settings = app.settings
tables = app.tables_
_timeline_reads = asyncio.Semaphore(1)  # created unbound; bound to the loop on first use


def review_state(restaurant_id: str, partition: int, *, review_id: str) -> tuple[dict[str, Any], int]:
    """The review's enrichment state (tables.review_states), with what only this owner's
    memory knows laid over it: a call queued or in flight reads PROCESSING."""
    if not settings.review_states:
        return {"error": "review states are off on this worker (REVIEWPULSE_REVIEW_STATES=false)"}, 404
    stored = tables.review_states.get(review_state_key(restaurant_id, review_id))
    in_flight = runtime.core.tracker.in_flight(stored["event_id"]) if stored else None
    answer = review_view(stored, in_flight, now_ms=int(time.time() * 1000),
                         ttl_ms=settings.review_state_ttl_s * 1000)
    if answer is None:
        return {"error": f"review {review_id!r} of restaurant {restaurant_id!r} is not known here: not "
                         f"read by the stage yet, never sent, dead-lettered before it (see the DLQ), or "
                         f"older than {settings.review_state_ttl_s} s",
                "restaurant_id": restaurant_id, "review_id": review_id, "partition": partition}, 404
    return {**answer, "worker": self_url(), "partition": partition}, 200


@app.page("/restaurants/{restaurant_id}/reviews/{review_id}")
async def review_page(web: Any, request: Any, restaurant_id: str, review_id: str) -> Any:
    return page(web, "review.html")


@app.page("/api/restaurants/{restaurant_id}/reviews/{review_id}")
async def api_review_state(web: Any, request: Any, restaurant_id: str, review_id: str) -> Any:
    """One review's enrichment state; the restaurant's owner answers (issue 33, part 1)."""
    def answer(restaurant: str, partition: int) -> tuple[dict[str, Any], int]:
        return review_state(restaurant, partition, review_id=review_id)

    return await routed(web, request, restaurant_id, answer)
@app.page("/api/restaurants/{restaurant_id}/reviews/{review_id}/timeline")
async def api_review_timeline(web: Any, request: Any, restaurant_id: str, review_id: str) -> Any:
    """The review's records on every topic in time order (``streams.trace``, as ``reviewpulse
    trace --review-id --json`` prints them), read within ``?from=&to=`` (epoch ms or ISO 8601;
    by default the CLI's last 24 h, never wider than ``history_max_range_s``). Any worker
    answers: it reads topics, not tables. 400 for a bad or too wide range; 404 when no record
    of the review is in the range, or the review is another restaurant's."""
    query = request.query
    headers = {H_WORKER: self_url()}
    try:
        from_ms, to_ms = review_trace.time_range(
            parse_time_ms(query["from"]) if "from" in query else None,
            parse_time_ms(query["to"]) if "to" in query else None,
            now_ms=int(time.time() * 1000),
            span_ms=min(review_trace.DEFAULT_SPAN_MS, settings.history_max_range_s * 1000))
        window_history.check_range(from_ms, to_ms, max_range_s=settings.history_max_range_s)
    except ValueError as exc:
        return web.json({"error": str(exc)}, status=400, headers=headers)
    started = time.perf_counter()
    # trace.read runs its own event loop (and librdkafka's blocking reads): off this one.
    async with _timeline_reads:
        timeline = await asyncio.to_thread(review_trace.trace, settings,
                                           review_trace.Wanted(review_id=review_id),
                                           from_ms=from_ms, to_ms=to_ms)
    if not timeline.steps or timeline.restaurant_id != restaurant_id:
        # No record, or only records that do not say the restaurant (a critical alert alone).
        where = "" if not timeline.steps else f" of restaurant {restaurant_id}"
        return web.json({"error": f"no record of review {review_id}{where} from {from_ms} to {to_ms} "
                                  "(try a wider from/to)"}, status=404, headers=headers)
    return web.json({**timeline.to_json(), "from_ms": from_ms, "to_ms": to_ms,
                     "read_ms": round((time.perf_counter() - started) * 1000, 1)}, headers=headers)
