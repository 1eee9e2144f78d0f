"""A restaurant's history from ``restaurants.aggregates`` (issue 33.3), on a real broker: the
closed windows of a range, the same from a worker restarted with an empty data dir, and a
range too wide refused with the limit named."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_pipeline_support import Outputs

from streams.dev.stack import Stack
from tests.integration.conftest import SMALL_WINDOWS, NewStack, Producer
from tests.integration.ground_truth import own_stack
from tests.records import review_created

pytestmark = pytest.mark.integration

AGGREGATES = "restaurants.aggregates"
ENV = {**SMALL_WINDOWS, "REVIEWPULSE_HISTORY_MAX_RANGE_S": "3600"}


@pytest.fixture(scope="module")
def history_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "history")


def history(url: str, restaurant: str, **query: object) -> httpx.Response:
    return httpx.get(f"{url}/api/restaurants/{restaurant}/windows", params=query, timeout=30)


def test_history_of_closed_windows_survives_a_restart(history_stack: Stack, tmp_path: Path) -> None:
    tag = uuid.uuid4().hex[:6]
    restaurant = f"rest-{tag}"
    first = history_stack.add_worker(data_dir=tmp_path / "a", extra_env=ENV, name="history-a")
    first.wait_ready(timeout_s=90)
    started_ms = int(time.time() * 1000)
    producer = Producer(history_stack)
    outputs = Outputs(history_stack, topics=(AGGREGATES,))
    try:
        for n in range(12):  # three 5 s windows' worth
            producer.send_review(review_created(tag, n, restaurant_id=restaurant))
            time.sleep(1.0)  # event time moves: the reviews spread over windows (the point)
        sent = outputs.wait_for(AGGREGATES, lambda v: v["restaurant_id"] == restaurant
                                and v["window_kind"] == "TUMBLING", count=3, timeout_s=30)
    finally:
        producer.close()
        outputs.close()
    expected = sorted({r.value["aggregate_id"] for r in sent})
    reviews = sum(r.value["reviews"] for r in {r.value["aggregate_id"]: r for r in sent}.values())
    to_ms = int(time.time() * 1000)

    answer = history(first.url, restaurant, **{"from": started_ms - 10_000, "to": to_ms})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [w["aggregate_id"] for w in body["windows"]] == expected
    assert sum(w["reviews"] for w in body["windows"]) == reviews
    print(f"\nhistory: {len(body['windows'])} windows of {restaurant}, {body['records_read']} records read "
          f"in {body['read_ms']} ms")
    hopping = history(first.url, restaurant, **{"from": started_ms - 30_000, "to": to_ms, "kind": "hopping"})
    assert hopping.status_code == 200, hopping.text
    kinds = {w["window_kind"] for w in hopping.json()["windows"]}
    assert kinds == {"HOPPING"}  # one closed already: [start - 15 s, start + 5 s) by start + 7 s

    first.stop(kill=True)
    second = history_stack.add_worker(data_dir=tmp_path / "b", extra_env=ENV, name="history-b")
    second.wait_ready(timeout_s=90)
    again = history(second.url, restaurant, **{"from": started_ms - 10_000, "to": to_ms})
    assert again.status_code == 200 and again.json()["windows"] == body["windows"]

    # Refused before any read, saying why.
    wide = history(second.url, restaurant, **{"from": to_ms - 3_601_000, "to": to_ms})
    assert wide.status_code == 400 and "REVIEWPULSE_HISTORY_MAX_RANGE_S" in wide.json()["error"]
    for bad in ({"from": "yesterday", "to": to_ms}, {"from": to_ms}, {"from": to_ms, "to": to_ms - 1},
                {"from": started_ms, "to": to_ms, "kind": "SESSION"}):
        assert history(second.url, restaurant, **bad).status_code == 400, bad
