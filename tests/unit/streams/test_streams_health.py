"""Liveness (streams.health): what makes /health fail, and what never does.

The commit watch is driven with a fake clock; :class:`Health` with a small stand-in for the
app (the parts of Faust it reads). That an agent's error reaches it through Faust is checked
against the real app here, and end to end on Kafka in tests/integration/test_health.py.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace

import pytest
from faust.types import TP

from streams import metrics
from streams.health import CommitWatch, Health
from tests.fake_signal import Signal

BY_RESTAURANT = TP("reviewpulse-by-restaurant", 0)
REVIEWS = TP("reviews.created", 1)
CHANGELOG = TP("reviewpulse-panes-changelog", 0)


class Clock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def stalled_gauge(tp: TP) -> float | None:
    return metrics.REGISTRY.get_sample_value("reviewpulse_commit_stalled_seconds",
                                             {"topic": tp.topic, "partition": str(tp.partition)})


def healthy_gauge() -> float | None:
    return metrics.REGISTRY.get_sample_value("reviewpulse_worker_healthy")


# --- the commit watch -------------------------------------------------------------------------
def test_an_idle_partition_is_never_stalled_however_long_its_commit_stands():
    clock = Clock()
    watch = CommitWatch(clock=clock)
    for _ in range(10):
        assert watch.observe(REVIEWS, committed=42, highwater=42) == 0.0
        clock.now_s += 3600


def test_a_commit_standing_while_records_wait_stalls_until_it_moves():
    clock = Clock()
    watch = CommitWatch(clock=clock)
    assert watch.observe(BY_RESTAURANT, committed=10, highwater=15) == 0.0
    clock.now_s += 30
    assert watch.observe(BY_RESTAURANT, committed=10, highwater=90) == 30.0
    clock.now_s += 1
    assert watch.observe(BY_RESTAURANT, committed=11, highwater=90) == 0.0  # it moved
    clock.now_s += 5
    assert watch.observe(BY_RESTAURANT, committed=11, highwater=95) == 5.0


def test_records_arriving_after_a_quiet_hour_stall_from_their_arrival_not_from_the_hour():
    clock = Clock()
    watch = CommitWatch(clock=clock)
    watch.observe(REVIEWS, committed=7, highwater=7)
    clock.now_s += 3600
    assert watch.observe(REVIEWS, committed=7, highwater=8) == 0.0
    clock.now_s += 2
    assert watch.observe(REVIEWS, committed=7, highwater=8) == 2.0


def test_a_partition_never_committed_with_records_waits_like_any_other():
    clock = Clock()
    watch = CommitWatch(clock=clock)
    watch.observe(REVIEWS, committed=None, highwater=3)
    clock.now_s += 12
    assert watch.observe(REVIEWS, committed=None, highwater=3) == 12.0
    assert watch.observe(TP("reviews.created", 2), committed=None, highwater=0) == 0.0  # empty


def test_nothing_is_judged_while_the_worker_is_not_flowing_and_the_stall_restarts_after():
    clock = Clock()
    watch = CommitWatch(clock=clock)
    watch.observe(BY_RESTAURANT, committed=10, highwater=20)
    clock.now_s += 600  # restoring tables, say
    assert watch.observe(BY_RESTAURANT, committed=10, highwater=20, judged=False) == 0.0
    clock.now_s += 1
    assert watch.observe(BY_RESTAURANT, committed=10, highwater=20) == 0.0  # flowing again
    clock.now_s += 4
    assert watch.observe(BY_RESTAURANT, committed=10, highwater=20) == 4.0


# --- the checks -------------------------------------------------------------------------------
@dataclass
class FakeApp:
    """What Health reads of a Faust app: agents' topics, assignment, offsets, readiness, crash."""

    highwaters: dict[TP, int] = field(default_factory=dict)
    committed: dict[TP, int] = field(default_factory=dict)
    ready: bool = True
    crashed: bool = False
    crash_reason: BaseException | None = None

    def __post_init__(self) -> None:
        self.on_partitions_revoked = Signal()
        self.agents = {name: SimpleNamespace(name=name, channel=SimpleNamespace(topics=(topic,)))
                       for name, topic in (("restaurant-stage", BY_RESTAURANT.topic),
                                           ("decode-reviews", REVIEWS.topic))}
        self.assignor = SimpleNamespace(assigned_actives=lambda: set(self.highwaters))
        self.consumer = SimpleNamespace(highwater=self.highwaters.__getitem__,
                                        _committed_offset=self.committed)
        self.readiness = SimpleNamespace(ready=self.ready)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_health(app: FakeApp, clock: Clock, *, commit_stuck_s: float = 60.0) -> Health:
    return Health(app, commit_stuck_s=commit_stuck_s, clock=clock)


def test_a_stuck_commit_fails_health_with_its_partition_and_the_gauges_say_so(clock):
    app = FakeApp(highwaters={BY_RESTAURANT: 500, REVIEWS: 80, CHANGELOG: 900},
                  committed={BY_RESTAURANT: 250, REVIEWS: 80})
    health = make_health(app, clock)
    assert health.problems() == []
    assert healthy_gauge() == 1
    clock.now_s += 59
    assert health.problems() == []
    clock.now_s += 1
    app.highwaters[BY_RESTAURANT] = 530  # ticks keep arriving; the owed review at 250 holds the commit
    assert health.problems() == [{"check": "commit_stuck", "topic": BY_RESTAURANT.topic, "partition": 0,
                                  "committed": 250, "stalled_s": 60.0, "limit_s": 60.0}]
    assert healthy_gauge() == 0
    assert stalled_gauge(BY_RESTAURANT) == 60.0
    assert stalled_gauge(REVIEWS) == 0.0  # idle
    assert stalled_gauge(CHANGELOG) is None  # read without commits: not watched
    app.committed[BY_RESTAURANT] = 251
    assert health.problems() == []
    assert healthy_gauge() == 1


def test_zero_turns_the_commit_check_off(clock):
    app = FakeApp(highwaters={BY_RESTAURANT: 500}, committed={BY_RESTAURANT: 250})
    health = make_health(app, clock, commit_stuck_s=0)
    health.problems()
    clock.now_s += 86_400
    assert health.problems() == []


async def test_a_revoked_partition_forgets_its_stall_and_drops_its_gauge(clock):
    tp = TP("reviews.created", 3)
    app = FakeApp(highwaters={tp: 9}, committed={tp: 1})
    health = make_health(app, clock)
    health.problems()
    clock.now_s += 30
    health.problems()
    assert stalled_gauge(tp) == 30.0
    await app.on_partitions_revoked.send(revoked={tp})
    assert stalled_gauge(tp) is None
    clock.now_s += 45  # reassigned later with the same commit: a new stall, from now
    assert health.problems() == []
    assert stalled_gauge(tp) == 0.0


def test_a_crashed_app_fails_health(clock):
    health = make_health(FakeApp(crashed=True, crash_reason=RuntimeError("timer raised")), clock)
    assert health.problems() == [{"check": "crashed", "error": "RuntimeError('timer raised')"}]
    assert healthy_gauge() == 0


async def test_an_agent_that_raised_fails_health_though_faust_restarts_it(clock):
    app = FakeApp()
    health = make_health(app, clock)
    await health.agent_crashed(app.agents["decode-reviews"], KeyError("boom"))
    assert healthy_gauge() == 0  # at once, not at the next check
    assert health.problems() == [
        {"check": "died", "what": "agent decode-reviews", "error": "KeyError('boom')"}]


async def test_an_endless_task_that_ends_fails_health_and_one_cancelled_by_a_stop_does_not(clock):
    health = make_health(FakeApp(), clock)

    async def fails() -> None:
        raise ValueError("bad outcome")

    async def forever() -> None:
        await asyncio.Event().wait()

    failing = asyncio.create_task(fails(), name="enricher-3")
    stopped = asyncio.create_task(forever(), name="enrichment-joiner")
    health.watch(failing)
    health.watch(stopped)
    stopped.cancel()
    await asyncio.gather(failing, stopped, return_exceptions=True)
    await asyncio.sleep(0)  # done callbacks run on the next loop turn
    assert health.problems() == [
        {"check": "died", "what": "task enricher-3", "error": "ValueError('bad outcome')"}]


# --- wired into the app -----------------------------------------------------------------------
async def test_every_agent_of_the_worker_reports_its_errors_to_health(monkeypatch):
    """Faust hands an agent's error to ``app._on_agent_error`` (private: this is its canary)."""
    import agents.decode
    import agents.restaurant
    import agents.retry  # noqa: F401  (the agents register on import)
    from streams.app import app

    assert {"decode-reviews", "decode-orders", "restaurant-stage", "retry"} <= set(app.agents)
    for agent in app.agents.values():
        assert agent._on_error == app._on_agent_error, agent.name
    monkeypatch.setattr(app.health, "died", {})
    await app._on_agent_error(app.agents["retry"], RuntimeError("lost ack"))
    assert app.health.died == {"agent retry": "RuntimeError('lost ack')"}
