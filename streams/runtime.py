"""Process-wide collaborators the agents share: codecs, dead letters, the LLM client.

Built once per worker. Agents ``await runtime.ready()`` before their first batch, so no
agent encodes before the output schemas are registered. Nothing here does I/O at import.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import mode

from streams.codecs import AvroCodecs
from streams.dlq import DeadLetters

if TYPE_CHECKING:
    from streams.app import ReviewPulseApp


class Runtime:
    def __init__(self, app: ReviewPulseApp) -> None:
        self.app = app
        self.settings = app.settings
        self.codecs = AvroCodecs(self.settings)
        self.dead_letters = DeadLetters(topic=app.topics_.dlq, codecs=self.codecs)
        self.extensions: dict[str, Any] = {}
        self._ready = asyncio.Event()

    async def start(self) -> None:
        # Faust creates the internal topics it consumes; the ones we only produce to must be
        # declared here, or the first send waits on metadata for a topic that never comes.
        topics = self.app.topics_
        for topic in (topics.enriched, topics.critical_alert, topics.aggregates,
                      topics.restaurant_alerts, topics.dlq, topics.retry, topics.by_restaurant):
            await topic.maybe_declare()
        await self.codecs.start()
        self._ready.set()

    async def stop(self) -> None:
        await self.codecs.stop()

    async def ready(self) -> None:
        await self._ready.wait()


def install(app: ReviewPulseApp) -> Runtime:
    """Create the runtime and tie its start and stop to the worker's lifecycle."""
    runtime = Runtime(app)

    class RuntimeService(mode.Service):
        async def on_start(self) -> None:
            await runtime.start()

        async def on_stop(self) -> None:
            await runtime.stop()

    app.service(RuntimeService)
    return runtime
