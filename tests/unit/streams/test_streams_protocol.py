"""The by-restaurant and retry payloads (streams/protocol.py): what decode writes, the
restaurant stage reads back exactly, and anything else is a ProtocolError.

The payload is JSON written by orjson (compact UTF-8, not ``\\u`` escapes). A review's text
can be any Unicode decode accepted, and the producer's key, value and headers any bytes:
a difference on the way back would dead-letter or mislabel a real review, and the dead
letter of a later stage must still hold the producer's bytes exactly.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.protocol import (
    ORDER,
    RETRY,
    RETRY_REASON_MAX_CHARS,
    REVIEW,
    Item,
    Origin,
    ProtocolError,
    Tick,
    kind_of,
    read_item,
    read_tick,
    write_item,
    write_tick,
)

# What fastavro can hand decode: strings are valid UTF-8 (no lone surrogates), longs 64-bit.
texts = st.text(st.characters(exclude_categories=("Cs",)), max_size=200)
longs = st.integers(min_value=-(2**63), max_value=2**63 - 1)
maybe_bytes = st.none() | st.binary(max_size=300)


@st.composite
def items(draw: st.DrawFn) -> Item:
    kind = draw(st.sampled_from([REVIEW, ORDER, RETRY]))
    record: dict = {"event_id": draw(texts), "occurred_at": draw(longs),
                    "metadata": {"trace_id": draw(texts), "source": draw(st.none() | texts)}}
    if kind == ORDER:
        record.update(order_id=draw(texts), restaurant_id=draw(texts), promised_at=draw(longs),
                      delivered_at=draw(longs))
    else:
        record["entity"] = {"review_id": draw(texts), "user_id": draw(texts), "order_id": draw(texts),
                            "restaurant_id": draw(texts), "rating": draw(st.integers(1, 5)),
                            "text": draw(texts), "language": draw(st.none() | texts)}
    origin = Origin(topic=draw(texts), partition=draw(st.integers(0, 1000)), offset=draw(longs),
                    key=draw(maybe_bytes), value=draw(maybe_bytes),
                    headers=tuple(draw(st.lists(st.tuples(texts, maybe_bytes), max_size=4))),
                    timestamp_ms=draw(st.none() | longs))
    item = Item(kind=kind, record=record, origin=origin)
    if kind == RETRY:
        item.attempt = draw(st.integers(1, 50))
        item.not_before_ms = draw(longs)
        item.pane_start_ms = draw(st.none() | longs)
        item.late = draw(st.booleans())
        item.first_failure_ms = draw(st.none() | longs)
        item.retry_reason = draw(st.none() | texts)
    return item


@given(items())
def test_an_item_reads_back_exactly_as_written(item: Item) -> None:
    data = write_item(item)
    assert kind_of(data) == item.kind  # the cheap prefix read still finds the kind
    assert read_item(data) == item


@given(st.binary(max_size=400) | st.text(max_size=400).map(str.encode))
def test_any_other_bytes_are_a_protocol_error_or_an_item(data: bytes) -> None:
    """A forged or corrupt record is dead-lettered as bad_internal_record, never a crash."""
    try:
        item = read_item(data)
    except ProtocolError as exc:
        assert exc.reason == "bad_internal_record"
    else:
        assert read_item(write_item(item)) == item


@given(st.dictionaries(texts, longs, min_size=1, max_size=8),
       st.dictionaries(texts, st.integers(1, 64), max_size=4), texts, longs)
def test_a_tick_reads_back_exactly_as_written(marks: dict, partitions: dict, sender: str, at: int) -> None:
    tick = Tick(sender=sender, sent_at_ms=at, marks=marks, partitions=partitions)
    assert read_tick(write_tick(tick)) == tick


def test_nan_and_numbers_beyond_64_bits_are_refused_on_read() -> None:
    """Python's json read these; orjson refuses them, so they are a ProtocolError here."""
    base = b'{"k":"order","r":{"event_id":"e","occurred_at":%s,"metadata":{"trace_id":"t"},' \
           b'"order_id":"o","restaurant_id":"r","promised_at":1,"delivered_at":2},"o":["t",0,0,null]}'
    assert read_item(base % b"1").kind == ORDER
    for bad in (b"NaN", b"Infinity", str(2**64).encode()):
        try:
            read_item(base % bad)
        except ProtocolError:
            continue
        raise AssertionError(f"{bad!r} was read")


def test_a_retry_reason_is_bounded_and_only_text() -> None:
    import orjson

    origin = Origin(topic="reviews.created", partition=0, offset=1, key=None, value=b"v")
    record = {"event_id": "e", "occurred_at": 1, "metadata": {"trace_id": "t"},
              "entity": {"review_id": "r", "user_id": "u", "order_id": None, "restaurant_id": "rest-1",
                         "rating": 3, "text": "x", "language": None}}
    payload = orjson.loads(write_item(Item(kind=RETRY, record=record, origin=origin, retry_reason="500")))
    long = read_item(orjson.dumps({**payload, "why": "e" * 10_000}))
    assert long.retry_reason == "e" * RETRY_REASON_MAX_CHARS
    assert read_item(orjson.dumps({**payload, "why": {"no": "text"}})).retry_reason is None
    assert read_item(orjson.dumps({k: v for k, v in payload.items() if k != "why"})).retry_reason is None
