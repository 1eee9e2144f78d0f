"""Exactly-once on Apache Kafka (issue 29, docs/exactly-once.md): with
``REVIEWPULSE_PROCESSING_GUARANTEE=exactly_once`` a downstream consumer reading
``read_committed`` (librdkafka's default, which every reader here uses) sees every final
aggregate, window alert, critical alert and ``reviews.enriched`` record once, through
repeated ``kill -9`` under LLM faults and through a takeover by a second worker; every
window stays exact and every review is enriched.

At-least-once repeats ``reviews.enriched`` for the reviews answered but not durably joined
at a kill (test_chaos_exactness prints how many); here the record, the join and the
review's offset commit in one transaction, so a kill aborts all three together.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from streams.dev.reader import TopicReader
from streams.dev.stack import EMBEDDED_SESSION_TIMEOUT_S, Stack
from tests.integration.conftest import NewStack
from tests.integration.ground_truth import ENV, LLM_FAULTS, Run, configure_llm, own_stack, owned_partitions
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

EOS_ENV = {**ENV, "REVIEWPULSE_PROCESSING_GUARANTEE": "exactly_once"}
CRITICAL = "reviews.critical_alert"
ALERTS = "restaurants.alerts"


@pytest.fixture(scope="module")
def eos_stack(new_stack: NewStack, broker_kind: str) -> Iterator[Stack]:
    if broker_kind != "kafka":
        pytest.skip("Tansu has no transactions: the setting is refused there (tests/unit)")
    yield from own_stack(new_stack, "exactly-once")


def repeats(stack: Stack, run: Run) -> dict[str, Any]:
    """Records of the run seen more than once by a read_committed reader, per topic."""
    assert stack.broker and stack.registry
    mine = set(run.restaurants)
    seen: dict[str, Counter[str]] = {CRITICAL: Counter(), ALERTS: Counter()}
    with TopicReader(stack.broker.bootstrap, registry_url=stack.registry.url) as reader:
        for record in reader.read_new(CRITICAL, ALERTS):
            value = record.value
            if value.get("restaurant_id") in mine:
                seen[record.topic][value["alert_id"]] += 1
    tumbling = run.tumbling()
    return {
        "reviews.enriched": run.enriched_repeats(),
        "final aggregates": sum(len(v) - 1 for v in tumbling.values()),
        CRITICAL: sum(n - 1 for n in seen[CRITICAL].values()),
        ALERTS: sum(n - 1 for n in seen[ALERTS].values()),
        "critical alerts": sum(seen[CRITICAL].values()),
        "window alerts": sum(seen[ALERTS].values()),
    }


def test_repeated_kill_9_under_exactly_once_repeats_nothing(eos_stack: Stack, tmp_path) -> None:
    stack = eos_stack
    configure_llm(stack, **LLM_FAULTS)
    data_dir = tmp_path / "worker"
    worker = stack.add_worker(data_dir=data_dir, extra_env=EOS_ENV, name="eos-kills-0")
    worker.wait_ready()
    run = Run(stack, "eoskills")
    producing = threading.Thread(target=run.produce, kwargs={"seconds": 20, "reviews_per_s": 150})
    producing.start()
    kills: list[float] = []
    try:
        until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows of the run closed")
        for i in range(1, 4):
            if i == 3:
                worker.wait_ready()
            kills.append(time.time())
            worker.stop(kill=True)
            stack.workers.remove(worker)
            worker = stack.add_worker(data_dir=data_dir, extra_env=EOS_ENV, name=f"eos-kills-{i}")
        producing.join(timeout=60)
        assert not producing.is_alive()
        run.wait_final(timeout_s=90, since_ms=int(kills[0] * 1000))
    finally:
        producing.join(timeout=60)
        configure_llm(stack, error_500_rate=0.0, rate_429_rate=0.0, malformed_rate=0.0)
        run.close()
        worker.stop()  # the module's next test has a group of its own two workers
        stack.workers.remove(worker)

    seen = repeats(stack, run)
    at = ", ".join(f"{(k * 1000 - run.started_ms) / 1000:.1f}" for k in kills)
    print(f"\nexactly-once, three kill -9 at {at} s: {len(run.reviews)} reviews, {len(run.truth_reviews)} "
          f"windows, reviews.enriched records {sum(len(v) for v in run.enriched.values())}; "
          f"seen by a read_committed reader: {seen}")
    run.assert_exact(since_ms=int(kills[0] * 1000))
    assert {k: v for k, v in seen.items() if v and k not in ("critical alerts", "window alerts")} == {}


def test_a_takeover_under_exactly_once_repeats_nothing(eos_stack: Stack, tmp_path) -> None:
    stack = eos_stack
    survivor = stack.add_worker(data_dir=tmp_path / "survivor", extra_env=EOS_ENV, name="eos-survivor")
    victim = stack.add_worker(data_dir=tmp_path / "victim", extra_env=EOS_ENV, name="eos-victim")
    until(lambda: (owned_partitions(survivor), owned_partitions(victim)), timeout_s=60,
          what="both workers own partitions", done=lambda p: bool(p[0] and p[1]))
    run = Run(stack, "eospair")
    producing = threading.Thread(target=run.produce, kwargs={"seconds": 20, "reviews_per_s": 150})
    producing.start()
    try:
        until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows of the run closed")
        killed = time.time()
        victim.stop(kill=True)
        stack.workers.remove(victim)
        until(lambda: owned_partitions(survivor), timeout_s=EMBEDDED_SESSION_TIMEOUT_S + 40,
              what="the survivor owns every partition", interval_s=0.2,
              done=lambda p: len(p) == stack.partitions)
        took_over_s = time.time() - killed
        producing.join(timeout=60)
        assert not producing.is_alive()
        run.wait_final(timeout_s=90, since_ms=int(killed * 1000))
    finally:
        producing.join(timeout=60)
        run.close()

    seen = repeats(stack, run)
    print(f"\nexactly-once, takeover {took_over_s:.1f} s after the kill: {len(run.reviews)} reviews, "
          f"{len(run.truth_reviews)} windows; seen by a read_committed reader: {seen}")
    run.assert_exact(since_ms=int(killed * 1000))
    assert {k: v for k, v in seen.items() if v and k not in ("critical alerts", "window alerts")} == {}
