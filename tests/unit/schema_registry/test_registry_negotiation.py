"""Every route of the embedded registry answers in the media type ``Accept`` asks for, as Confluent does."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from schema_registry.server import start_server
from schema_registry.server.negotiate import JSON, V1, VND, negotiate
from schema_registry.server.registry import Registry
from schema_registry.server.routes import build_app
from schema_registry.server.store import MemoryLog

SCHEMA = json.dumps(
    {"type": "record", "name": "R", "namespace": "t", "fields": [{"name": "a", "type": "int"}]}
)
BODY = {"schema": SCHEMA}

# (method, route as aiohttp knows it, concrete path, body): one row per route of build_app.
ROUTES = [
    ("GET", "/", "/", None),
    ("GET", "/schemas/types", "/schemas/types", None),
    ("GET", "/schemas/ids/{id}", "/schemas/ids/1", None),
    ("GET", "/schemas/ids/{id}/schema", "/schemas/ids/1/schema", None),
    ("GET", "/schemas/ids/{id}/subjects", "/schemas/ids/1/subjects", None),
    ("GET", "/schemas/ids/{id}/versions", "/schemas/ids/1/versions", None),
    ("GET", "/subjects", "/subjects", None),
    ("POST", "/subjects/{subject}", "/subjects/s-value", BODY),
    ("GET", "/subjects/{subject}/versions", "/subjects/s-value/versions", None),
    ("POST", "/subjects/{subject}/versions", "/subjects/s-value/versions", BODY),
    ("GET", "/subjects/{subject}/versions/{version}", "/subjects/s-value/versions/1", None),
    ("GET", "/subjects/{subject}/versions/{version}/schema", "/subjects/s-value/versions/1/schema", None),
    ("GET", "/subjects/{subject}/versions/{version}/referencedby",
     "/subjects/s-value/versions/1/referencedby", None),
    ("POST", "/compatibility/subjects/{subject}/versions/{version}",
     "/compatibility/subjects/s-value/versions/1", BODY),
    ("POST", "/compatibility/subjects/{subject}/versions", "/compatibility/subjects/s-value/versions", BODY),
    ("GET", "/config", "/config", None),
    ("PUT", "/config", "/config", {"compatibility": "BACKWARD"}),
    ("PUT", "/config/{subject}", "/config/s-value", {"compatibility": "FULL"}),
    ("GET", "/config/{subject}", "/config/s-value", None),
    ("DELETE", "/config/{subject}", "/config/s-value", None),
    ("DELETE", "/config", "/config", None),
    ("GET", "/mode", "/mode", None),
    ("DELETE", "/subjects/{subject}/versions/{version}", "/subjects/d-value/versions/1", None),
    ("DELETE", "/subjects/{subject}", "/subjects/e-value", None),
]

# (Accept header or None for none sent, expected answer type): what Confluent answers.
ACCEPTS = [
    (None, V1),
    ("*/*", V1),
    ("application/*", V1),
    (JSON, JSON),
    (V1, V1),
    (VND, VND),
    (f"{JSON}, {V1}", V1),
    (f"{JSON}, {VND}", VND),
    (f"{V1};q=0.1, {JSON}", JSON),
    (f"{JSON};q=0.9, */*;q=0.1", JSON),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", V1),  # a browser
]


def test_the_table_covers_every_route():
    app = build_app(Registry(MemoryLog()))  # routing only: never started, never called
    served = {(r.method, r.resource.canonical) for r in app.router.routes() if r.method != "HEAD"}
    assert served == {(method, route) for method, route, _, _ in ROUTES}


@pytest.mark.parametrize(("accept", "expected"), ACCEPTS)
def test_negotiate_picks_confluents_type(accept, expected):
    assert negotiate(accept) == expected


@pytest.mark.parametrize("accept", ["text/html", "application/xml", f"{JSON};q=0"])
def test_negotiate_refuses_what_it_cannot_produce(accept):
    assert negotiate(accept) is None


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    running = await start_server(None, port=0, log_=MemoryLog())
    async with httpx.AsyncClient(base_url=running.url, headers={"Content-Type": V1}) as client:
        for subject in ("s-value", "d-value", "e-value"):
            assert (await client.post(f"/subjects/{subject}/versions", json=BODY)).status_code == 200
        yield client
    await running.stop()


@pytest.mark.parametrize(
    ("accept", "expected"), [(None, V1), ("*/*", V1), (JSON, JSON), (V1, V1), (VND, VND)]
)
async def test_every_route_answers_in_the_negotiated_type(http, accept, expected):
    for method, _, path, body in ROUTES:
        request = http.build_request(method, path, json=body)
        if accept is None:
            del request.headers["Accept"]  # httpx sends */* unless told otherwise
        else:
            request.headers["Accept"] = accept
        response = await http.send(request)
        assert response.status_code == 200, (method, path, response.text)
        assert response.headers["content-type"].split(";")[0] == expected, (method, path)
        response.json()


async def test_errors_are_negotiated_too(http):
    response = await http.get("/subjects/missing/versions", headers={"Accept": JSON})
    assert response.status_code == 404
    assert response.headers["content-type"].split(";")[0] == JSON
    assert response.json()["error_code"] == 40401


async def test_unacceptable_accept_gets_406_with_an_error_body(http):
    response = await http.get("/subjects", headers={"Accept": "text/html"})
    assert response.status_code == 406
    assert response.json()["error_code"] == 406
