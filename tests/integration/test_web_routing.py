"""Two workers in one group: a per-restaurant request to either answers with the owner's state.

A separate stack (its own broker and group) with two workers sharing four partitions, and a
web token set, so routing, the dashboard fan-out and auth are tested together. The
restaurant's partition is computed here independently (murmur2 of the raw id bytes, as
the by-restaurant topic is partitioned) and checked against what the workers report.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from aiokafka.partitioner import murmur2

from streams.dev.stack import Process, Stack
from tests.integration.conftest import NewStack
from tests.records import review_created
from tests.until import until

pytestmark = pytest.mark.integration

PARTITIONS = 4
TOKEN = "web-token-for-tests-31337"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORKER_ENV = {
    "REVIEWPULSE_WINDOW_SIZE_S": "5",
    "REVIEWPULSE_HOPPING_SIZE_S": "20",
    "REVIEWPULSE_HOPPING_STEP_S": "5",
    "REVIEWPULSE_WINDOW_GRACE_S": "1",
    "REVIEWPULSE_WINDOW_CLOSE_INTERVAL_S": "0.5",
    "REVIEWPULSE_WEB_AUTH_TOKEN": TOKEN,
    "REVIEWPULSE_LOG_LEVEL": "info",
}


Cluster = tuple[Stack, Process, Process]


def partition_of(restaurant_id: str) -> int:
    return (murmur2(restaurant_id.encode()) & 0x7FFFFFFF) % PARTITIONS


def get(worker: Process, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.get(f"{worker.url}{path}", headers=kwargs.pop("headers", AUTH), timeout=10, **kwargs)


def assignment(worker: Process) -> dict[str, list[int]]:
    """Owner URL -> panes changelog partitions, as this worker's router sees it."""
    body = get(worker, "/router/panes/").json()
    return {url.rstrip("/"): sorted(next(iter(tps.values()), [])) for url, tps in body.items()}


@pytest.fixture(scope="module")
def cluster(new_stack: NewStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    stack = new_stack("routing", partitions=PARTITIONS).start(llm_args=["--latency-ms", "5"])
    try:
        a, b = (stack.add_worker(data_dir=tmp_path_factory.mktemp(name), extra_env=WORKER_ENV, name=name)
                for name in ("worker-a", "worker-b"))

        def stable() -> bool:
            if any(get(w, "/ready", headers={}).status_code != 200 for w in (a, b)):
                return False
            views = [assignment(w) for w in (a, b)]
            owners = {a.url, b.url}
            return (views[0] == views[1] and set(views[0]) == owners
                    and sorted(p for ps in views[0].values() for p in ps) == list(range(PARTITIONS)))

        until(stable, timeout_s=60, what="both workers ready, one assignment shared by both",
              interval_s=0.25)
        yield stack, a, b
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def sent() -> dict[str, list[dict[str, Any]]]:
    """The reviews :func:`restaurants` sent, by restaurant."""
    return {}


@pytest.fixture(scope="module")
def restaurants(cluster: Cluster, sent: dict[str, list[dict[str, Any]]]) -> dict[str, str]:
    """Two restaurants per partition (so both workers own some), reviewed; -> owner URL."""
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    import avro_schemas

    stack, a, _ = cluster
    assert stack.broker and stack.registry
    owners = {url: ps for url, ps in assignment(a).items()}
    owner_of = {p: url for url, ps in owners.items() for p in ps}
    run = uuid.uuid4().hex[:6]
    chosen: dict[str, str] = {}
    per_partition = dict.fromkeys(range(PARTITIONS), 0)
    i = 0
    while min(per_partition.values()) < 2:
        name = f"route-{run}-{i}"
        i += 1
        if per_partition[partition_of(name)] < 2:
            per_partition[partition_of(name)] += 1
            chosen[name] = owner_of[partition_of(name)]
    producer = Producer({"bootstrap.servers": stack.broker.bootstrap, "linger.ms": 1})
    context = SerializationContext("reviews.created", MessageField.VALUE)
    now = int(time.time() * 1000)
    with SchemaRegistryClient({"url": stack.registry.url}) as registry:
        serializer = AvroSerializer(registry, avro_schemas.schema_text("ReviewCreated"))
        for name in chosen:
            for rating, text in ((5, "Great food, arrived hot"), (1, "Cold food and a rude driver")):
                review = review_created(uuid.uuid4().hex, restaurant_id=name, rating=rating,
                                        text=f"{text} {name}", occurred_at=now, language="en")
                sent.setdefault(name, []).append(review)
                producer.produce("reviews.created", key=name.encode(), value=serializer(review, context))
    assert producer.flush(10) == 0
    assert set(chosen.values()) == {a.url, cluster[2].url}
    return chosen


def test_restaurant_owned_by_b_is_answered_with_b_state_when_asked_at_a(
        cluster: Cluster, restaurants: dict[str, str]) -> None:
    _, a, b = cluster
    on_b = [r for r, owner in restaurants.items() if owner == b.url]
    on_a = [r for r, owner in restaurants.items() if owner == a.url]

    def windows(worker: Process, restaurant: str) -> httpx.Response:
        return get(worker, f"/api/restaurants/{quote(restaurant, safe='')}/windows")

    # Both reviews of every restaurant folded in (the owner's panes).
    until(lambda: all(sum(w["reviews"] for w in windows(b, r).json()["windows"]) == 2 for r in on_b),
          timeout_s=30, what="reviews folded at B", interval_s=0.3)
    for restaurant in on_b:
        def both(restaurant: str = restaurant) -> tuple[httpx.Response, httpx.Response]:
            at_a, at_b = windows(a, restaurant), windows(b, restaurant)
            assert at_a.status_code == at_b.status_code == 200
            assert at_a.headers["X-ReviewPulse-Worker"] == b.url  # B answered
            assert at_a.headers["X-ReviewPulse-Routed-Via"] == a.url  # through A
            assert "X-ReviewPulse-Routed-Via" not in at_b.headers  # B answered itself, directly
            return at_a, at_b

        # The same state, B's. B's panes may still be taking the LLM's labels and costs (the
        # joins) between the two reads, so they are read again until a pair agrees.
        at_a, _ = until(both, timeout_s=10, what=f"A's and B's answers for {restaurant} agreeing",
                        done=lambda pair: pair[0].json() == pair[1].json(), interval_s=0.3)
        assert at_a.json()["worker"] == b.url and at_a.json()["partition"] == partition_of(restaurant)
    for restaurant in on_a:  # and the other way round: A owns it, B proxies to A
        at_b = windows(b, restaurant)
        assert at_b.headers["X-ReviewPulse-Worker"] == a.url
        assert at_b.json()["worker"] == a.url and at_b.json()["partition"] == partition_of(restaurant)


def test_restaurant_detail_reports_owner_and_dashboard_merges_both_workers(
        cluster: Cluster, restaurants: dict[str, str]) -> None:
    _, a, _ = cluster

    def listed() -> dict[str, dict[str, Any]]:
        body = get(a, "/api/restaurants").json()
        assert body["incomplete_from"] == []
        return {r["restaurant_id"]: r for r in body["restaurants"] if r["restaurant_id"] in restaurants}

    rows = until(listed, timeout_s=30, what="every restaurant's closed window on A's dashboard",
                 done=lambda found: len(found) == len(restaurants), interval_s=0.5)
    # Cost today lives in the owner's partitioned table: A's dashboard has it for B's ones too.
    assert all(row.get("cost_today_micro_usd", 0) > 0 for row in rows.values()), rows
    for restaurant, owner in restaurants.items():
        detail = get(a, f"/api/restaurants/{quote(restaurant, safe='')}").json()
        assert detail["worker"] == owner and detail["owner"] is True
        assert detail["latest"]["reviews"] == 2 and detail["cost_today_micro_usd"] > 0


def test_token_guards_pages_and_api_but_not_probes_and_metrics(
        cluster: Cluster, restaurants: dict[str, str]) -> None:
    _, a, _ = cluster
    restaurant = quote(next(iter(restaurants)), safe="")
    for path in ("/", f"/restaurants/{restaurant}", "/api/restaurants", f"/api/restaurants/{restaurant}",
                 "/static/style.css", "/router/"):
        assert get(a, path, headers={}).status_code == 401, path
        assert get(a, path, headers={"Authorization": "Bearer wrong"}).status_code == 401, path
        assert get(a, path).status_code == 200, path
    # Faust's raw table endpoints are off (web_tables_enabled=False), token or not.
    assert get(a, "/table/").status_code == 404
    for path in ("/health", "/ready", "/metrics"):
        assert get(a, path, headers={}).status_code == 200, path
    # A browser: ?token= once, then an HttpOnly cookie carries it.
    with httpx.Client(base_url=a.url, timeout=10) as browser:
        first = browser.get("/", params={"token": TOKEN})
        assert first.status_code == 200 and "httponly" in first.headers["set-cookie"].lower()
        assert browser.get("/api/restaurants").status_code == 200


def test_a_review_state_is_answered_by_its_owner_then_by_the_worker_that_takes_it_over(
        cluster: Cluster, restaurants: dict[str, str], sent: dict[str, list[dict[str, Any]]]) -> None:
    """Last in the module: it kills B."""
    _, a, b = cluster
    restaurant = next(r for r, owner in restaurants.items() if owner == b.url)
    review_id = sent[restaurant][0]["entity"]["review_id"]
    path = f"/api/restaurants/{quote(restaurant, safe='')}/reviews/{quote(review_id, safe='')}"

    def final(worker: Process) -> httpx.Response:
        response = get(worker, path)
        assert response.status_code in (200, 404), response.text
        return response

    at_b = until(lambda: final(b), timeout_s=30, what="the review's final state at B", interval_s=0.3,
                 done=lambda r: r.status_code == 200 and r.json()["final"])
    at_a = get(a, path)
    assert at_a.status_code == 200, at_a.text
    assert (at_a.headers["X-ReviewPulse-Worker"], at_a.headers["X-ReviewPulse-Routed-Via"]) == (b.url, a.url)
    assert at_a.json() == at_b.json() and at_a.json()["worker"] == b.url
    assert at_a.json()["partition"] == partition_of(restaurant)
    assert get(a, f"/api/restaurants/{quote(restaurant, safe='')}/reviews/never-sent").status_code == 404

    b.stop(kill=True)  # A takes B's partitions over, restoring their tables
    taken = until(lambda: get(a, path), timeout_s=90, what="A answering for B's restaurant itself",
                  interval_s=0.5,
                  done=lambda r: r.status_code == 200 and r.headers.get("X-ReviewPulse-Worker") == a.url)
    assert {k: v for k, v in taken.json().items() if k != "worker"} == {
        k: v for k, v in at_b.json().items() if k != "worker"}
