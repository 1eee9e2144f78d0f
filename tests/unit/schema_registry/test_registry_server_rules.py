"""The embedded registry's REST rules, served on a free port over an in-memory log."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from schema_registry.server import start_server
from schema_registry.server.store import MemoryLog

VND = "application/vnd.schemaregistry.v1+json"


def schema(*fields: dict, name: str = "Review") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "t", "fields": list(fields)})


A = {"name": "a", "type": "int"}
V1 = schema(A)
V2 = schema(A, {"name": "b", "type": "string", "default": ""})
V3_BREAKING = schema(A, {"name": "c", "type": "string"})


@pytest.fixture
def memory_log() -> MemoryLog:
    return MemoryLog()


@pytest.fixture
async def http(memory_log: MemoryLog) -> AsyncIterator[httpx.AsyncClient]:
    running = await start_server(None, port=0, log_=memory_log)
    async with httpx.AsyncClient(base_url=running.url, headers={"Content-Type": VND}) as client:
        yield client
    await running.stop()


async def register(http: httpx.AsyncClient, subject: str, text: str) -> httpx.Response:
    return await http.post(f"/subjects/{subject}/versions", json={"schema": text})


def error_code(response: httpx.Response) -> int:
    assert response.headers["content-type"].startswith(VND)
    return response.json()["error_code"]


async def test_root_types_and_empty_subjects(http):
    assert (await http.get("/")).json() == {}
    assert (await http.get("/schemas/types")).json() == ["AVRO"]
    assert (await http.get("/subjects")).json() == []


async def test_register_is_idempotent_and_spelling_does_not_matter(http):
    first = (await register(http, "s-value", V1)).json()["id"]
    respelled = json.dumps(json.loads(V1), indent=2)
    assert (await register(http, "s-value", respelled)).json()["id"] == first
    assert (await http.get("/subjects/s-value/versions")).json() == [1]


async def test_same_schema_under_another_subject_gets_the_same_id(http):
    first = (await register(http, "a-value", V1)).json()["id"]
    second = (await register(http, "b-value", V1)).json()["id"]
    assert first == second
    assert (await http.get(f"/schemas/ids/{first}/subjects")).json() == ["a-value", "b-value"]
    assert (await http.get(f"/schemas/ids/{first}/versions")).json() == [
        {"subject": "a-value", "version": 1},
        {"subject": "b-value", "version": 1},
    ]


async def test_versions_ids_lookup_and_raw_schema(http):
    id1 = (await register(http, "s-value", V1)).json()["id"]
    id2 = (await register(http, "s-value", V2)).json()["id"]
    assert id2 == id1 + 1
    latest = (await http.get("/subjects/s-value/versions/latest")).json()
    assert latest == {"subject": "s-value", "version": 2, "id": id2, "schema": V2}
    assert (await http.get("/subjects/s-value/versions/1/schema")).json() == json.loads(V1)
    assert (await http.get(f"/schemas/ids/{id1}")).json() == {"schema": V1}
    found = (await http.post("/subjects/s-value", json={"schema": V1})).json()
    assert (found["version"], found["id"]) == (1, id1)


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "code"),
    [
        ("GET", "/subjects/nope/versions", None, 404, 40401),
        ("GET", "/subjects/s-value/versions/9", None, 404, 40402),
        ("GET", "/schemas/ids/999", None, 404, 40403),
        ("POST", "/subjects/s-value", {"schema": V2}, 404, 40403),
        ("GET", "/subjects/s-value/versions/0", None, 422, 42202),
        ("GET", "/subjects/s-value/versions/abc", None, 422, 42202),
        ("POST", "/subjects/s-value/versions", {"schema": "{not json"}, 422, 42201),
        ("POST", "/subjects/s-value/versions", {"schema": '{"type": "nosuch"}'}, 422, 42201),
        ("POST", "/subjects/s-value/versions", {"schema": V1, "schemaType": "JSON"}, 422, 42201),
        (
            "POST",
            "/subjects/s-value/versions",
            {"schema": V1, "references": [{"name": "x", "subject": "y", "version": 1}]},
            422,
            42201,
        ),
        ("PUT", "/config", {"compatibility": "SIDEWAYS"}, 422, 42203),
        ("GET", "/config/s-value", None, 404, 40408),
        ("GET", "/no/such/route", None, 404, 404),
    ],
)
async def test_errors_use_confluent_codes(http, method, path, body, status, code):
    await register(http, "s-value", V1)
    response = await http.request(method, path, json=body)
    assert response.status_code == status
    assert error_code(response) == code
    assert response.json()["message"]


async def test_incompatible_change_is_409_with_the_reason(http):
    await register(http, "s-value", V1)
    response = await register(http, "s-value", V3_BREAKING)
    assert response.status_code == 409
    assert error_code(response) == 409
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in response.json()["message"]


async def test_compatibility_endpoint_with_verbose_messages(http):
    await register(http, "s-value", V1)
    ok = await http.post(
        "/compatibility/subjects/s-value/versions/latest?verbose=true", json={"schema": V2}
    )
    assert ok.json() == {"is_compatible": True, "messages": []}
    bad = await http.post(
        "/compatibility/subjects/s-value/versions/1?verbose=true", json={"schema": V3_BREAKING}
    )
    assert bad.json()["is_compatible"] is False
    assert bad.json()["messages"]
    terse = await http.post(
        "/compatibility/subjects/s-value/versions", json={"schema": V3_BREAKING}
    )
    assert terse.json() == {"is_compatible": False}


async def test_subject_config_overrides_global_and_can_be_removed(http):
    assert (await http.get("/config")).json() == {"compatibilityLevel": "BACKWARD"}
    assert (await http.put("/config/s-value", json={"compatibility": "none"})).json() == {
        "compatibility": "NONE"
    }
    assert (await http.get("/config/s-value")).json() == {"compatibilityLevel": "NONE"}
    await register(http, "s-value", V1)
    assert (await register(http, "s-value", V3_BREAKING)).status_code == 200
    assert (await http.delete("/config/s-value")).json() == {"compatibilityLevel": "NONE"}
    fallback = await http.get("/config/s-value?defaultToGlobal=true")
    assert fallback.json() == {"compatibilityLevel": "BACKWARD"}


async def test_soft_then_hard_delete_of_a_subject(http):
    await register(http, "s-value", V1)
    await register(http, "s-value", V2)
    hard_first = await http.delete("/subjects/s-value?permanent=true")
    assert (hard_first.status_code, error_code(hard_first)) == (404, 40405)
    assert (await http.delete("/subjects/s-value")).json() == [1, 2]
    assert (await http.get("/subjects")).json() == []
    assert (await http.get("/subjects?deleted=true")).json() == ["s-value"]
    again = await http.delete("/subjects/s-value")
    assert error_code(again) == 40404
    assert (await http.delete("/subjects/s-value?permanent=true")).json() == [1, 2]
    gone = await http.get("/subjects/s-value/versions?deleted=true")
    assert error_code(gone) == 40401


async def test_soft_then_hard_delete_of_a_version(http):
    await register(http, "s-value", V1)
    await register(http, "s-value", V2)
    hard_first = await http.delete("/subjects/s-value/versions/1?permanent=true")
    assert error_code(hard_first) == 40407
    assert (await http.delete("/subjects/s-value/versions/1")).json() == 1
    assert error_code(await http.delete("/subjects/s-value/versions/1")) == 40406
    assert (await http.get("/subjects/s-value/versions")).json() == [2]
    assert (await http.get("/subjects/s-value/versions?deleted=true")).json() == [1, 2]
    assert (await http.delete("/subjects/s-value/versions/1?permanent=true")).json() == 1
    assert (await http.get("/subjects/s-value/versions?deleted=true")).json() == [2]


async def test_re_registering_after_soft_delete_makes_a_new_version_with_the_old_id(http):
    schema_id = (await register(http, "s-value", V1)).json()["id"]
    await http.delete("/subjects/s-value")
    assert (await register(http, "s-value", V1)).json()["id"] == schema_id
    assert (await http.get("/subjects/s-value/versions")).json() == [2]


async def test_plain_json_bodies_are_accepted_and_other_types_refused(http):
    plain = await http.post(
        "/subjects/p-value/versions",
        content=json.dumps({"schema": V1}),
        headers={"Content-Type": "application/json"},
    )
    assert plain.status_code == 200
    xml = await http.post(
        "/subjects/p-value/versions", content="<schema/>", headers={"Content-Type": "text/xml"}
    )
    assert xml.status_code == 415


async def test_a_restart_over_the_same_log_keeps_everything(http, memory_log):
    id1 = (await register(http, "s-value", V1)).json()["id"]
    await register(http, "s-value", V2)
    await http.put("/config/s-value", json={"compatibility": "FULL"})
    await http.delete("/subjects/s-value/versions/1")
    restarted = await start_server(None, port=0, log_=MemoryLog(memory_log.records))
    try:
        async with httpx.AsyncClient(base_url=restarted.url) as again:
            assert (await again.get("/subjects/s-value/versions")).json() == [2]
            assert (await again.get("/subjects/s-value/versions?deleted=true")).json() == [1, 2]
            assert (await again.get("/config/s-value")).json() == {"compatibilityLevel": "FULL"}
            assert (await again.get(f"/schemas/ids/{id1}")).json() == {"schema": V1}
            new = await again.post(
                "/subjects/other-value/versions", json={"schema": schema(A, name="Other")}
            )
            assert new.json()["id"] == id1 + 2, "ids continue after the highest one stored"
    finally:
        await restarted.stop()


async def test_log_records_follow_confluents_key_layout(http, memory_log):
    await register(http, "s-value", V1)
    await http.put("/config", json={"compatibility": "FULL"})
    keys = [json.loads(key) for key, _value in memory_log.records]
    assert keys == [
        {"keytype": "SCHEMA", "subject": "s-value", "version": 1, "magic": 1},
        {"keytype": "CONFIG", "subject": None, "magic": 0},
    ]
    value = json.loads(memory_log.records[0][1])
    assert value == {"subject": "s-value", "version": 1, "id": 1, "schema": V1, "deleted": False}
