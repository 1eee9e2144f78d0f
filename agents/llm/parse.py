"""Validation of the model's answer: one well-formed result per input ref, or a precise error.

A model may return invalid JSON, drop or invent refs, or use labels outside the enums
(especially when a review tries to inject instructions). Nothing it says is trusted:
every field is checked here. Results that pass are kept even when others fail, so the
caller re-asks only for the failed refs (partial-answer handling).

The reply draft is redacted like the review text: the model never saw the author's PII,
but it can invent a contact ("call us at 11 3456-7890") or echo an obfuscated address the
redactor let through, and the draft is published on ``reviews.enriched``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

from agents.llm.errors import LLMMalformedOutputError
from agents.llm.labels import CATEGORY_VALUES, SENTIMENT_VALUES, Enrichment, Sentiment
from agents.llm.prompt import REPLY_DRAFT_MAX_CHARS
from agents.llm.redact import redact_pii

# How many individual problems an error message lists before summarising.
_MAX_REASONS_SHOWN = 5


def _validate_item(item: Any, *, reply_max_chars: int) -> Enrichment:
    """One result object -> Enrichment, or ``ValueError`` naming the bad field."""
    if not isinstance(item, dict):
        raise ValueError("result is not an object")
    label = item.get("label")
    if not isinstance(label, str) or label not in SENTIMENT_VALUES:
        raise ValueError(f"label {label!r} is not one of the sentiment labels")
    score = item.get("score")
    if isinstance(score, bool) or not isinstance(score, int | float):
        raise ValueError(f"score {score!r} is not a number")
    if not math.isfinite(score) or not -1.0 <= score <= 1.0:
        raise ValueError(f"score {score!r} is outside [-1, 1]")
    categories = item.get("categories")
    if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
        raise ValueError("categories is not a list of strings")
    unknown = sorted({c for c in categories if c not in CATEGORY_VALUES})
    if unknown:
        raise ValueError(f"unknown categories {unknown!r}")
    reply = item.get("reply_draft")
    if not isinstance(reply, str):
        raise ValueError("reply_draft is not a string")
    if len(reply) > reply_max_chars:
        raise ValueError(f"reply_draft has {len(reply)} chars, over {reply_max_chars}")
    # An empty category list carries no information but is not wrong: it means "other".
    unique = tuple(dict.fromkeys(categories)) or ("other",)
    return Enrichment(
        label=Sentiment(label), score=float(score), categories=unique,
        reply_draft=redact_pii(reply).text.strip(),
    )


def _fail(reason: str, refs: Sequence[str], valid: dict[str, Enrichment]) -> None:
    failed = tuple(r for r in refs if r not in valid)
    raise LLMMalformedOutputError(reason, failed_refs=failed, valid_results=valid)


def parse_results(
    content: str | None,
    *,
    expected_refs: Sequence[str],
    reply_max_chars: int = REPLY_DRAFT_MAX_CHARS,
) -> dict[str, Enrichment]:
    """Validate a batch answer and return ``{ref: Enrichment}`` for every expected ref.

    Raises :class:`LLMMalformedOutputError` unless every ref has exactly one valid
    result and no unknown ref appears; the error's ``valid_results`` holds the refs
    that did validate and ``failed_refs`` the ones to ask again.
    """
    refs = list(expected_refs)
    if content is None or not content.strip():
        _fail("empty answer", refs, {})
    try:
        document = json.loads(content)
    except (json.JSONDecodeError, TypeError) as exc:
        raise LLMMalformedOutputError(
            f"answer is not valid JSON: {exc.msg if hasattr(exc, 'msg') else exc}",
            failed_refs=tuple(refs),
        ) from exc
    if not isinstance(document, dict) or not isinstance(document.get("results"), list):
        _fail('answer is not an object with a "results" array', refs, {})

    expected = set(refs)
    seen: dict[str, int] = {}
    candidates: dict[str, Any] = {}
    problems: list[str] = []
    for position, item in enumerate(document["results"]):
        ref = item.get("ref") if isinstance(item, dict) else None
        if not isinstance(ref, str):
            problems.append(f"result #{position} has no string ref")
            continue
        if ref not in expected:
            problems.append(f"unexpected ref {ref!r}")
            continue
        seen[ref] = seen.get(ref, 0) + 1
        candidates[ref] = item

    valid: dict[str, Enrichment] = {}
    for ref in refs:
        count = seen.get(ref, 0)
        if count == 0:
            problems.append(f"missing ref {ref!r}")
            continue
        if count > 1:
            # Two answers for one review: neither can be trusted over the other.
            problems.append(f"duplicate ref {ref!r} ({count} results)")
            continue
        try:
            valid[ref] = _validate_item(candidates[ref], reply_max_chars=reply_max_chars)
        except ValueError as exc:
            problems.append(f"ref {ref!r}: {exc}")

    if problems:
        shown = "; ".join(problems[:_MAX_REASONS_SHOWN])
        more = len(problems) - _MAX_REASONS_SHOWN
        suffix = f"; and {more} more" if more > 0 else ""
        _fail(
            f"{len(problems)} problem(s) in answer for {len(refs)} refs: {shown}{suffix}",
            refs,
            valid,
        )
    return valid
