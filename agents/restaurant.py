"""The restaurant stage: the one agent that reads the by-restaurant topic and writes all state.

A thin loop over :class:`agents.stage.StageCore`. It reads with ``noack_take``: the core
acks each event when its outcome is durable, a review only once its enrichment is
(Faust then commits each partition up to its first unacked offset). A batch that fails
stops the worker (:func:`streams.clean_stop.stop_now`): it restarts from its last commit.
"""

from __future__ import annotations

from typing import Any

from agents.ticks import record_progress
from streams.app import app, runtime
from streams.clean_stop import stop_now
from streams.faust.commits import handled_batches
from streams.logs import event as log_event

settings = app.settings


@app.agent(app.topics_.by_restaurant, name="restaurant-stage")
async def restaurant_stage(stream: Any) -> None:
    await runtime.ready()
    core = runtime.core
    # Where enrichment goes, once per worker.
    client = runtime.llm.client
    log_event("llm_client", endpoint=f"{client.base_url}/chat/completions", model=client.model,
              batch_size=settings.llm_batch_size, concurrency=settings.llm_concurrency)
    async for events in handled_batches(stream, settings.take_max_events, within_s=settings.take_within_s):
        try:
            await core.process(events, stream.ack)
        except Exception as exc:  # DESIGN §12: never skip a batch; restart from the last commit
            # Faust would restart this agent on the same stream and the batch would never come
            # again, while later batches moved its panes past it: replayed, it would read as seen.
            stop_now(f"a restaurant-stage batch of {len(events)} events failed: {exc!r}")
        record_progress(events)
