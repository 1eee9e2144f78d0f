"""The watermark across workers, closing work per tick, and bounded state (issue 12)."""

from __future__ import annotations

from typing import Any

from streams.protocol import closure_key, day_key
from tables.panes import ACTIVE, DueIndex, PartitionState
from tables.windows import utc_day


async def test_a_dead_workers_input_partition_holds_windows_open_until_its_new_owner_ticks(
        world, feed, llm, make_stage, t):
    core = make_stage()
    llm.always()
    review = feed.review("e1", occurred_ms=t.w0 + 1_000)
    await core.process([review])
    # Two workers own one input partition each; worker-2 then dies at w0 + 1 s.
    await core.process([feed.tick(t.closing(t.w0), sender="worker-1", input_partitions=2)])
    assert core.watermarks.of(0) == 0  # partition 1 has no mark yet: no watermark at all
    await core.process([feed.tick(t.w0 + 1_000, sender="worker-2", input_partition="reviews.created:1",
                                  input_partitions=2)])
    assert core.watermarks.of(0) == t.w0 + 1_000
    # Only worker-1 keeps ticking, for as long as it likes: no expiry lets it close alone.
    for later in range(1, 30):
        await core.process([feed.tick(t.closing(t.w0) + later * 1_000, sender="worker-1",
                                      input_partitions=2)])
    assert world.aggregates("TUMBLING") == []
    # The partition's new owner (worker-1 after the rebalance) has read it and ticks it.
    await core.process([feed.tick(t.closing(t.w0) + 31_000, sender="worker-1",
                                  input_partition="reviews.created:1", input_partitions=2)])
    [aggregate] = world.aggregates("TUMBLING")
    assert aggregate["reviews"] == 1


async def test_a_forged_tick_far_ahead_is_capped_at_the_clock_plus_the_skew(world, feed, llm, make_stage):
    core = make_stage(event_time_max_skew_s=60)
    await core.process([feed.tick(world.clock.now_ms + 10 * 86_400_000)])
    assert core.watermarks.of(0) == world.clock.now_ms + 60_000


async def test_a_tick_closes_only_the_restaurants_that_are_due(world, feed, llm, make_stage, t, monkeypatch):
    core = make_stage()
    llm.always()
    events = [feed.review(f"e{i}", restaurant=f"rest-{i}", occurred_ms=t.w0 + 1_000) for i in range(50)]
    events.append(feed.review("late-one", restaurant="rest-late", occurred_ms=t.w2 + 1_000))
    await core.process(events)
    await world.until_acked(*events)
    closed: list[str] = []
    original = PartitionState.close

    def counting(self: PartitionState, restaurant_id: str, **kwargs: Any) -> None:
        closed.append(restaurant_id)
        original(self, restaurant_id, **kwargs)

    monkeypatch.setattr(PartitionState, "close", counting)
    await core.process([feed.tick(t.closing(t.w0) - 1)])
    assert closed == []  # nothing is due yet: no restaurant is even looked at
    await core.process([feed.tick(t.closing(t.w0))])
    assert sorted(closed) == sorted(f"rest-{i}" for i in range(50))  # not rest-late
    assert len(world.aggregates("TUMBLING")) == 50


async def test_a_quiet_restaurants_state_is_retired_after_the_retention(world, feed, llm, make_stage, t):
    settings = {"event_time_max_age_s": 60, "dedupe_ttl_s": 60, "state_retention_s": 100}
    core = make_stage(**settings)
    llm.always(cost_micro_usd=25)
    review = feed.review("e1", occurred_ms=t.w0 + 1_000)
    await core.process([review])
    await world.until_acked(review)
    tables = world.tables[0]
    day = utc_day(world.clock.now_ms)[0]
    assert tables.daily_cost[day_key("rest-1", day)]["spent"] == 25
    last_end = t.w0 + 20_000  # the last hopping window holding the pane ends here
    await core.process([feed.tick(last_end + 2_000)])  # every window closed, panes collected
    assert tables.closures[closure_key("rest-1")]["panes"] == []
    assert "rest-1" in tables.latest

    await core.process([feed.tick(last_end + 100_000 - 1)])
    assert closure_key("rest-1") in tables.closures  # not yet: an event could still reopen it
    await core.process([feed.tick(last_end + 100_000)])
    assert closure_key("rest-1") not in tables.closures
    assert "rest-1" not in tables.latest
    assert day_key("rest-1", day) not in tables.daily_cost
    assert not any(v for k, v in tables.closures.items() if k.startswith("~p") and "rest-1" in v)


def test_next_due_is_the_first_open_window_end_plus_grace_then_the_retirement() -> None:
    from tables.windows import WindowSpec

    spec = WindowSpec(window_size_s=5, hopping_size_s=20, hopping_step_s=5, window_grace_s=2)
    state = PartitionState(panes={}, closures={}, spec=spec, partition=0, retention_ms=100_000)
    state.touch("r", 10_000).add_order(delay_ms=0)
    assert state.next_due_ms("r") == 15_000 + 2_000
    assert state.index() == {"r": ACTIVE}


def test_due_index_pops_each_due_restaurant_once_and_forgets_replaced_times() -> None:
    due = DueIndex()
    due.set("a", 10)
    due.set("b", 20)
    due.set("a", 30)  # moved later: the old heap entry is stale
    assert due.pop_due(25) == ["b"]
    assert due.pop_due(25) == []
    assert due.pop_due(30) == ["a"]
    assert len(due) == 0


async def test_processing_lag_counts_from_kafka_and_event_age_from_occurred_at(world, feed, llm, make_stage):
    """A review its producer sent 10 minutes late: our lag is small, its age is not."""
    from dataclasses import replace

    from streams.protocol import read_item, write_item

    core = make_stage()
    llm.always()
    now = world.clock.now_ms
    sent = feed.review("old", occurred_ms=now - 600_000)
    item = read_item(sent.message.value)
    item.origin = replace(item.origin, timestamp_ms=now - 200)  # reached Kafka 200 ms ago
    review = feed.event(write_item(item), key=b"rest-1")
    await core.process([review])
    await world.until_acked(review)

    pane = world.pane(now - 600_000 - (now - 600_000) % 5_000)
    assert pane.processing_lag.max_ms == 200
    assert pane.event_age.max_ms == 600_000
    [enriched] = world.enriched("old")
    assert enriched["processing_lag_ms"] < 1_000 and enriched["event_age_ms"] >= 600_000
