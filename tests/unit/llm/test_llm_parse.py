"""Answer validation: each malformed kind raises with a precise reason and keeps the valid part."""

from __future__ import annotations

import json
from typing import Any

import pytest

from agents.llm.errors import LLMMalformedOutputError
from agents.llm.labels import Sentiment
from agents.llm.parse import parse_results

REFS = ["a", "b"]


def result(ref: str, **overrides: Any) -> dict[str, Any]:
    item = {
        "ref": ref,
        "label": "NEGATIVE",
        "score": -0.5,
        "categories": ["delivery_time"],
        "reply_draft": "Sorry!",
    }
    item.update(overrides)
    return item


def answer(*items: dict[str, Any]) -> str:
    return json.dumps({"results": list(items)})


def test_valid_answer_gives_one_enrichment_per_ref() -> None:
    parsed = parse_results(
        answer(result("b"), result("a", label="POSITIVE", score=1)), expected_refs=REFS
    )
    assert set(parsed) == {"a", "b"}
    assert parsed["a"].label is Sentiment.POSITIVE and parsed["a"].score == 1.0


def test_empty_categories_mean_other_and_duplicates_collapse() -> None:
    parsed = parse_results(
        answer(result("a", categories=[]), result("b", categories=["price", "price"])),
        expected_refs=REFS,
    )
    assert parsed["a"].categories == ("other",)
    assert parsed["b"].categories == ("price",)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ('{"results": [', "not valid JSON"),
        ("", "empty answer"),
        ("[]", '"results" array'),
        ('{"results": {}}', '"results" array'),
    ],
)
def test_unusable_answer_fails_every_ref(content: str, reason: str) -> None:
    with pytest.raises(LLMMalformedOutputError, match=reason) as info:
        parse_results(content, expected_refs=REFS)
    assert info.value.failed_refs == ("a", "b")
    assert info.value.valid_results == {}
    assert info.value.retriable is False


@pytest.mark.parametrize(
    ("bad", "reason"),
    [
        (result("b", label="VERY_POSITIVE"), "label 'VERY_POSITIVE'"),
        (result("b", label=None), "label None"),
        (result("b", categories=["taste"]), "unknown categories"),
        (result("b", categories="price"), "not a list"),
        (result("b", score=1.5), "outside"),
        (result("b", score="0.5"), "not a number"),
        (result("b", score=True), "not a number"),
        (result("b", reply_draft=None), "reply_draft is not a string"),
        (result("b", reply_draft="x" * 5000), "over"),
        ("not an object", "has no string ref"),
    ],
)
def test_one_bad_result_keeps_the_other(bad: Any, reason: str) -> None:
    with pytest.raises(LLMMalformedOutputError, match=reason) as info:
        parse_results(answer(result("a"), bad), expected_refs=REFS)
    assert set(info.value.valid_results) == {"a"}
    assert info.value.failed_refs == ("b",)


def test_missing_ref_is_reported_and_re_asked() -> None:
    with pytest.raises(LLMMalformedOutputError, match="missing ref 'b'") as info:
        parse_results(answer(result("a")), expected_refs=REFS)
    assert info.value.failed_refs == ("b",)


def test_duplicate_ref_fails_that_ref() -> None:
    with pytest.raises(LLMMalformedOutputError, match="duplicate ref 'a'") as info:
        parse_results(answer(result("a"), result("a"), result("b")), expected_refs=REFS)
    assert info.value.failed_refs == ("a",)
    assert set(info.value.valid_results) == {"b"}


def test_extra_ref_is_an_error_but_keeps_all_valid_results() -> None:
    with pytest.raises(LLMMalformedOutputError, match="unexpected ref 'zzz'") as info:
        parse_results(answer(result("a"), result("b"), result("zzz")), expected_refs=REFS)
    assert info.value.failed_refs == ()
    assert set(info.value.valid_results) == {"a", "b"}
