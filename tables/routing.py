"""Which worker owns a restaurant, and proxying a request to it (see tables.views for why
``@app.table_route`` cannot be used)."""

from __future__ import annotations

from typing import Any

import httpx
from aiokafka.partitioner import DefaultPartitioner
from yarl import URL

from streams import metrics
from streams.app import app, runtime

H_WORKER = "X-ReviewPulse-Worker"  # the worker whose state the answer shows
H_ROUTED = "X-ReviewPulse-Routed-Via"  # set by the worker that proxied the request
settings = app.settings
tables = app.tables_
_partitioner = DefaultPartitioner()


# --- routing --------------------------------------------------------------------------------
def restaurant_partition(restaurant_id: str, partitions: int | None = None) -> int:
    """The by-restaurant partition decode sends the restaurant to (aiokafka's murmur2 on the bytes)."""
    n = partitions or settings.topic_partitions
    return int(_partitioner(restaurant_id.encode(), list(range(n)), list(range(n))))


def _ident(url: str | URL) -> tuple[str, int]:
    u = URL(str(url))
    return (u.host or "", int(u.port or 80))


def self_url() -> str:
    return str(app.conf.canonical_url).rstrip("/")


def owner_of(partition: int) -> str | None:
    """Canonical URL of the worker owning ``partition`` of the panes changelog; None while unknown."""
    topic = tables.panes.changelog_topic.get_topic_name()
    for host, topics in app.router.table_metadata(tables.panes.name).items():
        if partition in topics.get(topic, ()):
            return str(host).rstrip("/")
    return None


def owned_partitions() -> set[int]:
    topic = tables.panes.changelog_topic.get_topic_name()
    return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}


def _peer_headers() -> dict[str, str]:
    headers = {H_ROUTED: self_url()}
    if settings.web_auth_token is not None:
        headers["Authorization"] = f"Bearer {settings.web_auth_token.get_secret_value()}"
    return headers


async def routed(view: Any, request: Any, restaurant_id: str, answer: Any) -> Any:
    """Answer locally when this worker owns the restaurant, else return the owner's answer.

    ``answer(restaurant_id, partition)`` returns the JSON body, or the body and its status."""
    await runtime.ready()
    partition = restaurant_partition(restaurant_id)
    owner = owner_of(partition)
    if request.headers.get(H_ROUTED) or (owner is not None and _ident(owner) == _ident(self_url())):
        metrics.WEB_ROUTED.labels("local").inc()
        body = answer(restaurant_id, partition)  # the body, or (the body, an HTTP status)
        body, status = body if isinstance(body, tuple) else (body, 200)
        return view.json(body, status=status, headers={H_WORKER: self_url()})
    if owner is None:
        metrics.WEB_ROUTED.labels("unavailable").inc()
        return view.json(
            {"error": "no worker owns this restaurant's partition yet (rebalancing)", "partition": partition},
            status=503,
            headers={"Retry-After": "2"},
        )
    try:
        response = await runtime.http.get(owner + request.rel_url.raw_path_qs, headers=_peer_headers())
    except httpx.HTTPError as exc:
        metrics.WEB_ROUTED.labels("error").inc()
        return view.json(
            {"error": f"owner {owner} did not answer ({type(exc).__name__})", "partition": partition},
            status=502,
        )
    metrics.WEB_ROUTED.labels("proxied").inc()
    headers = {H_WORKER: response.headers.get(H_WORKER, owner), H_ROUTED: self_url()}
    return view.bytes(
        response.content,
        status=response.status_code,
        headers={**headers, "Content-Type": response.headers.get("Content-Type", "application/json")},
    )
