"""The async and sync registry clients against the embedded server on a free port.

Error answers a registry does not give itself (429, 401, a proxy's HTML page...) come from
:class:`tests.registry_gateway.RegistryGateway`, a real local server in front of it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import certifi
import httpx
import pytest
from pydantic import SecretStr

from schema_registry.client import AsyncRegistryClient
from schema_registry.errors import (
    DEFINITE_REASONS,
    RETRIABLE_REASONS,
    IncompatibleSchemaError,
    RegistryHTTPError,
)
from schema_registry.rest import RegistryConnection
from schema_registry.server import RunningRegistry
from schema_registry.sync_client import SyncRegistryClient
from streams import metrics
from tests.registry_gateway import Fault, RegistryGateway

V1 = json.dumps(
    {"type": "record", "name": "R", "namespace": "t", "fields": [{"name": "a", "type": "int"}]}
)
V2 = json.dumps(
    {
        "type": "record",
        "name": "R",
        "namespace": "t",
        "fields": [{"name": "a", "type": "int"}, {"name": "b", "type": "string"}],
    }
)


@pytest.fixture
async def client(registry: RunningRegistry) -> AsyncIterator[AsyncRegistryClient]:
    async with AsyncRegistryClient(registry.url) as client:
        yield client


async def test_register_lookup_latest_and_version(client):
    schema_id = await client.register("r-value", V1)
    assert await client.get_schema(schema_id) == V1
    latest = await client.get_latest("r-value")
    assert (latest.subject, latest.version, latest.schema_id) == ("r-value", 1, schema_id)
    assert await client.lookup("r-value", V1) == latest
    assert await client.get_version("r-value", 1) == latest
    assert await client.get_subjects() == ["r-value"]


async def test_subject_names_with_slashes_are_escaped(client):
    schema_id = await client.register("team/a-value", V1)
    assert (await client.get_latest("team/a-value")).schema_id == schema_id


async def test_incompatible_registration_raises_incompatible_schema_error(client):
    await client.register("r-value", V1)
    ok, messages = await client.test_compatibility("r-value", V2)
    assert not ok and messages
    with pytest.raises(IncompatibleSchemaError) as info:
        await client.register("r-value", V2)
    assert info.value.subject == "r-value"
    assert isinstance(info.value.__cause__, RegistryHTTPError)


async def test_config_and_delete(client):
    assert await client.get_config() == "BACKWARD"
    assert await client.set_config("FULL", "r-value") == "FULL"
    assert await client.get_config("r-value") == "FULL"
    assert await client.get_config("unset-value") == "BACKWARD"
    await client.register("r-value", V1)
    assert await client.delete_subject("r-value") == [1]
    assert await client.delete_subject("r-value", permanent=True) == [1]


async def test_registry_errors_carry_status_and_code(client):
    with pytest.raises(RegistryHTTPError) as info:
        await client.get_latest("missing-value")
    assert (info.value.status, info.value.error_code, info.value.retriable) == (404, 40401, False)


async def test_schemas_by_id_are_fetched_once():
    calls: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url.path)
        return httpx.Response(200, json={"schema": V1})

    async with AsyncRegistryClient(
        "http://registry.test", transport=httpx.MockTransport(handler)
    ) as client:
        assert await client.get_schema(3) == V1
        assert await client.get_schema(3) == V1
    assert calls == ["/schemas/ids/3"]


async def test_server_errors_and_no_answer_are_retriable():
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(503, text="upstream down")

    async with AsyncRegistryClient(
        "http://registry.test", transport=httpx.MockTransport(handler)
    ) as client:
        with pytest.raises(RegistryHTTPError) as info:
            await client.get_schema(1)
    assert (info.value.status, info.value.error_code, info.value.retriable) == (503, None, True)

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    async with AsyncRegistryClient(
        "http://registry.test", transport=httpx.MockTransport(refuse)
    ) as client:
        with pytest.raises(RegistryHTTPError) as info:
            await client.get_subjects()
    assert info.value.status is None and info.value.retriable
    assert isinstance(info.value.__cause__, httpx.ConnectError)


async def test_basic_auth_is_sent_and_the_password_never_shows(caplog):
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["Authorization"])
        return httpx.Response(200, json=["s"])

    caplog.set_level(logging.DEBUG)
    client = AsyncRegistryClient(
        "http://registry.test",
        username="svc",
        password="hunter2-secret",
        transport=httpx.MockTransport(handler),
    )
    async with client:
        await client.get_subjects()
    assert seen == [httpx.BasicAuth("svc", "hunter2-secret")._auth_header]
    assert "hunter2-secret" not in repr(client)
    assert "hunter2-secret" not in repr(client.connection)
    assert "hunter2-secret" not in caplog.text


def test_tls_options_build_an_ssl_context():
    connection = RegistryConnection(
        url="https://registry.test", ca_path=certifi.where(), password=SecretStr("x")
    )
    assert isinstance(connection.httpx_options()["verify"], ssl.SSLContext)
    assert "verify" not in RegistryConnection(url="https://registry.test").httpx_options()


async def test_sync_client_speaks_the_same_api(registry):
    # The server shares this event loop, so the blocking client runs in a thread.
    await asyncio.to_thread(_sync_client_round_trip, registry.url)


def _sync_client_round_trip(url: str) -> None:
    with SyncRegistryClient(url) as client:
        schema_id = client.register("s-value", V1)
        assert client.get_schema(schema_id) == V1
        assert client.lookup("s-value", V1).version == 1
        assert client.get_latest("s-value").schema_id == schema_id
        assert client.test_compatibility("s-value", V1) == (True, [])
        assert client.set_config("NONE") == "NONE"
        assert client.get_config() == "NONE"
        assert client.get_subjects() == ["s-value"]
        assert client.delete_subject("s-value") == [1]


# --- which refusals may change (issue 30): a gateway in front of the real registry -------------
@pytest.fixture
def gateway(registry: RunningRegistry) -> Iterator[RegistryGateway]:
    with RegistryGateway(registry.url) as gateway:
        yield gateway


async def _refusal(url: str, call: str = "get_schema") -> RegistryHTTPError:
    async with AsyncRegistryClient(url) as client:
        with pytest.raises(RegistryHTTPError) as info:
            await (client.get_schema(1) if call == "get_schema" else client.get_latest("missing-value"))
    return info.value


@pytest.mark.parametrize(("status", "reason"), [
    (429, "rate_limited"), (401, "unauthorized"), (403, "forbidden"), (408, "timeout"),
    (500, "server_error"), (503, "server_error"), (307, "redirected")])
async def test_answers_that_may_change_are_retriable_with_their_reason(gateway, status, reason):
    gateway.fail(Fault(status, times=1))
    error = await _refusal(gateway.url)
    assert (error.status, error.reason, error.retriable) == (status, reason, True)


async def test_retry_after_is_read_as_seconds_or_as_an_http_date(gateway):
    in_90_s = format_datetime(datetime.now(UTC) + timedelta(seconds=90), usegmt=True)
    gateway.fail(Fault(429, times=1, retry_after="12"), Fault(503, times=1, retry_after=in_90_s),
                 Fault(429, times=1), Fault(429, times=1, retry_after="nan"),
                 Fault(429, times=1, retry_after="inf"))
    assert (await _refusal(gateway.url)).retry_after_s == 12.0
    assert 88.0 <= (await _refusal(gateway.url)).retry_after_s <= 90.0
    assert [(await _refusal(gateway.url)).retry_after_s for _ in range(3)] == [None, None, None]


async def test_only_the_registrys_own_not_found_codes_are_definite(registry, gateway):
    schema_missing = await _refusal(registry.url)
    assert (schema_missing.error_code, schema_missing.reason, schema_missing.retriable) == (
        40403, "not_found", False)
    subject_missing = await _refusal(registry.url, call="get_latest")
    assert (subject_missing.error_code, subject_missing.reason, subject_missing.retriable) == (
        40401, "not_found", False)
    # A wrong base URL path: the real registry's answer to a route it does not have.
    wrong_path = await _refusal(f"{registry.url}/api/v1")
    assert (wrong_path.status, wrong_path.error_code, wrong_path.reason, wrong_path.retriable) == (
        404, 404, "path_not_found", True)
    # A web server (no registry) at that URL: an HTML 404, or a 200 page for any path.
    gateway.fail(Fault(404, times=1, text="<html>Not Found</html>"),
                 Fault(200, times=1, text="<html>Welcome</html>"))
    assert (await _refusal(gateway.url)).reason == "path_not_found"
    page = await _refusal(gateway.url)
    assert (page.status, page.reason, page.retriable) == (200, "unexpected_answer", True)


async def test_a_request_the_registry_understood_and_refused_is_definite(client):
    await client.register("r-value", V1)
    with pytest.raises(RegistryHTTPError) as info:
        await client.register("r-value", "{not avro")
    assert (info.value.status, info.value.reason, info.value.retriable) == (422, "refused", False)


def test_every_retriable_reason_is_a_pre_initialised_wait_series():
    assert metrics.REGISTRY_WAIT_REASONS == RETRIABLE_REASONS
    for reason in RETRIABLE_REASONS:
        assert metrics.REGISTRY.get_sample_value(
            "reviewpulse_registry_waits_total", {"reason": reason}) is not None
    assert not set(RETRIABLE_REASONS) & set(DEFINITE_REASONS)
