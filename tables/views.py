"""HTTP endpoints served by each worker: liveness, readiness (and the web view, issue 5)."""

from __future__ import annotations

from typing import Any

from streams.app import app


@app.page("/health")
async def health(web: Any, request: Any) -> Any:
    """Liveness: the event loop answers. Kubernetes restarts a worker that stops answering."""
    return web.json({"status": "ok"})


@app.page("/ready")
async def ready(web: Any, request: Any) -> Any:
    """Readiness: 503 while the worker rebalances or restores tables from changelogs."""
    recovering = app.tables.recovery.in_recovery if app.tables else False
    if app.rebalancing or recovering:
        return web.json({"status": "recovering", "rebalancing": app.rebalancing,
                         "recovering": recovering}, status=503)
    return web.json({"status": "ready"})
