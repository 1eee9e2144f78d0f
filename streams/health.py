"""Liveness: what ``/health`` answers and ``reviewpulse_worker_healthy`` says (issue 30, finding 8).

A worker can keep its process and web server while nothing flows; only a liveness check
that looks at the flow gets it restarted from its last commit (DESIGN §12). It is dead when:

- ``crashed``: the Faust app crashed (a timer or a service raised);
- ``died``: an agent raised. Faust restarts the actor on the same stream, so the
  batch it held never comes again in this process and its unacked offsets hold the
  commit for good; ``app.crashed`` stays False. Our own endless tasks (the LLM workers,
  the enrichment joiner) count the same when one ends;
- ``commit_stuck``: the committed offset of a partition an agent reads has not moved for
  ``commit_stuck_s`` while records wait behind it (its high watermark is above the
  commit). Whatever holds it (a lost ack, an answer that never comes, a wedged loop),
  a restart from the last commit is what frees it. A partition with nothing waiting is
  idle, never stuck, and nothing is judged while the worker is not flowing (rebalancing,
  restoring its tables: ``/ready`` covers that).

The commit is sampled (every tick interval, and on each ``/health`` and ``/metrics``), so a
stall is measured from the first sample that saw its offset while records waited: it can
read short by one sampling interval, never long.

Blind spot: "records wait" is judged against the high watermark of the partition's last
fetch response. A partition that stops being fetched (or never is, after an assignment)
keeps its old high watermark and reads as idle; so did the partitions a restarted worker
had skipped before the fix of streams.faust point 5 (session 17). Judging the age of the
last fetch would flag idle partitions on Tansu, which parks fetches.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from faust.types import TP

from streams import metrics
from streams.faust.transport import committed_offset


@dataclass
class _Seen:
    offset: int | None  # the committed offset (next to read); None: never committed
    since_s: float | None = None  # first sample that saw it standing while records waited


class CommitWatch:
    """Per partition, how long its committed offset has stood still while records waited.

    Pure bookkeeping (a clock is passed in), so a unit test drives it without a broker.
    """

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._seen: dict[TP, _Seen] = {}

    def observe(self, tp: TP, *, committed: int | None, highwater: int | None, judged: bool = True) -> float:
        """Note ``tp``'s committed offset and high watermark; returns the seconds its commit has
        stood while records waited (0 when none wait, or when not ``judged``)."""
        now = self.clock()
        seen = self._seen.get(tp)
        if seen is None or seen.offset != committed:
            seen = self._seen[tp] = _Seen(committed)
        waiting = highwater is not None and highwater > (committed or 0)
        if not (waiting and judged):  # idle: a stall counts from a sample that sees records wait
            seen.since_s = None
            return 0.0
        if seen.since_s is None:
            seen.since_s = now
        return now - seen.since_s

    def forget(self, tps: Iterable[TP]) -> None:
        for tp in tps:
            self._seen.pop(tp, None)


class Health:
    """The liveness checks of one app; :meth:`problems` names what is dead (empty: healthy)."""

    def __init__(self, app: Any, *, commit_stuck_s: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.app = app
        self.commit_stuck_s = commit_stuck_s  # 0: the commit is not judged
        self.commits = CommitWatch(clock=clock)
        self.died: dict[str, str] = {}  # what died (agent or task name) -> its error
        self.stalled_s: dict[TP, float] = {}  # as last observed
        app.on_partitions_revoked.connect(self._on_revoked)

    async def _on_revoked(self, sender: Any, revoked: set[TP], **kwargs: Any) -> None:
        """A partition read again after a rebalance starts a new stall; its gauge goes."""
        self.commits.forget(revoked)
        for tp in revoked:
            if self.stalled_s.pop(tp, None) is not None:
                metrics.COMMIT_STALLED.remove(tp.topic, str(tp.partition))

    # --- what died ----------------------------------------------------------------------------
    async def agent_crashed(self, agent: Any, exc: BaseException) -> None:
        """Every agent's ``on_error``: Faust calls it before it restarts the actor."""
        self.died[f"agent {agent.name}"] = repr(exc)
        metrics.WORKER_HEALTHY.set(0)

    def watch(self, task: asyncio.Task[Any]) -> None:
        """``task`` runs until the worker stops: its end other than by cancel is a death."""
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        if task.cancelled():
            return
        error = task.exception()
        self.died[f"task {task.get_name()}"] = repr(error) if error is not None else "returned"
        metrics.WORKER_HEALTHY.set(0)

    # --- the commit -------------------------------------------------------------------------
    def _read_topics(self) -> set[str]:
        """The topics the agents read (changelogs are read without commits)."""
        return {name for agent in self.app.agents.values() for name in agent.channel.topics}

    def observe_commits(self) -> dict[TP, float]:
        """Sample the commit of every assigned partition an agent reads; returns the stalls."""
        app = self.app
        judged = self.commit_stuck_s > 0 and app.readiness.ready
        read = self._read_topics()
        for tp in app.assignor.assigned_actives():
            if tp.topic not in read:
                continue
            try:
                highwater = app.consumer.highwater(tp)
            except Exception:  # not assigned any more, or no fetch yet
                highwater = None
            stalled = self.commits.observe(tp, committed=committed_offset(app, tp), highwater=highwater,
                                           judged=judged)
            self.stalled_s[tp] = stalled
            metrics.COMMIT_STALLED.labels(tp.topic, str(tp.partition)).set(round(stalled, 1))
        return self.stalled_s

    # --- the verdict ------------------------------------------------------------------------
    def problems(self) -> list[dict[str, Any]]:
        """Each reason the worker is dead, as /health reports it; sets reviewpulse_worker_healthy."""
        found: list[dict[str, Any]] = []
        if self.app.crashed:
            found.append({"check": "crashed", "error": repr(self.app.crash_reason)})
        found += [{"check": "died", "what": what, "error": error} for what, error in self.died.items()]
        if self.commit_stuck_s > 0:
            for tp, stalled in sorted(self.observe_commits().items()):
                if stalled >= self.commit_stuck_s:
                    found.append({"check": "commit_stuck", "topic": tp.topic, "partition": tp.partition,
                                  "committed": committed_offset(self.app, tp),
                                  "stalled_s": round(stalled, 1), "limit_s": self.commit_stuck_s})
        metrics.WORKER_HEALTHY.set(0 if found else 1)
        return found
