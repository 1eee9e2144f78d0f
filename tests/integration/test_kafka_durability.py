"""What only a broker with durable logs can show: a broker restart under load, and tables
restored from changelogs the log cleaner has really compacted.

Both use the chaos tests' ground truth (:class:`test_chaos_exactness.Run`): 20 restaurants,
reviews and orders paced into 5 s windows, every window's final aggregate compared with
what was produced. Tansu keeps its topics in memory, so both are for Kafka alone.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from streams.dev.kafka import KafkaBroker
from streams.dev.stack import Stack
from tests.integration.conftest import NewStack
from tests.integration.ground_truth import ENV, Run, own_stack
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

# Changelog topics roll a segment every half second and the cleaner takes any dirty one
# (the broker checks every second, streams.dev.kafka): compaction runs within the test.
COMPACT_SOON = {"segment.ms": "500", "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
                "delete.retention.ms": "100"}


@pytest.fixture(scope="module")
def kafka_stack(new_stack: NewStack, broker_kind: str) -> Iterator[Stack]:
    if broker_kind != "kafka":
        pytest.skip("Tansu keeps topics in memory: no restart keeps them, and it never compacts")
    yield from own_stack(new_stack, "kafka-durability")


# Upstream producers hold what they send while the broker is down, and resend it after their
# reconnect backoff: an outage longer than the grace makes those events late (counted in the
# open window's late_events, as any late event). The broker is down ~6 s here; a 12 s grace
# keeps every event on time, so every window must come out exact.
RESTART_ENV = {**ENV, "REVIEWPULSE_WINDOW_GRACE_S": "12"}


def test_broker_restart_under_load_loses_nothing_and_the_worker_carries_on(kafka_stack, tmp_path):
    stack = kafka_stack
    assert isinstance(stack.broker, KafkaBroker)
    worker = stack.add_worker(data_dir=tmp_path / "worker", extra_env=RESTART_ENV, name="broker-restart")
    worker.wait_ready()
    run = Run(stack, "brk")
    with run.traffic(seconds=24, reviews_per_s=100) as producing:
        until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows of the run closed")
        stopped = time.time()
        stack.broker.restart()  # SIGTERM, then the same log dir and ports
        down_s = time.time() - stopped
        at_s = (stopped * 1000 - run.started_ms) / 1000
        run.finish(producing, timeout_s=120, since_ms=int(stopped * 1000),
                   context=f"broker down {down_s:.1f} s from {at_s:.1f} s")
    print(f"\n{len(run.reviews)} reviews, {sum(run.truth_orders.values())} orders, "
          f"{len(run.truth_reviews)} windows; broker restarted {at_s:.1f} s "
          f"into the run, down {down_s:.1f} s; reviews.enriched repeated {run.enriched_repeats()}")
    assert worker.proc.poll() is None, "the worker stopped instead of riding out the broker restart"
    run.assert_exact(since_ms=int(stopped * 1000))


def changelogs(bootstrap: str) -> list[str]:
    from confluent_kafka.admin import AdminClient

    return sorted(t for t in AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).topics
                  if t.endswith("-changelog"))


def compact_soon(bootstrap: str, topics: list[str]) -> None:
    from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

    admin = AdminClient({"bootstrap.servers": bootstrap})
    resources = [ConfigResource("topic", topic, incremental_configs=[
        ConfigEntry(name, value, incremental_operation=AlterConfigOpType.SET)
        for name, value in COMPACT_SOON.items()]) for topic in topics]
    for future in admin.incremental_alter_configs(resources).values():
        future.result(15)


def compacted_away(bootstrap: str, topics: list[str]) -> int:
    """Offsets below the high watermarks of ``topics`` that no longer hold a record: the cleaner ran."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "compaction-probe",
                         "enable.auto.commit": False, "enable.partition.eof": True})
    try:
        metadata = consumer.list_topics(timeout=10).topics
        tps = [TopicPartition(t, p, OFFSET_BEGINNING) for t in topics for p in metadata[t].partitions]
        highs = {(tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        consumer.assign([tp for tp in tps if highs[(tp.topic, tp.partition)] > 0])
        seen: dict[Any, int] = {}
        open_ = {k for k, high in highs.items() if high > 0}
        while open_:
            message = consumer.poll(10)
            if message is None:
                break
            key = (message.topic(), message.partition())
            if message.error():
                if message.error().code() == KafkaError._PARTITION_EOF:
                    open_.discard(key)
                continue
            if message.offset() < highs[key]:
                seen[key] = seen.get(key, 0) + 1
        return sum(highs.values()) - sum(seen.values())
    finally:
        consumer.close()


def test_tables_restored_from_compacted_changelogs_after_kill_9_keep_every_window_exact(
        kafka_stack, tmp_path):
    stack = kafka_stack
    assert stack.broker
    bootstrap = stack.broker.bootstrap
    worker = stack.add_worker(data_dir=tmp_path / "first", extra_env=ENV, name="compacted-first")
    worker.wait_ready()
    tables = changelogs(bootstrap)
    assert tables, "the worker created no changelog topic"
    compact_soon(bootstrap, tables)
    run = Run(stack, "cmp")
    with run.traffic(seconds=24, reviews_per_s=150) as producing:
        removed = until(lambda: compacted_away(bootstrap, tables), timeout_s=40, interval_s=1.0,
                        what="the log cleaner compacting a changelog")
        killed = time.time()
        worker.stop(kill=True)
        stack.workers.remove(worker)
        # An empty data dir: every table is rebuilt from its compacted changelog.
        stack.add_worker(data_dir=tmp_path / "restored", extra_env=ENV, name="compacted-restored")
        run.finish(producing, timeout_s=120, since_ms=int(killed * 1000),
                   context=f"{removed} changelog offsets compacted away before the kill")
    print(f"\n{len(run.reviews)} reviews, {len(run.truth_reviews)} windows; {removed} changelog offsets "
          f"compacted away before kill -9 at {(killed * 1000 - run.started_ms) / 1000:.1f} s; "
          f"reviews.enriched repeated {run.enriched_repeats()}")
    run.assert_exact(since_ms=int(killed * 1000))
