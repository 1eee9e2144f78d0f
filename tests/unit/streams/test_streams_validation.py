"""Value rules the decode stage and the offline commands share: each failure names a stable reason."""

from __future__ import annotations

from typing import Any

import pytest

from streams.errors import ReviewPulseError
from streams.settings import Settings
from streams.validation import (
    DELIVERY_SPAN_MAX_MS,
    Bounds,
    Invalid,
    check_record_size,
    clean_text,
    record_size,
    validate_order,
    validate_review,
)

NOW_MS = 1_780_000_000_000
DAY_MS = 86_400_000
BOUNDS = Bounds(text_max_chars=10, id_max_chars=16, max_future_skew_ms=300_000, max_age_ms=7 * DAY_MS)


def review(*, occurred_at: Any = NOW_MS, event_id: str = "e1", trace_id: str = "t1",
           **entity: Any) -> dict[str, Any]:
    base = {"review_id": "rv1", "order_id": None, "user_id": "u1", "restaurant_id": "r1",
            "rating": 3, "text": "ok", "language": None}
    return {"event_id": event_id, "event_version": 1, "occurred_at": occurred_at,
            "entity": {**base, **entity},
            "metadata": {"source": "test", "trace_id": trace_id, "retries": 0}}


def order(**fields: Any) -> dict[str, Any]:
    base = {"event_id": "o1", "occurred_at": NOW_MS, "order_id": "ord1", "restaurant_id": "r1",
            "promised_at": NOW_MS - 600_000, "delivered_at": NOW_MS,
            "metadata": {"source": "test", "trace_id": "t1", "retries": 0}}
    return {**base, **fields}


def reason_of(fn: Any, record: dict[str, Any]) -> str:
    with pytest.raises(Invalid) as err:
        fn(record, bounds=BOUNDS, now_ms=NOW_MS)
    assert str(err.value) and err.value.detail == str(err.value)
    return err.value.reason


@pytest.mark.parametrize(("record", "reason"), [
    (review(rating=0), "invalid_value"),
    (review(rating=6), "invalid_value"),
    (review(rating=2**31 - 1), "invalid_value"),
    (review(rating=-(2**31)), "invalid_value"),
    (review(text="x" * 11), "text_too_long"),
    (review(restaurant_id=""), "invalid_id"),
    (review(restaurant_id="   "), "invalid_id"),
    (review(restaurant_id="\t"), "invalid_id"),
    (review(restaurant_id=" r1"), "invalid_id"),
    (review(restaurant_id="r" * 17), "invalid_id"),
    (review(restaurant_id="r\x001"), "invalid_id"),
    (review(restaurant_id="r\n1"), "invalid_id"),
    (review(restaurant_id="r\u202e1"), "invalid_id"),  # right-to-left override
    (review(restaurant_id="r\u200b1"), "invalid_id"),  # zero-width space
    (review(restaurant_id="r\u20281"), "invalid_id"),  # line separator
    (review(restaurant_id="r\x851"), "invalid_id"),  # C1 next line
    (review(event_id=""), "invalid_id"),
    (review(event_id="e" * 17), "invalid_id"),
    (review(review_id=" "), "invalid_id"),
    (review(user_id="u\x7f"), "invalid_id"),
    (review(order_id=""), "invalid_id"),
    (review(trace_id="t\x1b[31m"), "invalid_id"),  # a terminal escape in a log line
    (review(occurred_at=NOW_MS + 300_001), "event_time_in_future"),
    (review(occurred_at=2**63 - 1), "event_time_in_future"),
    (review(occurred_at=NOW_MS - 7 * DAY_MS - 1), "event_time_too_old"),
    (review(occurred_at=-(2**63)), "event_time_too_old"),
    (review(occurred_at=0), "event_time_too_old"),
], ids=lambda v: repr(v)[:60] if isinstance(v, dict) else v)
def test_invalid_reviews_name_their_reason(record: dict[str, Any], reason: str) -> None:
    assert reason_of(validate_review, record) == reason


@pytest.mark.parametrize(("record", "reason"), [
    (order(restaurant_id=""), "invalid_id"),
    (order(event_id="\u2066e1"), "invalid_id"),  # left-to-right isolate
    (order(order_id="o" * 17), "invalid_id"),
    (order(occurred_at=NOW_MS + 10 * DAY_MS), "event_time_in_future"),
    (order(occurred_at=-1), "event_time_too_old"),
    (order(promised_at=NOW_MS - DELIVERY_SPAN_MAX_MS - 1), "invalid_delivery_time"),
    (order(delivered_at=2**63 - 1), "invalid_delivery_time"),
    (order(promised_at=-(2**63)), "invalid_delivery_time"),
])
def test_invalid_orders_name_their_reason(record: dict[str, Any], reason: str) -> None:
    assert reason_of(validate_order, record) == reason


def test_records_at_the_bounds_pass() -> None:
    validate_review(review(rating=1, text="x" * 10, occurred_at=NOW_MS + 300_000,
                           restaurant_id="r" * 16, order_id="o1", trace_id=""),
                    bounds=BOUNDS, now_ms=NOW_MS)
    validate_review(review(rating=5, occurred_at=NOW_MS - 7 * DAY_MS, restaurant_id="café 🍕 são"),
                    bounds=BOUNDS, now_ms=NOW_MS)
    validate_order(order(promised_at=NOW_MS - DELIVERY_SPAN_MAX_MS,
                         delivered_at=NOW_MS + DELIVERY_SPAN_MAX_MS), bounds=BOUNDS, now_ms=NOW_MS)


def test_text_characters_never_invalidate_a_review() -> None:
    hostile = "\U0001F355\u202e\u2066\x00\x1b\ud800\u200b"
    validate_review(review(text=hostile), bounds=BOUNDS, now_ms=NOW_MS)


def test_the_default_caller_is_judged_by_the_wall_clock_and_the_text_cap_it_passes() -> None:
    """What the decode stage calls today: ``validate_review(record, text_max_chars=...)``."""
    import time

    now = int(time.time() * 1000)
    validate_review(review(occurred_at=now), text_max_chars=10)
    with pytest.raises(Invalid) as err:
        validate_review(review(occurred_at=now + DAY_MS), text_max_chars=10)
    assert err.value.reason == "event_time_in_future"
    with pytest.raises(Invalid) as err:
        validate_review(review(occurred_at=now, text="x" * 11), text_max_chars=10)
    assert err.value.reason == "text_too_long"


def test_datetimes_from_a_decoder_are_read_as_epoch_ms() -> None:
    from datetime import UTC, datetime

    moment = datetime.fromtimestamp(NOW_MS / 1000, UTC)
    validate_review(review(occurred_at=moment), bounds=BOUNDS, now_ms=NOW_MS)
    validate_review(review(occurred_at=moment.replace(tzinfo=None)), bounds=BOUNDS, now_ms=NOW_MS)
    assert reason_of(validate_review, review(occurred_at="yesterday")) == "invalid_value"


def test_invalid_is_in_the_error_tree() -> None:
    assert issubclass(Invalid, ReviewPulseError)
    assert not Invalid("invalid_id", "x").retriable


def test_bounds_come_from_the_settings() -> None:
    settings = Settings(id_max_chars=64, event_time_max_skew_s=1.5, event_time_max_age_s=3600,
                        text_max_chars=99)
    assert Bounds.from_settings(settings) == Bounds(text_max_chars=99, id_max_chars=64,
                                                    max_future_skew_ms=1500, max_age_ms=3_600_000)
    assert Bounds.from_settings(Settings()) == Bounds()  # the defaults agree


def test_max_age_beyond_the_dedupe_memory_is_refused() -> None:
    with pytest.raises(ValueError, match="event_time_max_age_s"):
        Settings(event_time_max_age_s=8 * 24 * 3600)


@pytest.mark.parametrize(("raw", "clean"), [
    ("Ótimo! \U0001F355\U0001F600", "Ótimo! \U0001F355\U0001F600"),  # non-BMP kept
    ("👨\u200d👩\u200d👧 família", "👨\u200d👩\u200d👧 família"),  # ZWJ sequence kept
    ("linha 1\r\nlinha 2\rlinha 3\tfim", "linha 1\nlinha 2\nlinha 3\tfim"),
    ("bell\x07 nul\x00 esc\x1b[2J del\x7f c1\x85", "bell nul esc[2J del c1"),
    ("\u202eevil\u202c \u2066iso\u2069 \u200fmark\u200e", "evil iso mark"),
    ("zero\u200bwidth\u2060join\ufeff soft\u00adhyphen", "zerowidthjoin softhyphen"),
    ("lone \ud800 surrogate", "lone \ufffd surrogate"),
    ("decomposed a\u0303o", "decomposed ão"),  # NFC
])
def test_clean_text_keeps_what_people_write_and_drops_what_hides(raw: str, clean: str) -> None:
    assert clean_text(raw) == clean
    assert clean_text(clean) == clean  # idempotent


# --- size caps (issue 30, finding 4) ---------------------------------------------------------
CAPS = Bounds(language_max_chars=8, source_max_chars=12, record_max_bytes=100)


@pytest.mark.parametrize(("record", "reason"), [
    (review(language="x" * 9), "field_too_long"),
    ({**review(), "metadata": {"source": "s" * 13, "trace_id": "t1", "retries": 0}}, "field_too_long"),
])
def test_a_string_field_over_its_cap_is_field_too_long(record: dict[str, Any], reason: str) -> None:
    with pytest.raises(Invalid) as err:
        validate_review(record, bounds=CAPS, now_ms=NOW_MS)
    assert err.value.reason == reason


def test_an_order_source_over_its_cap_is_field_too_long() -> None:
    record = {**order(), "metadata": {"source": "s" * 13, "trace_id": "t1", "retries": 0}}
    with pytest.raises(Invalid) as err:
        validate_order(record, bounds=CAPS, now_ms=NOW_MS)
    assert err.value.reason == "field_too_long"


def test_fields_at_their_caps_pass() -> None:
    validate_review(review(language="x" * 8), bounds=CAPS, now_ms=NOW_MS)
    validate_review({**review(), "metadata": {"source": "s" * 12, "trace_id": "t1", "retries": 0}},
                    bounds=CAPS, now_ms=NOW_MS)


def test_record_over_its_byte_cap_counts_key_value_and_headers() -> None:
    check_record_size(key=b"k" * 10, value=b"v" * 80, headers=[("h", b"x" * 9)], max_bytes=100)
    for key, value, headers in ((b"k" * 101, None, ()), (None, b"v" * 101, ()),
                                (b"", b"v", [("h" * 50, b"x" * 50)])):
        with pytest.raises(Invalid) as err:
            check_record_size(key=key, value=value, headers=headers, max_bytes=100)
        assert err.value.reason == "record_too_large"
    assert record_size(key=None, value=None, headers=[("é", None)]) == 2


def test_size_caps_come_from_the_settings() -> None:
    bounds = Bounds.from_settings(Settings(language_max_chars=10, source_max_chars=20,
                                           max_input_record_bytes=4096))
    assert (bounds.language_max_chars, bounds.source_max_chars, bounds.record_max_bytes) == (10, 20, 4096)
    assert Bounds() == Bounds.from_settings(Settings())  # the defaults live in both places alike
