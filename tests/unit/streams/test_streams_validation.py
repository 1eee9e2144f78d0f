"""Value rules the decode stage and the offline commands share."""

from __future__ import annotations

import pytest

from streams.validation import Invalid, validate_order, validate_review


def review(**entity: object) -> dict:
    base = {"restaurant_id": "r1", "rating": 3, "text": "ok"}
    return {"event_id": "e1", "entity": {**base, **entity}}


@pytest.mark.parametrize(("entity", "reason"), [
    ({"rating": 0}, "invalid_value"),
    ({"rating": 6}, "invalid_value"),
    ({"restaurant_id": ""}, "invalid_value"),
    ({"text": "x" * 11}, "text_too_long"),
])
def test_invalid_reviews_name_their_reason(entity, reason):
    with pytest.raises(Invalid) as err:
        validate_review(review(**entity), text_max_chars=10)
    assert err.value.reason == reason


def test_a_valid_review_and_order_pass():
    validate_review(review(rating=1, text="x" * 10), text_max_chars=10)
    validate_order({"event_id": "e", "restaurant_id": "r"})


def test_an_order_without_restaurant_is_invalid():
    with pytest.raises(Invalid, match="restaurant_id"):
        validate_order({"event_id": "e", "restaurant_id": ""})
