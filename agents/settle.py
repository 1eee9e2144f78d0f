"""A batch's outputs acknowledged behind the next batch, in order (the decode stage's loop).

No Faust here: the loop takes the batches, a sender and a settler, so a unit test drives it
with fakes (tests/unit/agents/test_settle.py).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from streams.logs import event as log_event

Outputs = list[Awaitable[Any]] | None  # a batch's delivery futures; None: its send failed


async def settle_behind(batches: AsyncIterator[list[Any]], *, stage: str,
                        send: Callable[[list[Any]], Awaitable[list[Awaitable[Any]]]],
                        settle: Callable[[list[Any], Outputs], Awaitable[None]]) -> None:
    """Send each batch, and settle it (outputs acknowledged, events acked) behind the next.

    A batch's produce round trip then overlaps the next batch's wait instead of adding to
    it: Faust's ``take`` waits its full ``within`` again after each batch is handled, and
    buffers nothing while the loop body runs. At most one batch settles beside the one
    being sent, and batches settle in order, so acks (and commits) stay in offset order,
    as the restaurant stage's ``_publish`` does with its batches' state.
    """
    behind: asyncio.Future[None] | None = None
    async for events in batches:
        outputs: Outputs
        try:
            outputs = await send(events)
        except Exception as exc:  # e.g. the producer refused the records: settle sends again
            log_event("delivery_failed", level=40, stage=stage, events=len(events), error=repr(exc))
            outputs = None
        if behind is not None:
            await behind
        behind = asyncio.ensure_future(settle(events, outputs))
        behind.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Future[None]) -> None:
    """A settle that failed fails the loop at its next batch; this says so at once."""
    if not task.cancelled() and task.exception() is not None:
        log_event("settle_failed", level=40, error=repr(task.exception()))
