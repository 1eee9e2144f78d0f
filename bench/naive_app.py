"""The baseline: the same windowed aggregation written the naive Faust way, no LLM.

``group_by`` restaurant (a repartition hop), then one windowed table write per event
(count and rating sum per restaurant per tumbling window): what DESIGN §11 measured at
~1.2k ev/s. Run by ``bench.pipeline`` as ``python -m bench.naive_app worker``; it is
configured from ``BENCH_NAIVE_*`` variables because Faust's CLI owns the argument list.
"""

from __future__ import annotations

import io
import json
import os
from datetime import timedelta
from typing import Any

import faust
from fastavro import parse_schema, schemaless_reader

import avro_schemas
from streams.topics import REVIEWS_CREATED

READER = parse_schema(json.loads(avro_schemas.schema_text("ReviewCreated")))

app = faust.App(
    os.environ.get("BENCH_NAIVE_APP_ID", "reviewpulse-bench-naive"),
    broker=f"kafka://{os.environ.get('BENCH_NAIVE_BOOTSTRAP', '127.0.0.1:9092')}",
    store="rocksdb://",
    datadir=os.environ.get("BENCH_NAIVE_DATA_DIR", "data/bench-naive"),
    topic_partitions=int(os.environ.get("BENCH_NAIVE_PARTITIONS", "4")),
    broker_session_timeout=6.0,  # a first group join on Tansu takes half of it (DESIGN §11)
    broker_heartbeat_interval=1.0,
    consumer_auto_offset_reset="earliest",
    web_bind="127.0.0.1",
    web_host="127.0.0.1",
    web_port=int(os.environ.get("BENCH_NAIVE_WEB_PORT", "6067")),
    value_serializer="raw",
    key_serializer="raw",
)
reviews = app.topic(REVIEWS_CREATED, key_type=bytes, value_type=bytes,
                    key_serializer="raw", value_serializer="raw")
# [review count, rating sum] per restaurant per 60 s tumbling window.
window_totals = app.Table("naive-window-totals", default=lambda: [0, 0]).tumbling(
    timedelta(seconds=60), expires=timedelta(minutes=15))


def decode(value: bytes) -> dict[str, Any]:
    """Confluent framing (magic byte + 4-byte id) then Avro; the bench writes one schema."""
    return schemaless_reader(io.BytesIO(value[5:]), READER, READER)


def restaurant_of(value: bytes) -> bytes:
    return decode(value)["entity"]["restaurant_id"].encode()


@app.agent(reviews)
async def aggregate(stream: Any) -> None:
    async for value in stream.group_by(restaurant_of, name="naive-by-restaurant"):
        review = decode(value)
        restaurant = review["entity"]["restaurant_id"]
        count, rating_sum = window_totals[restaurant].current()
        window_totals[restaurant] = [count + 1, rating_sum + review["entity"]["rating"]]


if __name__ == "__main__":
    app.main()
