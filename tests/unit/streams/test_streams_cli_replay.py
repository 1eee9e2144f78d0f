"""The CLI's help for every command, and the pure parts of streams.replay."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime

import pytest
from click.testing import CliRunner

from streams import replay
from streams.cli import main
from streams.settings import load_settings

COMMANDS = [[], ["worker"], ["registry"], ["llm-sim"], ["schemas"], ["schemas", "register"],
            ["schemas", "check"], ["produce-sample"], ["dlq"], ["dlq", "list"], ["dlq", "replay"],
            ["reprocess"], ["demo"]]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "main")
def test_every_command_has_help(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output


def test_help_builds_no_app_and_imports_no_kafka_client() -> None:
    code = ("import sys; from click.testing import CliRunner; from streams.cli import main; "
            "[CliRunner().invoke(main, [*c, '--help']) for c in (['dlq', 'replay'], ['reprocess'])]; "
            "print(sorted(m for m in ('streams.app', 'streams.runtime', 'confluent_kafka', 'faust') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_replay_help_names_the_skipped_reasons() -> None:
    text = CliRunner().invoke(main, ["dlq", "replay", "--help"]).output
    for reason in sorted(replay.PERMANENT_REASONS):
        assert reason in text
    assert "llm_exhausted" in text


@pytest.mark.parametrize(("text", "ms"), [
    ("1767225600000", 1_767_225_600_000),
    ("2026-01-01T00:00:00Z", 1_767_225_600_000),
    ("2026-01-01T00:00:00", 1_767_225_600_000),  # naive means UTC
    ("2026-01-01T01:00:00+01:00", 1_767_225_600_000),
    (" 2026-01-01 00:00:00.250 ", 1_767_225_600_250),
])
def test_parse_time_accepts_epoch_ms_and_iso_8601(text: str, ms: int) -> None:
    assert replay.parse_time_ms(text) == ms


def test_parse_time_rejects_anything_else() -> None:
    with pytest.raises(ValueError, match="neither epoch"):
        replay.parse_time_ms("yesterday")


def _letter(reason: str, **overrides: object) -> dict:
    letter = {"dead_letter_id": f"reviews.created:0:1:{reason}", "topic": "reviews.created",
              "partition": 0, "offset": 1, "key": b"k", "value": b"v", "headers": [],
              "stage": "decode", "reason": reason, "error_class": "X", "error_message": "boom",
              "attempts": 1, "trace_id": None,
              "first_failure_at": datetime(2026, 1, 1, tzinfo=UTC),
              "last_failure_at": datetime(2026, 1, 1, 0, 0, 1, tzinfo=UTC)}
    letter.update(overrides)
    return letter


def test_default_replay_skips_permanent_reasons_and_named_reasons_are_replayed() -> None:
    letters = [_letter(r) for r in ("unknown_magic_byte", "truncated_payload", "undecodable",
                                    "invalid_value", "text_too_long", "empty_value",
                                    "unknown_schema_id", "registry_unavailable", "llm_exhausted")]
    chosen, skipped = replay.select_for_replay(letters)
    assert [x["reason"] for x in chosen] == ["unknown_schema_id", "registry_unavailable", "llm_exhausted"]
    assert len(skipped) == 6
    chosen, skipped = replay.select_for_replay(letters, reasons=["text_too_long"])
    assert [x["reason"] for x in chosen] == ["text_too_long"] and skipped == []


def test_replay_headers_keep_the_originals_and_count_replays() -> None:
    first = replay.replay_headers([{"key": "trace_id", "value": b"t"}])
    assert first == [("trace_id", b"t"), ("rp-replay", b"1")]
    again = replay.replay_headers([{"key": k, "value": v} for k, v in first])
    assert again == [("trace_id", b"t"), ("rp-replay", b"2")]


def test_format_letter_is_one_line_with_every_field() -> None:
    line = replay.format_letter(_letter("invalid_value", trace_id="trc-9", attempts=3,
                                        error_message="rating is 9\nexpected 1 to 5"))
    assert "\n" not in line
    for part in ("reviews.created:0:1:invalid_value", "reason=invalid_value", "stage=decode",
                 "attempts=3", "trace_id=trc-9", "first=2026-01-01T00:00:00.000Z",
                 "last=2026-01-01T00:00:01.000Z", "X: rating is 9 expected 1 to 5"):
        assert part in line
    assert replay.count_by_reason([_letter("a"), _letter("a"), _letter("b")]) == {"a": 2, "b": 1}


def test_estimate_uses_redacted_text_and_the_settings_prices() -> None:
    settings = load_settings(llm_price_in_usd_per_mtok=1.0, llm_price_out_usd_per_mtok=2.0,
                             llm_batch_size=10)
    review = {"event_id": "e1", "entity": {"text": "x" * 400, "rating": 2, "language": "en"}}
    pii = {"event_id": "e2", "entity": {"text": "mail me: someone.long.name@example.com",
                                        "rating": 2, "language": "en"}}
    estimate = replay.estimate_cost([review, pii], settings=settings)
    assert estimate.reviews == 2
    one = replay.estimate_cost([review], settings=settings)
    assert one.tokens_out == 160 and one.tokens_in > 100  # 400 chars / 4 + framing
    # $1 per 1M in and $2 per 1M out: micro-dollars equal tokens_in + 2 * tokens_out.
    assert one.cost_micro_usd == one.tokens_in + 2 * one.tokens_out
    from agents.llm.labels import ReviewInput
    from agents.llm.prompt import estimate_review_tokens

    raw_in, _ = estimate_review_tokens(ReviewInput("e2", pii["entity"]["text"], 2, "en"), batch_size=10)
    assert replay.estimate_cost([pii], settings=settings).tokens_in < raw_in  # "[EMAIL]" is shorter
