"""The embedded registry on a real Tansu broker, driven by confluent-kafka's official clients.

One broker and one registry per module (both start in well under a second); tests
isolate by unique subject names. The registry runs on its own event loop in a thread so
the official (blocking) clients can talk to it from plain test functions.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Coroutine, Iterator
from concurrent.futures import Future
from typing import Any

import httpx
import pytest
from confluent_kafka.admin import AdminClient, ConfigResource
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer, AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext

from schema_registry.codec import SchemaCache, decode_record, encode_record
from schema_registry.server import RunningRegistry, start_server
from schema_registry.sync_client import SyncRegistryClient
from streams.dev.broker import AnyBroker, start_broker
from streams.dev.procs import free_port, stop, wait_until

pytestmark = pytest.mark.integration

STARTUP_TIMEOUT_S = 20.0


class RegistryThread:
    """The embedded registry served from a private event loop in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def call(self, coro: Coroutine[Any, Any, Any]) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coro, self.loop)
        return future.result(timeout=STARTUP_TIMEOUT_S)

    def start(self, bootstrap: str) -> RunningRegistry:
        return self.call(start_server(bootstrap, port=0))

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=STARTUP_TIMEOUT_S)
        self.loop.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory, broker_kind: str) -> Iterator[AnyBroker]:
    broker = start_broker(broker_kind, log_dir=tmp_path_factory.mktemp(broker_kind))
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def registry_thread() -> Iterator[RegistryThread]:
    thread = RegistryThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def registry(broker: AnyBroker, registry_thread: RegistryThread) -> Iterator[RunningRegistry]:
    running = registry_thread.start(broker.bootstrap)
    yield running
    registry_thread.call(running.stop())


@pytest.fixture
def official(registry: RunningRegistry) -> Iterator[SchemaRegistryClient]:
    with SchemaRegistryClient({"url": registry.url}) as client:
        yield client


@pytest.fixture
def subject() -> str:
    return f"it-{uuid.uuid4().hex[:10]}-value"


def review_schema(*extra_fields: dict[str, Any], name: str = "Review") -> str:
    fields = [{"name": "review_id", "type": "string"}, {"name": "rating", "type": "int"}]
    return json.dumps(
        {"type": "record", "name": name, "namespace": "it", "fields": fields + list(extra_fields)}
    )


V1 = review_schema()
V2 = review_schema({"name": "language", "type": "string", "default": "pt"})
BREAKING = review_schema({"name": "text", "type": "string"})


def avro(text: str) -> Schema:
    return Schema(text, "AVRO")


def test_official_client_registers_gets_by_id_latest_and_looks_up(official, subject):
    schema_id = official.register_schema(subject, avro(V1))
    assert json.loads(official.get_schema(schema_id).schema_str) == json.loads(V1)
    latest = official.get_latest_version(subject)
    assert (latest.schema_id, latest.version, latest.subject) == (schema_id, 1, subject)
    found = official.lookup_schema(subject, avro(V1))
    assert (found.schema_id, found.version) == (schema_id, 1)
    assert subject in official.get_subjects()
    assert official.get_versions(subject) == [1]


def test_our_decoder_reads_what_the_official_serializer_wrote(official, registry, subject):
    topic = subject.removesuffix("-value")
    serializer = AvroSerializer(official, V1)
    data = serializer(
        {"review_id": "r-1", "rating": 5}, SerializationContext(topic, MessageField.VALUE)
    )
    schema_id = official.get_latest_version(subject).schema_id
    assert data[:5] == b"\x00" + schema_id.to_bytes(4, "big")
    with SyncRegistryClient(registry.url) as ours:
        cache = SchemaCache(ours.get_schema)
        value = decode_record(data, reader_schema=V2, fetch_writer_schema=cache.get)
    assert value == {"review_id": "r-1", "rating": 5, "language": "pt"}


def test_the_official_deserializer_reads_what_our_encoder_wrote(official, registry, subject):
    with SyncRegistryClient(registry.url) as ours:
        schema_id = ours.register(subject, V2)
    data = encode_record(
        {"review_id": "r-2", "rating": 3, "language": "en"}, schema_id=schema_id, schema=V2
    )
    deserializer = AvroDeserializer(official)
    context = SerializationContext(subject.removesuffix("-value"), MessageField.VALUE)
    assert deserializer(data, context) == {"review_id": "r-2", "rating": 3, "language": "en"}


def test_incompatible_registration_is_409_with_a_message(official, subject):
    official.register_schema(subject, avro(V1))
    with pytest.raises(SchemaRegistryError) as info:
        official.register_schema(subject, avro(BREAKING))
    assert (info.value.http_status_code, info.value.error_code) == (409, 409)
    assert "text" in info.value.error_message
    assert not official.test_compatibility(subject, avro(BREAKING))
    assert official.test_compatibility(subject, avro(V2))


def test_invalid_schema_is_42201(official, subject):
    bad = '{"type": "record", "name": "Bad", "fields": [{"name": "x", "type": "nosuch"}]}'
    with pytest.raises(SchemaRegistryError) as info:
        official.register_schema(subject, avro(bad))
    assert (info.value.http_status_code, info.value.error_code) == (422, 42201)


def test_full_compatibility_accepts_a_defaulted_field_and_rejects_a_required_one(official, subject):
    official.register_schema(subject, avro(V1))
    assert official.set_compatibility(subject, "FULL") == {"compatibility": "FULL"}
    assert official.get_compatibility(subject) == "FULL"
    assert official.register_schema(subject, avro(V2)) > 0
    # Removing a field that has no default in the old schema breaks FORWARD, hence FULL.
    removed = json.dumps(
        {
            "type": "record",
            "name": "Review",
            "namespace": "it",
            "fields": [
                {"name": "review_id", "type": "string"},
                {"name": "language", "type": "string", "default": "pt"},
            ],
        }
    )
    with pytest.raises(SchemaRegistryError) as info:
        official.register_schema(subject, avro(removed))
    assert info.value.http_status_code == 409
    assert official.get_versions(subject) == [1, 2]


def test_soft_then_hard_delete(official, subject):
    official.register_schema(subject, avro(V1))
    official.register_schema(subject, avro(V2))
    with pytest.raises(SchemaRegistryError) as info:
        official.delete_subject(subject, permanent=True)
    assert info.value.error_code == 40405
    assert official.delete_version(subject, 1) == 1
    assert official.get_versions(subject) == [2]
    assert official.delete_subject(subject) == [2]
    assert subject not in official.get_subjects()
    assert subject in official.get_subjects(deleted=True)
    assert official.delete_subject(subject, permanent=True) == [1, 2]
    assert subject not in official.get_subjects(deleted=True)


def test_same_schema_under_two_subjects_gets_one_id(official, subject):
    other = subject.replace("-value", "-key")
    text = review_schema(name="Shared" + uuid.uuid4().hex[:6])
    assert official.register_schema(subject, avro(text)) == official.register_schema(
        other, avro(text)
    )


def test_a_registry_restart_keeps_ids_versions_config_and_soft_deletes(
    broker, registry_thread, subject
):
    first = registry_thread.start(broker.bootstrap)
    soft = subject.replace("-value", "-soft-value")
    try:
        with SyncRegistryClient(first.url) as client:
            id1 = client.register(subject, V1)
            id2 = client.register(subject, V2)
            client.set_config("FULL_TRANSITIVE", subject)
            client.register(soft, V1)
            client.delete_subject(soft)
    finally:
        registry_thread.call(first.stop())

    second = registry_thread.start(broker.bootstrap)
    try:
        with SyncRegistryClient(second.url) as client, httpx.Client(base_url=second.url) as http:
            assert client.get_schema(id1) == V1 and client.get_schema(id2) == V2
            assert client.get_latest(subject).version == 2
            assert client.lookup(subject, V1).schema_id == id1
            assert client.get_config(subject) == "FULL_TRANSITIVE"
            assert soft not in client.get_subjects()
            assert http.get(f"/subjects/{soft}/versions", params={"deleted": "true"}).json() == [1]
            fresh = client.register(subject + "-new", review_schema(name="Fresh"))
            assert fresh > id2, "ids are never reused after a restart"
    finally:
        registry_thread.call(second.stop())


def test_schemas_topic_is_compacted_with_one_partition(broker, registry):
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    assert list(admin.list_topics(timeout=5).topics["_schemas"].partitions) == [0]
    (future,) = admin.describe_configs([ConfigResource("topic", "_schemas")]).values()
    assert future.result(timeout=5)["cleanup.policy"].value == "compact"


def test_run_serves_until_sigterm(broker, tmp_path):
    port = free_port()
    code = f"from schema_registry.server import run; run({broker.bootstrap!r}, port={port})"
    with (tmp_path / "registry.log").open("wb") as log:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(
            lambda: httpx.get(f"http://127.0.0.1:{port}/").json() == {},
            timeout_s=STARTUP_TIMEOUT_S,
            what="registry subprocess",
            proc=proc,
            log_path=tmp_path / "registry.log",
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=STARTUP_TIMEOUT_S) == 0
    finally:
        stop(proc)
