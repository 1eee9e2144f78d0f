"""Soak (issue 30, finding 9): many restaurants and long texts under a slow LLM, small byte bounds.

A worker on its own Kafka stack gets 2,000 reviews in 20 s, each of its own restaurant (2,000
restaurants), each near the decode caps (4,990 characters of text with an emoji in it, so
Python holds it at 4 bytes a character; a 35-character language tag; 128-character ids and
source), while the LLM answers in 1.5 s with 2 requests at a time (~13 reviews/s). The byte
bounds are set small, so every bounded part reaches its bound. Sampled every 0.25 s from
/metrics and /proc: each part's tracked bytes never pass its bound, and the worker's RSS stays
under a ceiling. Then nothing is lost: every review has its reviews.enriched record (ENRICHED,
or FALLBACK with the heuristic's label when the backlog shed it), and every window's
aggregate has the exact counts of the ground truth.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from streams.dev.stack import Process, Stack
from tests.integration.conftest import NewStack
from tests.integration.ground_truth import ENV, Run, own_stack
from tests.records import review_created
from tests.until import until

pytestmark = [pytest.mark.integration]

KIB, MIB = 1024, 1024 * 1024
BOUNDS = {
    "enrich_backlog": 2 * MIB,
    "llm_cache": 256 * KIB,
    "web_history": 256 * KIB,
    "web_recent": 128 * KIB,
    "schema_cache": 1 * MIB,
}
SETTING = {"enrich_backlog": "ENRICH_BACKLOG", "llm_cache": "CACHE", "web_history": "WEB_HISTORY",
           "web_recent": "WEB_RECENT", "schema_cache": "SCHEMA_CACHE"}
# The worker's RSS ceiling: an idle worker is ~90 MiB on this machine and this run peaked at
# ~180 MiB (the bounds above add under 4 MiB; the rest is RocksDB memtables, fetch buffers,
# the batches in flight and the allocator's slack). Before the bounds a backlog of 20,000
# such reviews alone could hold ~1 GiB.
RSS_CEILING_BYTES = 320 * MIB
RESTAURANTS = 2_000
TEXT = ("Pedido frio, atrasado e com cabelo na comida; entregador grosseiro. " * 80)[:4_989] + "😡"
GAUGE = re.compile(r'^reviewpulse_memory_bytes\{part="([a-z_]+)"\} ([0-9.e+]+)$', re.M)
EVICTED = re.compile(r'^reviewpulse_memory_evicted_total\{part="([a-z_]+)"\} ([0-9.e+]+)$', re.M)


class LongRun(Run):
    """The chaos tests' ground truth, with many restaurants and reviews near the decode caps."""

    def __init__(self, stack: Stack, tag: str) -> None:
        super().__init__(stack, tag)
        self.restaurants = [f"rest-{self.tag}-{i:05d}-" + "r" * 100 for i in range(RESTAURANTS)]

    def review(self, n: int, restaurant: str) -> dict[str, Any]:
        """Every id at its cap, the language and source at theirs, the text near its own."""
        return review_created(self.tag, n, restaurant_id=restaurant, text=f"{n} {TEXT}"[:4_990],
                              user_id="u".ljust(128, "u"), language="pt-BR-x-" + "a" * 27,
                              source="s".ljust(128, "s"), review_id=f"rv-{self.tag}-{n}-".ljust(128, "v"),
                              event_id=f"evt-{self.tag}-{n}-".ljust(128, "e"))


class Sampler:
    """Polls the worker's tracked bytes (/metrics) and RSS (/proc) until stopped; keeps the peaks."""

    def __init__(self, worker: Process) -> None:
        self.worker = worker
        self.peak_bytes: dict[str, float] = dict.fromkeys(BOUNDS, 0.0)
        self.peak_rss = 0
        self.samples = 0
        self.evicted: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        self.sample()

    def rss(self) -> int:
        status = Path(f"/proc/{self.worker.proc.pid}/status").read_text()
        return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) * 1024  # type: ignore[union-attr]

    def sample(self) -> None:
        text = httpx.get(f"{self.worker.url}/metrics", timeout=5).text
        for part, value in GAUGE.findall(text):
            if part in self.peak_bytes:
                self.peak_bytes[part] = max(self.peak_bytes[part], float(value))
        self.evicted = {part: float(value) for part, value in EVICTED.findall(text)}
        self.peak_rss = max(self.peak_rss, self.rss())
        self.samples += 1

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            self.sample()


@pytest.fixture(scope="module")
def soak_stack(new_stack: NewStack) -> Any:
    yield from own_stack(new_stack, "memory-soak", llm_latency_ms=1500)


def test_long_reviews_of_many_restaurants_under_a_slow_llm_stay_under_the_byte_bounds(soak_stack,
                                                                                      tmp_path):
    stack = soak_stack
    env = {**ENV, "REVIEWPULSE_LLM_CONCURRENCY": "2", "REVIEWPULSE_LLM_TIMEOUT_S": "10",
           **{f"REVIEWPULSE_{SETTING[part]}_MAX_BYTES": str(b) for part, b in BOUNDS.items()}}
    worker = stack.add_worker(data_dir=tmp_path / "worker", extra_env=env)
    worker.wait_ready()
    idle_rss = Sampler(worker).rss()
    run = LongRun(stack, "soak")
    with Sampler(worker) as sampler, run.traffic(seconds=20, reviews_per_s=100) as producing:
        run.finish(producing, timeout_s=60, since_ms=run.started_ms, context="memory soak")
        # The web history takes closed windows in from ``latest`` every 1.25 s: one more round.
        until(lambda: sampler.evicted.get("web_history", 0), timeout_s=10, what="the history at its bound")
    statuses: dict[str, int] = {}
    for copies in run.enriched.values():
        statuses[copies[-1]["status"]] = statuses.get(copies[-1]["status"], 0) + 1
    print(f"\n{len(run.reviews)} reviews of {RESTAURANTS} restaurants, {len(run.truth_reviews)} windows; "
          f"final status {statuses}; {sampler.samples} samples; peak tracked bytes "
          f"{ {p: int(b) for p, b in sampler.peak_bytes.items()} } against {BOUNDS}; evicted "
          f"{ {p: int(n) for p, n in sampler.evicted.items()} }; RSS idle {idle_rss / MIB:.0f} MiB, "
          f"peak {sampler.peak_rss / MIB:.0f} MiB (ceiling {RSS_CEILING_BYTES / MIB:.0f} MiB)")
    for part, bound in BOUNDS.items():
        assert sampler.peak_bytes[part] <= bound, f"{part}: {sampler.peak_bytes[part]:.0f} bytes > {bound}"
    # The bounds were reached, so they are what held memory: the backlog shed, the history evicted.
    assert sampler.evicted["enrich_backlog"] > 0 and sampler.evicted["web_history"] > 0
    assert sampler.peak_bytes["enrich_backlog"] > BOUNDS["enrich_backlog"] / 2
    assert sampler.peak_rss <= RSS_CEILING_BYTES
    # Nothing lost: every review has its final record (shed ones FALLBACK), every window exact.
    assert statuses.get("FALLBACK", 0) >= sampler.evicted["enrich_backlog"]
    assert statuses.get("ENRICHED", 0) > 0
    run.assert_exact(since_ms=run.started_ms)
