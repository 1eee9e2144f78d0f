"""Reconcile's accounting on hand-made topic contents: every record in one bucket, missing ones listed.

The integration test (tests/integration/test_reconcile_cli.py) runs the command against the
real pipeline, where nothing goes missing; here the missing cases are built on purpose.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner

from streams import reconcile as rec
from streams.cli import main
from streams.reconcile import InputRecord, LetterRef, Observed, account

T0 = 1_780_000_000_000
RC, OD = "reviews.created", "orders.delivered"


def review(offset: int, event_id: str | None, *, at: int = T0, occurred: int | None = None,
           partition: int = 0) -> InputRecord:
    occurred = at if occurred is None and event_id is not None else occurred
    return InputRecord(RC, partition, offset, at, event_id, occurred)


def letter(coords: tuple[str, int, int], reason: str, *, origin: tuple[str, int, int] | None = None,
           event_id: str | None = None) -> LetterRef:
    return LetterRef(f"{coords[0]}:{coords[1]}:{coords[2]}:x", reason,
                     frozenset({coords} | ({origin} if origin else set())), event_id)


def test_each_record_lands_in_one_bucket_and_nothing_is_missing() -> None:
    observed = Observed(
        inputs=[review(0, "e1"), review(1, "e2"), review(2, None), review(3, "e1"),
                review(4, "e3"), review(5, "e4"), review(6, "e5"),
                InputRecord(OD, 1, 0, T0, "o1", T0), InputRecord(OD, 1, 1, T0, "o1", T0),
                InputRecord(OD, 1, 2, T0, None, None)],
        enriched_ids={"e1", "e2", "e4"},
        letters=[letter((RC, 0, 2), "unknown_magic_byte"),
                 letter((RC, 0, 4), "invalid_id"),
                 # llm_exhausted goes with a FALLBACK output: counted enriched, reason shown
                 letter((RC, 0, 5), "llm_exhausted"),
                 # a later stage's letter names the input by its rp-origin header
                 letter(("reviewpulse-by-restaurant", 3, 9), "undecodable", origin=(RC, 0, 6)),
                 letter((OD, 1, 2), "truncated_payload")],
    )
    reports = account(observed, from_ms=T0, to_ms=T0 + 1)
    r, o = reports[RC], reports[OD]
    assert (r.consumed, r.enriched, r.dead_lettered, r.duplicates, r.in_retry, r.missing) == \
        (7, 3, 3, 1, 0, [])
    assert r.accounted == r.consumed
    assert r.dead_letter_reasons == {"unknown_magic_byte": 1, "invalid_id": 1, "llm_exhausted": 1,
                                     "undecodable": 1}
    assert (o.consumed, o.folded, o.dead_lettered, o.duplicates, o.missing, o.traceable) == \
        (3, 1, 1, 1, [], False)
    assert not rec.any_missing(reports)


def test_reviews_in_neither_output_nor_dlq_are_listed_missing() -> None:
    observed = Observed(
        inputs=[review(0, "e1"), review(1, "lost"), review(2, None), review(3, "waiting"),
                review(4, "by-id")],
        enriched_ids={"e1"},
        retry_ids={"waiting"},
        # a letter without coordinates of ours, found by the event_id of its value
        letters=[letter(("reviewpulse-by-restaurant", 0, 1), "undecodable", event_id="by-id")],
    )
    r = account(observed, from_ms=T0, to_ms=T0 + 1)[RC]
    assert r.missing == ["lost", "reviews.created:0:2"]
    assert (r.enriched, r.in_retry, r.dead_lettered) == (1, 1, 1)
    assert r.accounted == r.consumed == 5


def test_a_dead_lettered_copy_does_not_hide_a_later_good_copy() -> None:
    observed = Observed(inputs=[review(0, "e1"), review(1, "e1", at=T0 + 1)],
                        enriched_ids={"e1"}, letters=[letter((RC, 0, 0), "invalid_value")])
    r = account(observed, from_ms=T0, to_ms=T0 + 10)[RC]
    assert (r.dead_lettered, r.enriched, r.duplicates) == (1, 1, 0)


@pytest.mark.parametrize(("occurred", "by", "in_range"), [
    (T0 - 3_600_000, "occurred", False),  # written an hour before the range
    (T0 - 3_600_000, "produced", True),
    (2**63 - 1, "occurred", True),  # a hostile time is placed where the record arrived
    (-(2**63), "occurred", True),
])
def test_records_are_placed_by_event_time_within_bounds_else_by_kafka_time(
        occurred: int, by: str, in_range: bool) -> None:
    observed = Observed(inputs=[review(0, "e1", occurred=occurred)], enriched_ids={"e1"})
    r = account(observed, from_ms=T0, to_ms=T0 + 1, by=by)[RC]
    assert r.consumed == int(in_range)


def test_parse_origin_reads_only_a_well_formed_header() -> None:
    assert rec.parse_origin([{"key": "rp-origin", "value": b"reviews.created:2:41"}]) == (RC, 2, 41)
    assert rec.parse_origin([{"key": "rp-origin", "value": b"garbage"}]) is None
    assert rec.parse_origin([{"key": "other", "value": b"a:1:2"}]) is None


def test_an_empty_range_is_a_usage_error() -> None:
    with pytest.raises(ValueError, match="--to"):
        account(Observed(), from_ms=T0, to_ms=T0)


@pytest.fixture
def observed(monkeypatch: pytest.MonkeyPatch) -> Observed:
    data = Observed(inputs=[review(0, "e1"), review(1, "lost-1")], enriched_ids={"e1"})

    def fake_observe(_settings: Any) -> Observed:
        return data

    monkeypatch.setattr(rec, "observe", fake_observe)
    return data


def test_command_lists_missing_ids_and_exits_1(observed: Observed) -> None:
    result = CliRunner().invoke(main, ["reconcile", "--from", str(T0), "--to", str(T0 + 1)])
    assert result.exit_code == 1, result.output
    assert "reviews.created    consumed 2  enriched 1  dead-lettered 0  duplicates 0" in result.output
    assert "missing: 1\n  reviews.created lost-1" in result.output


def test_command_json_and_exit_0_when_nothing_is_missing(observed: Observed) -> None:
    observed.enriched_ids.add("lost-1")
    result = CliRunner().invoke(main, ["reconcile", "--from", "2026-05-28T20:26:40Z",
                                       "--to", str(T0 + 1), "--json"])
    assert result.exit_code == 0, result.output
    doc = json.loads(result.output)
    assert doc["missing"] == 0 and doc["by"] == "occurred"
    assert doc["topics"][RC]["enriched"] == 2 and doc["topics"][OD]["traceable"] is False
