"""Starting and stopping the embedded registry: ``start_server`` for tests, ``run`` for the CLI."""

from __future__ import annotations

import asyncio
import logging
import signal
from dataclasses import dataclass

from aiohttp import web

from schema_registry.server.registry import Registry
from schema_registry.server.routes import build_app
from schema_registry.server.store import SCHEMAS_TOPIC, KafkaLog, Log, MemoryLog

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # local use: never listen on every interface unless told to
DEFAULT_PORT = 8081  # Confluent Schema Registry's port


@dataclass
class RunningRegistry:
    """A registry serving on ``url``; ``await stop()`` closes the server and the log."""

    runner: web.AppRunner
    registry: Registry
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def stop(self) -> None:
        await self.runner.cleanup()
        await self.registry.stop()


async def start_server(
    bootstrap_servers: str | None,
    *,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    topic: str = SCHEMAS_TOPIC,
    log_: Log | None = None,
) -> RunningRegistry:
    """Read the registry's state to the end of its log, then serve it (port 0: any free).

    ``bootstrap_servers`` None with no ``log_`` keeps the registry in memory only.
    """
    if log_ is None:
        log_ = KafkaLog(bootstrap_servers, topic=topic) if bootstrap_servers else MemoryLog()
    registry = Registry(log_)
    await registry.start()  # every id, version and config is known before the first request
    runner = web.AppRunner(build_app(registry), access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
    except OSError:
        await runner.cleanup()
        await registry.stop()
        raise
    bound_port = runner.addresses[0][1]
    log.info("schema registry serving", extra={"host": host, "port": bound_port})
    return RunningRegistry(runner=runner, registry=registry, host=host, port=bound_port)


def run(
    bootstrap_servers: str | None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    *,
    topic: str = SCHEMAS_TOPIC,
) -> None:
    """Serve until SIGINT or SIGTERM (what ``reviewpulse registry --port P`` calls)."""

    async def serve() -> None:
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stopping.set)
        running = await start_server(bootstrap_servers, host=host, port=port, topic=topic)
        try:
            await stopping.wait()
        finally:
            await running.stop()

    asyncio.run(serve())
