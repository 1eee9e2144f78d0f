"""The decode stage and a registry that answers but will not serve a schema (issue 30, finding 5).

What a user relies on: a review written with a writer version the worker has not cached
yet is dead-lettered ``unknown_schema_id`` only when the registry says that schema does
not exist (40403). A rate limit (429), credentials the registry refuses (401/403), a
timeout (408), a 5xx, no answer or a 404 that is not the registry's verdict (a wrong base
URL path) is waited out: counted by reason, logged, never dead-lettered, and the record
flows once the registry serves it. ``Retry-After`` is honoured.

The registry is the embedded one on a free port, behind :class:`RegistryGateway` (a real
local HTTP server) that answers the faults a gateway in front of a registry would.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest

import avro_schemas
from agents import decode
from schema_registry.client import AsyncRegistryClient
from schema_registry.codec import encode_record
from schema_registry.server import RunningRegistry
from streams import metrics
from streams.codecs import AvroCodecs
from streams.protocol import REVIEW, read_item
from streams.settings import load_settings
from tests.records import review_created
from tests.registry_gateway import Fault, RegistryGateway
from tests.unit.agents.conftest import FakeEvent, FakeMessage

REVIEWS_CREATED = "reviews.created"
# A writer version the worker has never seen: ours plus an optional field (BACKWARD-compatible).
WRITER_V2 = json.loads(avro_schemas.schema_text("ReviewCreated"))
WRITER_V2["fields"].append({"name": "channel", "type": ["null", "string"], "default": None,
                            "doc": "App or web."})
WAIT_REASONS = ("rate_limited", "unauthorized", "forbidden", "timeout", "server_error", "no_answer",
                "path_not_found", "redirected")


# --- fakes of the runtime's senders, and input events -------------------------------------------
class Sent:
    """What the stage sent: dead letters and by-restaurant records, each delivered at once."""

    def __init__(self) -> None:
        self.dead: list[dict[str, Any]] = []
        self.items: list[bytes] = []

    async def dead_letter(self, origin: Any, **details: Any) -> Any:
        self.dead.append({"offset": origin.offset, **details})
        return _delivered()

    async def send(self, topic: str, *, key: bytes, value: bytes, **_: Any) -> Any:
        self.items.append(value)
        return _delivered()


def _delivered() -> asyncio.Future[None]:
    done = asyncio.get_running_loop().create_future()
    done.set_result(None)
    return done


def review(n: int, *, tag: str) -> dict[str, Any]:
    return review_created(tag, n, restaurant_id=f"rest-{n % 3}", text=f"Pedido {n}: chegou frio",
                          source="unit-test", channel="app")


def waits() -> dict[str, float]:
    return {reason: metrics.REGISTRY.get_sample_value(
        "reviewpulse_registry_waits_total", {"reason": reason}) or 0.0 for reason in WAIT_REASONS}


def waits_since(before: dict[str, float]) -> dict[str, int]:
    return {reason: int(n - before[reason]) for reason, n in waits().items() if n > before[reason]}


# --- fixtures ------------------------------------------------------------------------------------
@pytest.fixture
def gateway(registry: RunningRegistry) -> Iterator[RegistryGateway]:
    with RegistryGateway(registry.url) as gateway:
        yield gateway


@pytest.fixture
async def writer_v2_id(registry: RunningRegistry) -> int:
    async with AsyncRegistryClient(registry.url) as producer:
        return await producer.register(f"{REVIEWS_CREATED}-value", json.dumps(WRITER_V2))


@pytest.fixture
async def stage(gateway: RegistryGateway, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Sent]:
    """The decode stage's runtime: real codecs reading through the gateway, recording senders."""
    codecs = AvroCodecs(load_settings(), client=AsyncRegistryClient(gateway.url))
    sent = Sent()
    monkeypatch.setattr(decode.runtime, "codecs", codecs, raising=False)
    monkeypatch.setattr(decode.runtime, "dead_letters", type("DL", (), {"send": sent.dead_letter})(),
                        raising=False)
    monkeypatch.setattr(decode.runtime, "send", sent.send, raising=False)
    monkeypatch.setattr(decode, "REGISTRY_RETRY_MIN_S", 0.001)  # the waits' lengths: see below
    yield sent
    await codecs.stop()


def events_of(values: list[bytes], *, tag: str) -> list[FakeEvent]:
    return [FakeEvent(FakeMessage(REVIEWS_CREATED, 0, offset, f"{tag}-{offset}".encode(), value))
            for offset, value in enumerate(values)]


# --- the finding ------------------------------------------------------------------------------------
async def test_a_registry_answering_429_then_401_is_waited_out_and_nothing_is_dead_lettered(
        stage: Sent, gateway: RegistryGateway, writer_v2_id: int) -> None:
    reviews = [review(n, tag="rl") for n in range(60)]
    values = [encode_record(r, schema_id=writer_v2_id, schema=WRITER_V2) for r in reviews]
    gateway.fail(Fault(429, times=3, retry_after="0"), Fault(401, times=3))
    before = waits()

    outputs = await decode.send_batch(events_of(values, tag="rl"), kind=REVIEW)

    assert stage.dead == [], f"dead-lettered while the registry refused to serve: {stage.dead[:3]}"
    assert len(outputs) == len(stage.items) == len(reviews)
    assert [read_item(v).event_id for v in stage.items] == [r["event_id"] for r in reviews]
    assert waits_since(before) == {"rate_limited": 3, "unauthorized": 3}
    assert [a.status for a in gateway.answers(faulted=True)] == [429] * 3 + [401] * 3
    assert len(gateway.answers(faulted=False)) == 1, "the writer schema is fetched once, then cached"


async def test_each_refusal_that_may_change_is_waited_out_with_its_reason(
        stage: Sent, gateway: RegistryGateway, writer_v2_id: int) -> None:
    value = encode_record(review(0, tag="kinds"), schema_id=writer_v2_id, schema=WRITER_V2)
    gateway.fail(Fault(403, times=1), Fault(408, times=1), Fault(503, times=1),
                 Fault(404, times=1),  # Confluent's answer to an unknown route: error_code 404
                 Fault(404, times=1, text="<html>Not Found</html>"),  # a wrong base URL's web server
                 Fault(307, times=1))
    before = waits()

    await decode.send_batch(events_of([value], tag="kinds"), kind=REVIEW)

    assert stage.dead == [] and len(stage.items) == 1
    assert waits_since(before) == {"forbidden": 1, "timeout": 1, "server_error": 1, "path_not_found": 2,
                                   "redirected": 1}


async def test_only_the_registrys_schema_not_found_is_unknown_schema_id(
        stage: Sent, gateway: RegistryGateway, writer_v2_id: int) -> None:
    unknown = encode_record(review(0, tag="nf"), schema_id=writer_v2_id + 1_000, schema=WRITER_V2)
    known = encode_record(review(1, tag="nf"), schema_id=writer_v2_id, schema=WRITER_V2)
    before = waits()

    await decode.send_batch(events_of([unknown, known], tag="nf"), kind=REVIEW)

    assert [(d["offset"], d["reason"]) for d in stage.dead] == [(0, "unknown_schema_id")]
    assert len(stage.items) == 1 and waits_since(before) == {}
    [answer] = [a for a in gateway.answers() if a.status == 404]
    assert answer.path == f"/schemas/ids/{writer_v2_id + 1_000}" and not answer.faulted


async def test_a_registry_refusing_the_request_itself_is_a_dead_letter_not_a_stalled_partition(
        stage: Sent, gateway: RegistryGateway, writer_v2_id: int) -> None:
    """A 406 (or 400, 422...) is the registry's definite answer to GET /schemas/ids/N; no
    conforming registry gives it, and asking again will not change it."""
    refused = encode_record(review(0, tag="rf"), schema_id=writer_v2_id, schema=WRITER_V2)
    after = encode_record(review(1, tag="rf"), schema_id=writer_v2_id, schema=WRITER_V2)
    gateway.fail(Fault(406, times=1))
    before = waits()

    await decode.send_batch(events_of([refused, after], tag="rf"), kind=REVIEW)

    assert [(d["offset"], d["reason"]) for d in stage.dead] == [(0, "registry_refused")]
    assert len(stage.items) == 1 and waits_since(before) == {}


# --- how long each wait is -----------------------------------------------------------------------
class Sleeps:
    """A sleep that records and returns at once: the waits' lengths, without waiting them."""

    def __init__(self) -> None:
        self.s: list[float] = []

    async def __call__(self, delay_s: float) -> None:
        self.s.append(delay_s)


async def test_retry_after_is_honoured_and_other_waits_back_off(
        gateway: RegistryGateway, writer_v2_id: int) -> None:
    value = encode_record(review(0, tag="ra"), schema_id=writer_v2_id, schema=WRITER_V2)
    in_30_s = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    gateway.fail(Fault(429, times=1, retry_after="7"), Fault(429, times=1, retry_after=in_30_s),
                 Fault(429, times=1, retry_after="3600"), Fault(429, times=1),
                 Fault(401, times=4))
    sleeps = Sleeps()
    async with AsyncRegistryClient(gateway.url) as client:
        codecs = AvroCodecs(load_settings(), client=client)
        record = await decode.decode_waiting(codecs, "ReviewCreated", value, sleep=sleeps)

    assert record["event_id"] == "evt-ra-0"
    assert sleeps.s[0] == 7.0
    assert 28.0 <= sleeps.s[1] <= 30.0, sleeps.s  # an HTTP date: seconds from now
    assert sleeps.s[2] == decode.REGISTRY_RETRY_AFTER_MAX_S == 60.0, "a far Retry-After is capped"
    # Without a hint: doubling from REGISTRY_RETRY_MIN_S up to REGISTRY_RETRY_MAX_S.
    assert sleeps.s[3:] == [0.5, 1.0, 2.0, 4.0, 5.0], sleeps.s
