"""Chaos (issue 12): exactly one correct final aggregate per window, whatever happens to workers.

Each test runs its own stack (it kills workers) and a ground truth produced by another
service: confluent-kafka's Producer and official AvroSerializer, reviews and orders at
wall-clock event time for 20 restaurants, counted by restaurant and 5 s tumbling window.

- Repeated kill -9 plus LLM faults: three kills within about 20 s while the simulator
  answers 10% HTTP 500, 5% HTTP 429 and 10% malformed (so reviews go through
  ``reviews.retry``): every window has one aggregate with the exact review and order
  counts, every review has a final ``reviews.enriched`` record; its repeats are printed.
- Two workers, one killed under load: the survivor takes the dead worker's partitions
  after the session timeout; every window is still exact and nothing is lost. Around the
  takeover Faust's fetch loop can drop records the survivor must handle: the consumer
  fetches them again (streams/faust/, point 5); the survivor's log says
  "missed offsets" when it did.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

import pytest

from streams.dev.stack import EMBEDDED_SESSION_TIMEOUT_S, Stack
from tests.integration.conftest import NewStack
from tests.integration.ground_truth import (
    ENV,
    LLM_FAULTS,
    Run,
    configure_llm,
    kill_three_times,
    own_stack,
    owned_partitions,
    take_over,
)
from tests.until import until

pytestmark = [pytest.mark.integration, pytest.mark.chaos]

@pytest.fixture(scope="module")
def kills_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "chaos-repeated-kills")


@pytest.fixture(scope="module")
def pair_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "chaos-two-workers")


def test_repeated_kill_9_with_llm_faults_keeps_every_window_exact_and_every_review_enriched(
        kills_stack, tmp_path):
    stack = kills_stack
    configure_llm(stack, **LLM_FAULTS)
    run = Run(stack, "kills")
    try:
        kills, _ = kill_three_times(stack, run, data_dir=tmp_path / "worker", env=ENV, name="kills",
                                    seconds=24, reviews_per_s=200)
    finally:
        configure_llm(stack, error_500_rate=0.0, rate_429_rate=0.0, malformed_rate=0.0)

    start = run.started_ms
    at = ", ".join(f"{(k * 1000 - start) / 1000:.1f}" for k in kills)
    statuses = Counter(v[-1]["status"] for v in run.enriched.values())
    retried = sum(1 for v in run.enriched.values() if max(e["attempts"] for e in v) > 1)
    print(f"\n{len(run.reviews)} reviews, {sum(run.truth_orders.values())} orders, "
          f"{len(run.truth_reviews)} windows; kill -9 at {at} s of the run "
          f"({kills[-1] - kills[0]:.1f} s from first to last); reviews.enriched records "
          f"{sum(len(v) for v in run.enriched.values())}, repeated {run.enriched_repeats()}; "
          f"final status {dict(statuses)}; {retried} reviews enriched after more than one attempt")

    repeated = {k: len(v) for k, v in run.tumbling().items() if k in run.truth_reviews and len(v) > 1}
    assert not repeated, f"windows with more than one final aggregate: {repeated}"
    wrong = run.wrong_windows(since_ms=int(kills[0] * 1000))
    assert not wrong, f"{len(wrong)} of {len(run.truth_reviews)} windows wrong:\n" + "\n".join(wrong)
    assert set(run.enriched) == set(run.reviews)
    assert retried > 0, "no review went through reviews.retry: the LLM faults did not bite"


def test_two_workers_one_killed_under_load_keeps_every_window_exact(pair_stack, tmp_path):
    stack = pair_stack
    run = Run(stack, "pair")
    killed, took_over_s, victim_partitions, taken, survivor = take_over(
        stack, run, tmp_path=tmp_path, env=ENV, name="pair", seconds=24, reviews_per_s=150)

    start = run.started_ms
    print(f"\n{len(run.reviews)} reviews, {sum(run.truth_orders.values())} orders, "
          f"{len(run.truth_reviews)} windows; victim owned {victim_partitions}, killed at "
          f"{(killed * 1000 - start) / 1000:.1f} s of the run; survivor owned {taken} "
          f"{took_over_s:.1f} s after the kill; reviews.enriched repeated {run.enriched_repeats()}; "
          f"partitions fetched again after a stream missed offsets: "
          f"{survivor.log_path.read_text(errors='replace').count('missed offsets')}")

    repeated = {k: len(v) for k, v in run.tumbling().items() if k in run.truth_reviews and len(v) > 1}
    assert not repeated, f"windows with more than one final aggregate: {repeated}"
    wrong = run.wrong_windows(since_ms=int(killed * 1000))
    orders_off = [k for k in run.truth_reviews if [a["orders_delivered"] for a in run.tumbling().get(k, [])]
                  != [run.truth_orders[k]]]
    assert not wrong, (f"{len(wrong)} of {len(run.truth_reviews)} windows wrong (times relative to the "
                       f"kill; survivor owned every partition {took_over_s:.1f} s after it):\n"
                       + "\n".join(wrong) + "\n" + run.trace_orders(orders_off))
    assert set(run.enriched) == set(run.reviews)


@pytest.fixture(scope="module")
def kept_stack(new_stack: NewStack) -> Iterator[Stack]:
    yield from own_stack(new_stack, "chaos-kept-then-moved")


def test_kill_9_with_the_data_dir_kept_then_partitions_moved_keeps_every_window_exact(kept_stack, tmp_path):
    """Issue 30, finding 3: RocksDB is written before the changelog is acknowledged, so after
    kill -9 the kept store could hold counts the changelog never got; they would be lost when
    the partition moves. The restarted worker wipes its stores and restores them instead."""
    stack = kept_stack
    kept = tmp_path / "kept"
    first = stack.add_worker(data_dir=kept, extra_env=ENV, name="kept-first")
    first.wait_ready()
    run = Run(stack, "kept")
    with run.traffic(seconds=24, reviews_per_s=150) as producing:
        until(lambda: len(run.read().tumbling()), timeout_s=30, what="first windows of the run closed")
        killed = time.time()
        first.stop(kill=True)
        stack.workers.remove(first)
        restarted = stack.add_worker(data_dir=kept, extra_env=ENV, name="kept-restarted")
        restarted.wait_ready()
        second = stack.add_worker(data_dir=tmp_path / "second", extra_env=ENV, name="kept-second")
        moved = until(lambda: owned_partitions(second), timeout_s=EMBEDDED_SESSION_TIMEOUT_S + 40,
                      what="partitions moved to the second worker", interval_s=0.2)
        run.finish(producing, timeout_s=90, since_ms=int(killed * 1000),
                   context=f"the second worker took {moved} from the restarted one")
    print(f"\n{len(run.reviews)} reviews, {len(run.truth_reviews)} windows; kill -9 at "
          f"{(killed * 1000 - run.started_ms) / 1000:.1f} s, restarted on its data dir, then "
          f"partitions {moved} moved to a second worker; reviews.enriched repeated {run.enriched_repeats()}")
    assert "table stores wiped" in restarted.log_path.read_text(errors="replace")
    run.assert_exact(since_ms=int(killed * 1000))
