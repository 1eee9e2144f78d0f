"""kill -9 of the worker mid-stream loses no review, and duplicates stay explained.

Its own broker, registry, simulator and worker (so the kill does not disturb the session
worker), with a data directory kept across the restart: RocksDB table state survives, and
the restarted worker resumes from the committed offsets. The restaurant stage writes its
tables only after its outputs are acknowledged, and panes carry the highest input offset
they applied, so a batch replayed after the kill is skipped where it was applied. What can
still repeat is a review whose ``reviews.enriched`` record was acknowledged but whose join
into its pane had not reached the changelog before the kill: it is enriched again. The
worker holds at most ``REVIEWPULSE_ENRICH_MAX_UNJOINED`` reviews in that state, so that is
the bound. (Before the bound existed this test assumed one stage batch, 250, and saw 0-260.)

The kill waits for the first dedupe marks in the changelog, so the restarted worker always
has state to restore: the fresh case once lost every input record fetched while it
restored (see streams/faust/, point 3) and passed only because it rarely restored.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import httpx
import pytest
from test_pipeline_support import DLQ, ENRICHED, Outputs

from streams.dev.reader import TopicReader
from streams.dev.sample import SampleStats, produce_sample
from streams.dev.stack import Process, Stack
from tests.integration.conftest import NewStack, Producer
from tests.integration.ground_truth import locate_reviews, own_stack
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

REVIEWS = 3_000
RATE_PER_S = 200.0  # 15 s of traffic; the kill lands about a third of the way in
KILL_AFTER_S = 5.0
DEDUPE_CHANGELOG = "reviewpulse-dedupe-changelog"
BATCH = 250  # the restaurant stage's batch bound
MAX_UNJOINED = 100  # answers sent and not durably joined: what a kill can repeat
WORKER_ENV = {"REVIEWPULSE_LOG_LEVEL": "info", "REVIEWPULSE_LLM_TIMEOUT_S": "5",
              "REVIEWPULSE_TAKE_MAX_EVENTS": str(BATCH),
              "REVIEWPULSE_ENRICH_MAX_UNJOINED": str(MAX_UNJOINED)}


def enrichment_gauges(worker: Process) -> str:
    """The worker's enrichment, budget, memory and commit gauges, as /metrics says now."""
    try:
        text = httpx.get(f"{worker.url}/metrics", timeout=5).text
    except httpx.HTTPError as exc:
        return f"/metrics unreachable: {exc!r}"
    wanted = ("reviewpulse_enrichment_", "reviewpulse_commit_stalled", "reviewpulse_memory_bytes",
              "reviewpulse_llm_token_budget", "reviewpulse_budget_share", "reviewpulse_worker_healthy",
              "reviewpulse_llm_breaker_state")
    return "; ".join(line for line in text.splitlines() if line.startswith(wanted))


@pytest.fixture
def crash_stack(new_stack: NewStack):
    """A stack per case: the cases must not share committed offsets or changelogs."""
    yield from own_stack(new_stack, f"crash-{uuid.uuid4().hex[:6]}")


@pytest.mark.parametrize("data", [
    "kept",  # the restarted worker keeps its RocksDB and reads the changelogs from there
    pytest.param("fresh", marks=pytest.mark.embedded),  # an empty data dir: the tables are rebuilt
])                                                      # from their changelogs
def test_kill_9_mid_stream_loses_no_review(data: str, crash_stack: Stack, tmp_path: Path) -> None:
    started = time.monotonic()
    data_dir = tmp_path / "worker-data"
    worker = crash_stack.add_worker(data_dir=data_dir, extra_env=WORKER_ENV, name="crash-worker")
    assert crash_stack.broker and crash_stack.registry
    stats: list[SampleStats] = []
    producer = threading.Thread(target=lambda: stats.append(produce_sample(
        bootstrap_servers=crash_stack.broker.bootstrap, registry_url=crash_stack.registry.url,
        count=REVIEWS, rate_per_s=RATE_PER_S, seed=11, poison_every=0)))
    producer.start()
    time.sleep(KILL_AFTER_S)  # let traffic flow before the kill (the point of the test)
    # ...and until the worker has written state, so the restarted worker has changelogs to
    # restore: a kill before the first table write would test a cold start, not a recovery.
    with TopicReader(crash_stack.broker.bootstrap) as changelog:
        until(lambda: len(changelog.read_new(DEDUPE_CHANGELOG)), timeout_s=30,
              what="the first dedupe marks in the changelog")
    worker.stop(kill=True)

    killed_at_s = time.monotonic() - started
    restarted = crash_stack.add_worker(data_dir=data_dir if data == "kept" else tmp_path / "fresh",
                                       extra_env=WORKER_ENV, name=f"crash-worker-{data}-2")
    producer.join(60)

    assert not producer.is_alive() and stats
    produced = stats[0].event_ids

    outputs = Outputs(crash_stack, topics=(ENRICHED, DLQ))
    try:
        def missing_count() -> int:
            assert restarted.proc.poll() is None, f"restarted worker exited; see {restarted.log_path}"
            return len(produced - {r.value["event_id"] for r in outputs.poll().records[ENRICHED]})

        try:
            until(missing_count, timeout_s=45, what="every produced review enriched (missing count)",
                  done=lambda missing: missing == 0)
        except AssertionError as exc:  # say where enrichment stands (seen once in CI: it stalled)
            raise AssertionError(
                f"{exc}; the restarted worker's enrichment gauges: {enrichment_gauges(restarted)}; "
                f"log {restarted.log_path}\n" + locate_reviews(
                    crash_stack.broker.bootstrap, crash_stack.registry.url,
                    produced - {r.value["event_id"] for r in outputs.records[ENRICHED]},
                    partitions=crash_stack.partitions)) from None
        per_event = Counter(r.value["event_id"] for r in outputs.records[ENRICHED])
        letters = outputs.records[DLQ]
    finally:
        outputs.close()

    missing = produced - set(per_event)
    extra = {e: n - 1 for e, n in per_event.items() if n > 1}
    statuses = Counter(r.value["status"] for r in outputs.records[ENRICHED])
    print(f"\ncrash test: produced {len(produced)} reviews (+{stats[0].duplicates} upstream duplicates), "
          f"killed at {killed_at_s:.1f} s; enriched records {sum(per_event.values())} for "
          f"{len(per_event)} events {dict(statuses)}; DLQ {len(letters)}; missing {len(missing)}; "
          f"events enriched more than once {len(extra)} ({sum(extra.values())} extra records); "
          f"total {time.monotonic() - started:.1f} s")
    assert not missing
    assert set(per_event) <= produced
    # Repeats can only be answers sent and not durably joined at the kill (module docstring).
    assert sum(extra.values()) <= MAX_UNJOINED, extra


def test_copies_after_a_restart_from_the_changelogs_alone_are_duplicates(
        crash_stack: Stack, tmp_path: Path, review_factory) -> None:
    """A batch's dedupe marks are one changelog record (streams/faust/, point 6):
    a worker that rebuilt its tables from the changelogs alone still knows every event id
    it folded, so a copy at a new offset is a duplicate, not a second review."""
    worker = crash_stack.add_worker(data_dir=tmp_path / "first", extra_env=WORKER_ENV, name="marks-worker")
    producer = Producer(crash_stack)
    outputs = Outputs(crash_stack, topics=(ENRICHED,))
    try:
        originals = [review_factory() for _ in range(40)]
        for review in originals:
            producer.send_review(review)
        outputs.wait_enriched([r["event_id"] for r in originals])  # folded and marked before that
        worker.stop(kill=True)  # nothing committed since: decode forwards them all again too

        crash_stack.add_worker(data_dir=tmp_path / "fresh", extra_env=WORKER_ENV, name="marks-worker-fresh")
        later = []
        for review in originals:
            producer.send_review(review)  # the same key: the same input partition, a new offset
            later.append(review_factory(restaurant_id=review["entity"]["restaurant_id"]))
            producer.send_review(later[-1], key=review["event_id"].encode())  # read after the copy
        outputs.wait_enriched([r["event_id"] for r in later], timeout_s=60)
        copies = Counter(r.value["event_id"] for r in outputs.enriched([r["event_id"] for r in originals]))
    finally:
        outputs.close()
        producer.close()

    assert copies == Counter({r["event_id"]: 1 for r in originals})
