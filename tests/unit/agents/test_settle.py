"""The decode stage's loop: a batch's outputs are acknowledged behind the next batch
(agents/settle.py).

What a user relies on: events are acked only after their outputs are acknowledged, and in
offset order (Faust commits up to the first unacked offset); a failed send is settled by
sending again, never dropped; at most one batch waits behind the one being sent.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.settle import Outputs, settle_behind


class Loop:
    """Batches fed by hand; every send's delivery futures kept to resolve in any order."""

    def __init__(self) -> None:
        self.feed: asyncio.Queue[list[int] | None] = asyncio.Queue()
        self.sent: list[list[int]] = []
        self.deliveries: list[asyncio.Future[None]] = []
        self.settled: list[tuple[list[int], bool]] = []  # (batch, its send had failed)
        self.fail_sends: set[int] = set()  # first event of the batches whose send raises

    async def batches(self) -> AsyncIterator[list[int]]:
        while (batch := await self.feed.get()) is not None:
            yield batch

    async def send(self, events: list[int]) -> list[Any]:
        self.sent.append(events)
        if events[0] in self.fail_sends:
            raise RuntimeError("producer refused the batch")
        futures = [asyncio.get_running_loop().create_future() for _ in events]
        self.deliveries += futures
        return futures

    async def settle(self, events: list[int], outputs: Outputs) -> None:
        if outputs is not None:
            await asyncio.gather(*outputs)
        self.settled.append((events, outputs is None))

    def run(self) -> asyncio.Task[None]:
        return asyncio.ensure_future(settle_behind(self.batches(), stage="test", send=self.send,
                                                  settle=self.settle))


async def settle_down() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_the_next_batch_is_sent_before_the_last_one_is_acknowledged() -> None:
    loop = Loop()
    task = loop.run()
    await loop.feed.put([1, 2])
    await loop.feed.put([3])
    await settle_down()
    assert loop.sent == [[1, 2], [3]]  # the round trip of [1, 2] did not hold [3] back
    assert loop.settled == []  # nothing acked before its outputs are acknowledged

    await loop.feed.put([4])
    await settle_down()
    assert loop.sent == [[1, 2], [3]]  # [4] waits: only one batch settles beside the one sent

    for future in loop.deliveries[:2]:
        future.set_result(None)
    await settle_down()
    assert loop.settled == [([1, 2], False)]
    assert loop.sent == [[1, 2], [3], [4]]
    await loop.feed.put(None)
    for future in loop.deliveries[2:]:
        future.set_result(None)
    await task
    await settle_down()
    assert loop.settled == [([1, 2], False), ([3], False), ([4], False)]


async def test_a_failed_send_is_settled_by_the_settler_not_dropped() -> None:
    loop = Loop()
    loop.fail_sends = {1}
    task = loop.run()
    await loop.feed.put([1, 2])
    await loop.feed.put([3])
    await loop.feed.put(None)
    await settle_down()
    assert loop.settled == [([1, 2], True)]  # handed over with no outputs: send again there
    loop.deliveries[0].set_result(None)
    await task
    await settle_down()
    assert loop.settled == [([1, 2], True), ([3], False)]


@settings(max_examples=60, deadline=None)
@given(sizes=st.lists(st.integers(1, 5), min_size=1, max_size=8), order=st.randoms(use_true_random=False))
def test_batches_settle_in_order_whatever_order_their_outputs_are_acknowledged(sizes, order) -> None:
    async def scenario() -> list[list[int]]:
        loop = Loop()
        task = loop.run()
        first = 0
        for size in sizes:
            await loop.feed.put(list(range(first, first + size)))
            first += size
        await loop.feed.put(None)
        while not task.done() or any(not f.done() for f in loop.deliveries):
            await settle_down()
            waiting = [f for f in loop.deliveries if not f.done()]
            if waiting:
                order.choice(waiting).set_result(None)
        await task
        await settle_down()
        return [batch for batch, _ in loop.settled]

    settled = asyncio.run(scenario())
    events = [e for batch in settled for e in batch]
    assert events == list(range(sum(sizes)))  # every event once, in offset order
