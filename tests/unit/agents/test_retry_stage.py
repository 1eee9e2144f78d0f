"""The retry stage acks a record only once its redelivery is acknowledged (issue 30, finding 6).

The agent runs through Faust's ``agent.test_context()`` with the runtime's senders replaced
by the stage fakes of ``conftest`` (:class:`World`), so what it sends back to the
by-restaurant topic can be handed to a :class:`~agents.stage.StageCore` and enriched. Its
wait for a record's not-before time goes through :class:`GatedSleep`: a test says when
the wait ends, or cancels the agent inside it.
"""

from __future__ import annotations

import asyncio
import dataclasses
from typing import TYPE_CHECKING, Any

import pytest

from agents import retry
from agents.llm.outcome import EnrichStatus
from agents.ticks import record_progress
from streams.protocol import read_item, write_item
from tests.unit.agents.test_stage_core import fail_once  # a review folded at w0, its first call failed

if TYPE_CHECKING:
    from tests.unit.agents.conftest import World

TRANSIENT = EnrichStatus.TRANSIENT_FAILURE


class GatedSleep:
    """Stands in for the retry module's ``asyncio``: ``sleep`` returns when the gate opens."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.asked: list[float] = []
        self.gate = asyncio.Event()

    async def sleep(self, delay_s: float) -> None:
        self.asked.append(delay_s)
        self.world.changed()
        await self.gate.wait()

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


class WorldTime:
    """Stands in for the retry module's ``time``: the world's clock, so not-before times are
    read against the clock the stage core wrote them with."""

    def __init__(self, world: World) -> None:
        self.world = world

    def time(self) -> float:
        return self.world.clock.now_ms / 1000


@pytest.fixture
def sleeps(world: World, monkeypatch: pytest.MonkeyPatch) -> GatedSleep:
    gated = GatedSleep(world)
    monkeypatch.setattr(retry, "asyncio", gated)
    monkeypatch.setattr(retry, "time", WorldTime(world))
    return gated


@pytest.fixture
def wired(world, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The runtime the retry agent uses: the world's senders, ready at once; acks wake waiters."""
    runtime = retry.runtime

    async def ready() -> None:
        return None

    def progressed(events: Any) -> None:  # called once events are acked: wakes the waiters
        record_progress(events)
        world.changed()

    monkeypatch.setattr(runtime, "ready", ready)
    monkeypatch.setattr(retry, "record_progress", progressed)
    monkeypatch.setattr(runtime, "send", world.send, raising=False)
    monkeypatch.setattr(runtime, "dead_letters", type("DL", (), {"send": staticmethod(world.dead_letter)})(),
                        raising=False)
    return runtime


async def test_the_retry_agent_cancelled_during_its_sleep_leaves_the_record_unacked_and_is_still_enriched(
        world, feed, llm, make_stage, t, sleeps, wired) -> None:
    core = make_stage()
    _, sent = await fail_once(world, feed, llm, core, t)

    async with retry.retry_stage.test_context() as first:
        record = await first.put(sent.value, key=sent.key, wait=False)
        await world.until(lambda: sleeps.asked, what="the retry agent waiting for the not-before time")
    # The worker stopped (or lost the partition) inside the wait: the record is not done.
    assert not record.message.acked, "acked before it went back to the by-restaurant topic"
    assert world.on(retry.BY_RESTAURANT) == []

    # Not acked, so not committed: the next owner reads it again and, once due, sends it on.
    sleeps.gate.set()
    async with retry.retry_stage.test_context() as second:
        again = await second.put(sent.value, key=sent.key, wait=False)
        await world.until(lambda: world.on(retry.BY_RESTAURANT), what="the redelivery")
        await world.until(lambda: again.message.acked, what="the ack after the redelivery")
    [back] = world.on(retry.BY_RESTAURANT)
    assert (back.value, back.key) == (sent.value, sent.key)

    returned = feed.event(back.value)
    await core.process([returned])
    llm.respond("e1", attempt=2, label="NEGATIVE")
    await world.until_acked(returned)
    [enriched] = world.enriched("e1")
    assert (enriched["sentiment"], enriched["attempts"]) == ("NEGATIVE", 2)
    assert world.pane(t.w0).provisional_labels == 0


async def test_a_redelivery_whose_send_fails_is_sent_again_and_the_record_acked_only_after_it(
        world, feed, llm, make_stage, t, sleeps, wired, monkeypatch: pytest.MonkeyPatch) -> None:
    core = make_stage()
    _, sent = await fail_once(world, feed, llm, core, t)
    world.clock.now_ms += 60_000  # the record is due: no wait
    sleeps.gate.set()
    first_delivery: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    attempts: list[str] = []

    async def send(topic: str, **details: Any) -> Any:
        attempts.append(topic)
        world.changed()
        if len(attempts) == 1:
            return first_delivery  # the broker has not answered yet
        return await world.send(topic, **details)

    monkeypatch.setattr(wired, "send", send)
    async with retry.retry_stage.test_context() as running:
        record = await running.put(sent.value, key=sent.key, wait=False)
        await world.until(lambda: attempts, what="the first send")
        assert not record.message.acked, "acked before its send was acknowledged"
        first_delivery.set_exception(ConnectionError("broker unreachable"))
        await world.until(lambda: world.on(retry.BY_RESTAURANT), what="the send after the failure")
        await world.until(lambda: record.message.acked, what="the ack after the acknowledged send")
    assert attempts == [retry.BY_RESTAURANT] * 2
    [back] = world.on(retry.BY_RESTAURANT)
    assert (back.value, back.key) == (sent.value, sent.key)


def due_at(value: bytes, not_before_ms: int) -> bytes:
    """The retry record ``value`` with another not-before time."""
    item = read_item(value)
    return write_item(dataclasses.replace(item, not_before_ms=not_before_ms))


async def test_records_sent_before_a_wait_are_acked_before_it_and_poison_is_dead_lettered(
        world, feed, llm, make_stage, t, sleeps, wired) -> None:
    core = make_stage()
    _, sent = await fail_once(world, feed, llm, core, t)
    now_ms = world.clock.now_ms
    async with retry.retry_stage.test_context() as running:
        due = await running.put(due_at(sent.value, now_ms - 1), key=sent.key, wait=False)
        poison = await running.put(b"not a retry record", key=b"rest-1", wait=False)
        waiting = await running.put(due_at(sent.value, now_ms + 3_000), key=sent.key, wait=False)
        await world.until(lambda: sleeps.asked, what="the wait for the third record")
        # Settled before the wait: sent, acknowledged and acked; the third one is owed.
        assert due.message.acked and poison.message.acked and not waiting.message.acked
        assert sleeps.asked == [3.0]
        assert len(world.on(retry.BY_RESTAURANT)) == 1
        [(_, details)] = world.dead_letters
        assert details["stage"] == "retry"
        sleeps.gate.set()
        await world.until(lambda: len(world.on(retry.BY_RESTAURANT)) == 2, what="the third record sent")
        await world.until(lambda: waiting.message.acked, what="the third record's ack")
