"""Exactly-once: the stage's transactional producers follow every assignment of the worker,
from its first, before the runtime service has started (streams/runtime.py).

A partition lost to another worker and got back later needs a new producer: the other
worker's fenced the old one. When the runtime followed assignments only from its start, a
worker that lost partitions 0-1 while it was starting kept their producers, and its first
commit after taking them back failed fenced, which stops the worker (issue 29: 1 takeover run
in 10). The producers here stand for aiokafka's with the broker's one rule that matters: the
latest ``init_transactions`` of a transactional id fences every earlier producer of that id.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from aiokafka.errors import ProducerFenced
from faust.types import TP

from streams import runtime as runtime_module
from streams import transactions
from streams.transactions import StageTransactions
from tests.fake_signal import Signal

BY_RESTAURANT = "reviewpulse-by-restaurant"


class Coordinator:
    """The broker's transaction coordinator: the epoch of each transactional id."""

    def __init__(self) -> None:
        self.epochs: dict[str, int] = {}

    def producer(self, **config: Any) -> FakeProducer:
        return FakeProducer(self, config["transactional_id"])


class FakeProducer:
    def __init__(self, coordinator: Coordinator, transactional_id: str) -> None:
        self.coordinator, self.transactional_id, self.epoch = coordinator, transactional_id, -1

    async def start(self) -> None:  # init_transactions: fences every earlier epoch
        self.epoch = self.coordinator.epochs[self.transactional_id] = (
            self.coordinator.epochs.get(self.transactional_id, -1) + 1)

    def _check(self) -> None:
        if self.coordinator.epochs[self.transactional_id] != self.epoch:
            raise ProducerFenced()

    async def begin_transaction(self) -> None:
        self._check()

    async def send(self, topic: str, **kwargs: Any) -> None:
        self._check()

    async def abort_transaction(self) -> None:
        self._check()

    async def stop(self) -> None:
        pass


def worker(coordinator: Coordinator, name: str) -> SimpleNamespace:
    """What :func:`streams.runtime.install` needs of a worker's app; nothing started."""
    return SimpleNamespace(
        name=name, on_partitions_assigned=Signal(), on_partitions_revoked=Signal(),
        service=lambda service: None,
        topics_=SimpleNamespace(by_restaurant=SimpleNamespace(get_topic_name=lambda: BY_RESTAURANT)),
        stage_transactions=StageTransactions(producer_config={}, app_id="reviewpulse", group_id="reviewpulse",
                                             input_topic=BY_RESTAURANT, timeout_ms=30_000))


async def assign(app: SimpleNamespace, *partitions: int) -> None:
    """A rebalance gives ``app`` these by-restaurant partitions (and an input partition)."""
    assigned = {TP(BY_RESTAURANT, p) for p in partitions} | {TP("reviews.created", 0)}
    await app.on_partitions_revoked.send(revoked=set())
    await app.on_partitions_assigned.send(assigned=assigned)


async def test_a_partition_lost_and_got_back_before_the_runtime_starts_gets_a_new_producer(
        monkeypatch: pytest.MonkeyPatch) -> None:
    coordinator = Coordinator()
    monkeypatch.setattr(transactions, "AIOKafkaProducer", coordinator.producer)
    survivor, victim = worker(coordinator, "survivor"), worker(coordinator, "victim")
    runtime_module.install(survivor)  # type: ignore[arg-type]
    runtime_module.install(victim)  # type: ignore[arg-type]

    await assign(survivor, 0, 1, 2, 3)  # alone in the group, still starting
    await assign(survivor, 2, 3)  # the victim joins
    await assign(victim, 0, 1)
    assert survivor.stage_transactions.partitions == {2, 3}
    await survivor.stage_transactions.send(2, "reviews.enriched", key=b"k", value=b"v")

    await assign(survivor, 0, 1, 2, 3)  # the victim killed: the survivor takes everything
    for partition in range(4):  # a fenced producer would raise here, and stop the worker
        await survivor.stage_transactions.send(partition, "reviews.enriched", key=b"k", value=b"v")
    with pytest.raises(ProducerFenced):  # the victim, had it survived, is fenced
        await victim.stage_transactions.send(0, "reviews.enriched", key=b"k", value=b"v")
