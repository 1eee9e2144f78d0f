"""``reviewpulse dlq list|replay`` and ``reprocess`` against the session stack (click's CliRunner)."""

from __future__ import annotations

import json
import os
import re
import time
import uuid

import pytest
from click.testing import CliRunner
from test_pipeline_support import (
    DLQ,
    ENRICHED,
    header,
    open_outputs,
    produce,
    simulator_config,
    simulator_requests,
)

from streams import replay
from streams.cli import main
from streams.settings import load_settings
from tests.until import until

pytestmark = pytest.mark.integration

REVIEWS_CREATED = "reviews.created"


@pytest.fixture
def outputs(stack, worker):
    yield from open_outputs(stack)


@pytest.fixture
def env(stack) -> dict[str, str]:
    assert stack.broker and stack.registry and stack.llm
    return {"REVIEWPULSE_KAFKA_BOOTSTRAP_SERVERS": stack.broker.bootstrap,
            "REVIEWPULSE_SCHEMA_REGISTRY_URL": stack.registry.url,
            "REVIEWPULSE_LLM_BASE_URL": f"{stack.llm.url}/v1"}


def _run(env: dict[str, str], *args: str, code: int = 0) -> str:
    result = CliRunner().invoke(main, list(args), env=env, catch_exceptions=False)
    assert result.exit_code == code, result.output
    print(f"$ reviewpulse {' '.join(args)}\n{result.output}")  # shown with -s: the report's examples
    return result.output


def _letters_for(outputs, key: bytes) -> list:
    return outputs.poll().where(DLQ, lambda v: v["key"] == key)


def test_dlq_list_prints_each_letter_and_counts_per_reason(env, worker, producer, outputs):
    key = f"cli-list-{uuid.uuid4().hex[:8]}".encode()
    partition, offset = produce(producer, REVIEWS_CREATED, b"\x07" + os.urandom(12), key=key)
    outputs.wait_for(DLQ, lambda v: v["key"] == key)

    listed = _run(env, "dlq", "list")
    line = next(x for x in listed.splitlines() if f"{REVIEWS_CREATED}:{partition}:{offset}:decode" in x)
    assert "reason=unknown_magic_byte" in line and "stage=decode" in line and "attempts=1" in line
    assert "first=" in line and "last=" in line and "UnknownMagicByteError" in line
    assert "dead letters" in listed and "unknown_magic_byte" in listed.split("dead letters")[-1]

    only = _run(env, "dlq", "list", "--reason", "unknown_magic_byte", "--limit", "1")
    assert len([x for x in only.splitlines() if "reason=" in x]) == 1
    assert "invalid_value" not in only


def test_dlq_replay_skips_permanent_reasons_and_counts_replays_when_asked(
        env, worker, producer, review_factory, outputs):
    key = f"cli-replay-{uuid.uuid4().hex[:8]}".encode()
    garbage = f"cli-garbage-{uuid.uuid4().hex[:8]}".encode()
    value = producer.review_bytes(review_factory(rating=9))
    produce(producer, REVIEWS_CREATED, value, key=key)
    produce(producer, REVIEWS_CREATED, b"\x09junk", key=garbage)
    outputs.wait_for(DLQ, lambda v: v["key"] in (key, garbage), count=2)

    default = _run(env, "dlq", "replay")
    assert "with permanent reasons skipped" in default

    replayed = _run(env, "dlq", "replay", "--reason", "invalid_value")
    assert re.search(r"^replaying dead letters: (\d+)/\1 \([\d.,]+/s\)$", replayed, re.M), replayed
    second = until(lambda: _letters_for(outputs, key), timeout_s=20, what="the replayed letter",
                   done=lambda found: len(found) == 2)[-1]
    assert second.value["value"] == value  # the original bytes, untouched
    assert len(_letters_for(outputs, garbage)) == 1  # skipped by default, never named
    assert {"key": "rp-replay", "value": b"1"} in second.value["headers"]

    # A second replay publishes again (both letters of the key now): the count goes up.
    _run(env, "dlq", "replay", "--reason", "invalid_value")
    third = until(lambda: _letters_for(outputs, key), timeout_s=20, what="replayed letters",
                  done=lambda found: len(found) >= 4)
    counts = sorted(h["value"] for r in third for h in r.value["headers"] if h["key"] == "rp-replay")
    assert counts == [b"1", b"1", b"2"]


def test_dlq_replay_of_llm_exhausted_re_enriches_the_review(
        stack, env, worker, producer, review_factory, outputs):
    review = review_factory(text=f"Sem LLM agora {uuid.uuid4().hex[:6]}")
    with simulator_config(stack, error_500_rate=1.0):
        producer.send_review(review)
        [letter] = outputs.wait_for(DLQ, lambda v: v["reason"] == "llm_exhausted"
                                    and v["trace_id"] == review["metadata"]["trace_id"], timeout_s=45)
    [fallback] = outputs.wait_enriched([review["event_id"]])
    assert fallback.value["status"] == "FALLBACK"

    settings = load_settings(**{k.removeprefix("REVIEWPULSE_").lower(): v for k, v in env.items()})
    stats = until(lambda: replay.replay(settings, [letter.value]), timeout_s=30,
                  what="a replay once the breaker closed", done=lambda s: s.reenriched == 1)

    assert stats.republished == 0
    records = until(lambda: outputs.poll().enriched([review["event_id"]]), timeout_s=20,
                    what="the re-enriched record", done=lambda found: len(found) == 2)
    assert records[-1].value["status"] == "ENRICHED"
    assert header(records[-1], "rp-replay") == b"1"


def test_reprocess_dry_run_estimates_and_real_run_writes_new_model_records(
        stack, env, worker, producer, review_factory, outputs):
    from_ms = int(time.time() * 1000)
    reviews = [review_factory(text=f"Reprocessar esta avaliação {i} {uuid.uuid4().hex[:6]}")
               for i in range(3)]
    for review in reviews:
        producer.send_review(review)
    outputs.wait_enriched([r["event_id"] for r in reviews])
    to_ms = int(time.time() * 1000) + 1

    dry = _run(env, "reprocess", "--from", str(from_ms), "--to", str(to_ms), "--dry-run")
    assert "3 reviews to re-enrich" in dry and "tokens in" in dry and "$0.000" in dry
    assert len(outputs.poll().enriched([r["event_id"] for r in reviews])) == 3  # wrote nothing

    real = _run(env, "reprocess", "--from", str(from_ms), "--to", str(to_ms), "--model", "gpt-test-2")
    assert "wrote 3 ReviewEnriched records" in real
    assert re.search(r"^re-enriching reviews: 3/3 \([\d.,]+/s\)$", real, re.M), real
    assert "re-enriching" not in dry
    records = until(lambda: outputs.poll().enriched([r["event_id"] for r in reviews]), timeout_s=20,
                    what="reprocessed records", done=lambda found: len(found) == 6)
    newer = [r for r in records if header(r, "rp-reprocess")]
    assert len(newer) == 3
    assert {header(r, "rp-reprocess") for r in newer} == {b"gpt-test-2/reviews-batch-v1"}
    assert {r.value["status"] for r in newer} == {"ENRICHED"}
    assert all(r.topic == ENRICHED for r in newer)

    asked = [b["model"] for b in simulator_requests(stack) if reviews[0]["event_id"] in json.dumps(b)]
    assert "gpt-test-2" in asked


def test_reprocess_rejects_bad_times_and_unknown_prompt_versions(env):
    assert "neither epoch" in _run(env, "reprocess", "--from", "yesterday", "--to", "1", code=2)
    assert "--to must be after --from" in _run(env, "reprocess", "--from", "5", "--to", "1", code=2)
    assert "unknown" in _run(env, "reprocess", "--from", "1", "--to", "5", "--prompt-version", "v9",
                             code=2)
