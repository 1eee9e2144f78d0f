"""Property: any schema-valid input record is classified, valid or invalid with a reason; never a crash.

Records matching ``avro_schemas/ReviewCreated.avsc`` and ``OrderDelivered.avsc`` (and
writers with other timestamp logical types) are generated with extreme values: ids
empty, whitespace, huge, with controls and bidi marks; ints and longs at their limits;
text with non-BMP, control and format characters. Each is written with fastavro and the
official framing, then goes the app's way: ``AvroCodecs.decode`` (the writer schema by
the frame's id, resolved to our reader), ``validate_*``, and for valid ones the fold the
restaurant stage does (cleaned and redacted text, heuristic labels, a pane). The only
exceptions allowed are ``SerdeError`` and ``Invalid``, each with a known reason; a valid
record folds into a pane whose aggregate still encodes as ``RestaurantWindowAggregate``.
"""

from __future__ import annotations

import asyncio
import io
import json
from typing import Any

import fastavro
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import avro_schemas
from agents.llm.heuristic import enrich_heuristic
from agents.llm.labels import ReviewInput
from agents.llm.redact import redact_pii
from schema_registry import serde
from schema_registry.errors import SerdeError
from streams.codecs import AvroCodecs
from streams.settings import Settings
from streams.validation import DELIVERY_SPAN_MAX_MS, Bounds, Invalid, validate_order, validate_review
from tables.values import PaneAggregate

NOW_MS = 1_780_000_000_000
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)
VALIDATION_REASONS = {"invalid_id", "invalid_value", "text_too_long", "event_time_in_future",
                      "event_time_too_old", "invalid_delivery_time", "field_too_long"}
SERDE_REASONS = {"logical_type_mismatch", "undecodable"}
SETTINGS = Settings()
BOUNDS = Bounds.from_settings(SETTINGS)

# Characters people and attackers put in strings: letters, accents, emoji (non-BMP), C0 and
# C1 controls, bidi overrides and isolates, zero-width characters, line separators.
HOSTILE_CHARS = st.sampled_from(
    [*"aZ09 -_|:/.@", "ã", "ç", "é", "\U0001F355", "\U0001F600", "\U00010348", "\x00", "\t",
                             "\n", "\r", "\x1b", "\x7f", "\x85", "\u202e", "\u202d", "\u2066",
                             "\u2069", "\u200b", "\u200d", "\u200e", "\ufeff", "\u2028", "\u00a0"])
HOSTILE_TEXT = st.text(alphabet=st.one_of(HOSTILE_CHARS, st.characters(codec="utf-8")), max_size=40)
GOOD_IDS = st.one_of(st.from_regex(r"[a-z]{1,8}-[0-9a-f]{1,12}", fullmatch=True),
                     st.text(st.sampled_from("abcãç🍕é-_ 09"), min_size=1, max_size=20).filter(
                         lambda s: s.strip() == s and s))
BAD_IDS = st.one_of(st.just(""), st.just("   "), st.text(HOSTILE_CHARS, min_size=1, max_size=12),
                    st.text(st.sampled_from("abc-123"), min_size=120, max_size=200))



def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any], *, bad_in: int = 10
           ) -> st.SearchStrategy[Any]:
    """``bad`` one time in ``bad_in``: so about half the records get past all the rules
    and test what comes after them (the fold), the rest hit one rule or several."""
    return st.integers(1, bad_in).flatmap(lambda n: bad if n == bad_in else good)


IDS = mostly(GOOD_IDS, BAD_IDS)
INTS = st.one_of(st.integers(*INT32), st.sampled_from([INT32[0], INT32[1], 0, 1, 5, 6, -1]))
RATINGS = mostly(st.integers(1, 5), INTS, bad_in=5)
EXTREME_TIMES = st.one_of(st.integers(*INT64), st.sampled_from([INT64[0], INT64[1], 0, -1,
                                                                253_402_300_800_000]))
# Near now, on both sides of the skew (5 min ahead) and age (7 days back) bounds.
NEAR_NOW = st.integers(NOW_MS - 8 * 86_400_000, NOW_MS + 86_400_000)
IN_BOUNDS = st.integers(NOW_MS - 7 * 86_400_000, NOW_MS + 300_000)
TIMES = mostly(IN_BOUNDS, st.one_of(EXTREME_TIMES, NEAR_NOW), bad_in=5)
TEXTS = mostly(HOSTILE_TEXT, st.text(HOSTILE_CHARS, min_size=4990, max_size=5010), bad_in=5)
LONG_TEXT = st.text(HOSTILE_CHARS, min_size=129, max_size=200)  # over the source and language caps
METADATA = st.fixed_dictionaries({"source": mostly(HOSTILE_TEXT, LONG_TEXT),
                                  "trace_id": st.one_of(IDS, st.just("")), "retries": INTS})

REVIEWS = st.fixed_dictionaries({
    "event_id": IDS, "event_version": INTS, "occurred_at": TIMES,
    "entity": st.fixed_dictionaries({
        "review_id": IDS, "order_id": st.one_of(st.none(), IDS), "user_id": IDS,
        "restaurant_id": IDS, "rating": RATINGS, "text": TEXTS,
        "language": st.one_of(st.none(), st.sampled_from(["pt-BR", "en", "", "\u202e"]), LONG_TEXT),
    }),
    "metadata": METADATA,
})


def _order_times(draw: Any) -> dict[str, int]:
    occurred = draw(TIMES)
    near = st.integers(max(INT64[0], occurred - 2 * DELIVERY_SPAN_MAX_MS),
                       min(INT64[1], occurred + 2 * DELIVERY_SPAN_MAX_MS))
    return {"occurred_at": occurred, "promised_at": draw(st.one_of(near, TIMES)),
            "delivered_at": draw(st.one_of(near, TIMES))}


@st.composite
def orders(draw: Any) -> dict[str, Any]:
    return {"event_id": draw(IDS), "order_id": draw(IDS), "restaurant_id": draw(IDS),
            **_order_times(draw), "metadata": draw(METADATA)}


# Writers the registry accepts for the time fields (Avro resolution ignores logical types).
TIME_WRITERS = mostly(
    st.sampled_from([None, "long", {"type": "long", "logicalType": "local-timestamp-millis"}]),
    st.sampled_from([{"type": "long", "logicalType": "timestamp-micros"},
                     {"type": "int", "logicalType": "date"}, "int"]), bad_in=4)


def _writer(record_name: str, time_type: Any) -> str:
    schema = json.loads(avro_schemas.schema_text(record_name))
    if time_type is not None:
        for f in schema["fields"]:
            if f["name"] in ("occurred_at", "promised_at", "delivered_at"):
                f["type"] = time_type
    return json.dumps(schema)


def _fit(value: dict[str, Any], time_type: Any) -> dict[str, Any]:
    """Bring generated numbers into the writer type's range (what a real writer can emit)."""
    base = time_type["type"] if isinstance(time_type, dict) else time_type
    if base in (None, "long"):
        return value
    out = dict(value)
    for name in ("occurred_at", "promised_at", "delivered_at"):
        if name in out:
            out[name] = max(INT32[0], min(INT32[1], out[name] // 86_400_000))
    return out


def _bytes(record_name: str, value: dict[str, Any], time_type: Any, schema_id: int) -> bytes:
    """Framed bytes as the producer's serializer writes them (raw numbers for logical types)."""
    text = _writer(record_name, time_type)
    raw_schema = json.loads(text)
    for f in raw_schema["fields"]:  # write numbers as numbers: no datetime round trip
        if isinstance(f["type"], dict) and "logicalType" in f["type"]:
            f["type"] = f["type"]["type"]
    out = io.BytesIO()
    fastavro.schemaless_writer(out, fastavro.parse_schema(raw_schema), value)
    return serde.frame(schema_id, out.getvalue())


def _fold(pane: PaneAggregate, record_name: str, record: dict[str, Any]) -> None:
    """What the restaurant stage computes from a valid record, without Kafka."""
    if record_name == "ReviewCreated":
        entity = record["entity"]
        text = redact_pii(entity["text"]).text
        enrichment = enrich_heuristic(ReviewInput(record["event_id"], text, entity["rating"],
                                                  entity["language"]))
        lag_ms = NOW_MS - record["occurred_at"]
        assert abs(lag_ms) <= BOUNDS.max_age_ms  # a bounded lag: sums of 2^31 fit 64 bits
        pane.add_review(rating=entity["rating"], score=enrichment.score, label=enrichment.label,
                        categories=enrichment.categories, status="FALLBACK", cache_hit=False,
                        tokens_in=0, tokens_out=0, cost_micro_usd=0, processing_lag_ms=lag_ms)
    else:
        delay_ms = record["delivered_at"] - record["promised_at"]
        assert abs(delay_ms) <= 2 * DELIVERY_SPAN_MAX_MS < 2**33
        pane.add_order(delay_ms=max(0, delay_ms))


class Classifier:
    """The decode + validate + fold path over one AvroCodecs, with writer ids pre-cached."""

    def __init__(self) -> None:
        self.codecs = AvroCodecs(SETTINGS)
        self.ids: dict[tuple[str, str], int] = {}
        self.seen: dict[str, int] = {}
        self.loop = asyncio.new_event_loop()

    def schema_id(self, record_name: str, time_type: Any) -> int:
        key = (record_name, json.dumps(time_type))
        if key not in self.ids:
            self.ids[key] = len(self.ids) + 100
            self.codecs.cache.put(self.ids[key], _writer(record_name, time_type))
        return self.ids[key]

    def classify(self, record_name: str, data: bytes) -> str:
        try:
            record = self.loop.run_until_complete(self.codecs.decode(record_name, data))
            if record_name == "ReviewCreated":
                validate_review(record, bounds=BOUNDS, now_ms=NOW_MS)
            else:
                validate_order(record, bounds=BOUNDS, now_ms=NOW_MS)
        except SerdeError as exc:
            assert exc.reason in SERDE_REASONS, exc
            return exc.reason
        except Invalid as exc:
            assert exc.reason in VALIDATION_REASONS, exc
            return exc.reason
        pane = PaneAggregate()
        _fold(pane, record_name, record)
        aggregate = pane.to_record(restaurant_id=record.get("restaurant_id") or "r",
                                   window_kind="TUMBLING", window_start_ms=0, window_end_ms=60_000,
                                   closed_at_ms=NOW_MS)
        serde.encode(aggregate, serde.parse_schema(avro_schemas.schema_text("RestaurantWindowAggregate")))
        return "valid"

    def close(self) -> None:
        self.loop.run_until_complete(self.codecs.stop())
        self.loop.close()


CLASSIFIER = Classifier()
OUTCOMES: dict[str, int] = {}


def teardown_module() -> None:
    CLASSIFIER.close()
    print(f"\nclassified: {dict(sorted(OUTCOMES.items()))}")


def _check(record_name: str, value: dict[str, Any], time_type: Any) -> str:
    value = _fit(value, time_type)
    data = _bytes(record_name, value, time_type, CLASSIFIER.schema_id(record_name, time_type))
    outcome = CLASSIFIER.classify(record_name, data)
    OUTCOMES[outcome] = OUTCOMES.get(outcome, 0) + 1
    return outcome


PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(value=REVIEWS, time_type=TIME_WRITERS)
def test_every_review_is_classified_and_valid_ones_fold(value: dict[str, Any], time_type: Any) -> None:
    outcome = _check("ReviewCreated", value, time_type)
    if isinstance(time_type, dict) and time_type.get("logicalType") == "date":
        assert outcome == "logical_type_mismatch"


@PROPERTY
@given(value=orders(), time_type=TIME_WRITERS)
def test_every_order_is_classified_and_valid_ones_fold(value: dict[str, Any], time_type: Any) -> None:
    _check("OrderDelivered", value, time_type)


def test_the_generators_reach_both_outcomes() -> None:
    """Not a vacuous property: ordinary records pass and each bound is hit."""
    good = {"event_id": "e-1", "event_version": 1, "occurred_at": NOW_MS,
            "entity": {"review_id": "rv-1", "order_id": None, "user_id": "u-1",
                       "restaurant_id": "rest-1", "rating": 5, "text": "Ótimo 🍕\u202e ligue 11 98765 4321",
                       "language": "pt-BR"},
            "metadata": {"source": "t", "trace_id": "t-1", "retries": 0}}
    assert _check("ReviewCreated", good, None) == "valid"
    assert _check("ReviewCreated", good, {"type": "long", "logicalType": "timestamp-micros"}) \
        == "event_time_too_old"  # our ms read as µs: 1,000 times too early
    assert _check("ReviewCreated", {**good, "occurred_at": INT64[1]}, None) == "event_time_in_future"
    assert _check("ReviewCreated", {**good, "event_id": "e\u202e"}, None) == "invalid_id"
    order = {"event_id": "o-1", "order_id": "ord-1", "restaurant_id": "rest-1", "occurred_at": NOW_MS,
             "promised_at": NOW_MS - 60_000, "delivered_at": INT64[1],
             "metadata": {"source": "t", "trace_id": "", "retries": 0}}
    assert _check("OrderDelivered", order, None) == "invalid_delivery_time"
    assert _check("OrderDelivered", {**order, "delivered_at": NOW_MS}, "long") == "valid"
