"""Realistic sample traffic, produced the way another service would: confluent-kafka's
official ``AvroSerializer`` against the registry.

Portuguese and English reviews for ~200 restaurants with a realistic rating mix, a burst
of bad reviews for one restaurant, duplicates (the same event sent twice), late events,
reviews carrying PII, delivered orders with delays, and a few poison records (random
bytes, an unknown schema id, a rating of 9). Deterministic for a given seed.
"""

from __future__ import annotations

import random
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import avro_schemas
from streams.topics import ORDERS_DELIVERED, REVIEWS_CREATED

BURST_RESTAURANT = "rest-013"

# (rating, language, text): a mix that reads like a delivery app's feed.
TEXTS: dict[int, list[tuple[str, str]]] = {
    5: [("pt", "Comida maravilhosa, chegou quentinha e bem embalada. Recomendo!"),
        ("pt", "Melhor hambúrguer da cidade, entrega rápida."),
        ("en", "Amazing food, arrived hot and on time. Will order again!"),
        ("en", "Great taste and friendly delivery guy.")],
    4: [("pt", "Muito bom, só demorou um pouco mais que o previsto."),
        ("en", "Tasty, packaging could be better but overall good.")],
    3: [("pt", "Comida ok, nada de especial. Preço um pouco caro."),
        ("en", "It was fine, not great, a bit expensive for the portion.")],
    2: [("pt", "Demorou demais e a comida chegou fria."),
        ("pt", "A embalagem vazou e sujou tudo."),
        ("en", "Late delivery and the fries were cold."),
        ("en", "Not good. The burger was bland and overpriced.")],
    1: [("pt", "Péssimo! Encontrei um cabelo na comida. Nunca mais."),
        ("pt", "Entregador grosseiro e o pedido veio errado."),
        ("en", "Terrible. Found a cockroach in my salad, I felt sick."),
        ("en", "Food poisoning after eating here. Disgusting and dirty.")],
}
RATING_WEIGHTS = {5: 45, 4: 22, 3: 12, 2: 11, 1: 10}
PII_SUFFIXES = [" Me liga no (11) 98765-4321.", " Meu email é joao.silva@example.com.",
                " CPF 123.456.789-09 para o reembolso.", " Call me at +1 415 555 0132."]


@dataclass
class SampleStats:
    reviews: int = 0
    orders: int = 0
    duplicates: int = 0
    late: int = 0
    poison: int = 0
    event_ids: set[str] = field(default_factory=set)
    late_ids: set[str] = field(default_factory=set)  # produced minutes after occurred_at


def _review(rng: random.Random, *, restaurant: str, now_ms: int, late: bool) -> dict[str, Any]:
    if restaurant == BURST_RESTAURANT:
        rating = rng.choice([1, 1, 2])
    else:
        rating = rng.choices(list(RATING_WEIGHTS), weights=list(RATING_WEIGHTS.values()))[0]
    language, text = rng.choice(TEXTS[rating])
    if rng.random() < 0.05:
        text += rng.choice(PII_SUFFIXES)
    occurred = now_ms - (rng.randint(120_000, 300_000) if late else rng.randint(0, 1_500))
    event_id = f"evt_{uuid.UUID(int=rng.getrandbits(128)).hex[:20]}"
    return {
        "event_id": event_id,
        "event_version": 1,
        "occurred_at": occurred,
        "entity": {
            "review_id": f"rv_{rng.getrandbits(40):x}",
            "order_id": f"ord_{rng.getrandbits(40):x}",
            "user_id": f"usr_{rng.randint(1, 50_000)}",
            "restaurant_id": restaurant,
            "rating": rating,
            "text": text,
            "language": "pt-BR" if language == "pt" else "en",
        },
        "metadata": {"source": "api.review", "trace_id": f"trc_{rng.getrandbits(48):x}", "retries": 0},
    }


def _order(rng: random.Random, review: dict[str, Any], *, now_ms: int) -> dict[str, Any]:
    restaurant = review["entity"]["restaurant_id"]
    promised = now_ms - rng.randint(0, 60_000)
    if restaurant == BURST_RESTAURANT:
        late_by_ms = rng.randint(600_000, 1_800_000)
    else:
        late_by_ms = rng.randint(-300_000, 420_000)
    return {
        "event_id": f"evo_{rng.getrandbits(64):x}",
        "occurred_at": now_ms,
        "order_id": review["entity"]["order_id"],
        "restaurant_id": restaurant,
        "promised_at": promised,
        "delivered_at": promised + late_by_ms,
        "metadata": {"source": "api.orders", "trace_id": review["metadata"]["trace_id"], "retries": 0},
    }


def _poison(rng: random.Random, kind: int, serialize_review: Any, review: dict[str, Any]) -> bytes:
    if kind == 0:
        return bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 40)))  # not Avro at all
    if kind == 1:
        return struct.pack(">bI", 0, 987_654_321) + b"\x02ab"  # framed, but the id is unknown
    bad = {**review, "entity": {**review["entity"], "rating": 9}}  # schema-valid, value-invalid
    return serialize_review(bad)


def produce_sample(
    *,
    bootstrap_servers: str,
    registry_url: str,
    count: int,
    rate_per_s: float,
    seed: int = 7,
    restaurants: int = 200,
    poison_every: int = 400,
    duplicate_share: float = 0.02,
    late_share: float = 0.01,
    orders_share: float = 0.5,
    on_progress: Any = None,
    stop: threading.Event | None = None,
) -> SampleStats:
    """Produce ``count`` reviews (plus orders, duplicates and poison) at about ``rate_per_s``;
    ``stop`` ends it early (a caller that produces until its own condition holds)."""
    from confluent_kafka import Producer
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroSerializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    rng = random.Random(seed)
    registry = SchemaRegistryClient({"url": registry_url})
    review_ser = AvroSerializer(registry, avro_schemas.schema_text("ReviewCreated"))
    order_ser = AvroSerializer(registry, avro_schemas.schema_text("OrderDelivered"))
    review_ctx = SerializationContext(REVIEWS_CREATED, MessageField.VALUE)
    order_ctx = SerializationContext(ORDERS_DELIVERED, MessageField.VALUE)
    producer = Producer({"bootstrap.servers": bootstrap_servers, "linger.ms": 5})
    names = [f"rest-{i:03d}" for i in range(1, restaurants + 1)]
    stats = SampleStats()
    started = time.monotonic()

    def serialize_review(value: dict[str, Any]) -> bytes:
        return review_ser(value, review_ctx)

    for i in range(count):
        if stop is not None and stop.is_set():
            break
        now_ms = int(time.time() * 1000)
        burst = (count // 3) <= i < (count // 3 + max(20, count // 20))
        restaurant = BURST_RESTAURANT if burst and rng.random() < 0.7 else rng.choice(names)
        late = rng.random() < late_share
        review = _review(rng, restaurant=restaurant, now_ms=now_ms, late=late)
        payload = serialize_review(review)
        key = review["entity"]["review_id"].encode()
        producer.produce(REVIEWS_CREATED, key=key, value=payload)
        stats.reviews += 1
        stats.late += late
        stats.event_ids.add(review["event_id"])
        if late:
            stats.late_ids.add(review["event_id"])
        if rng.random() < duplicate_share:
            producer.produce(REVIEWS_CREATED, key=key, value=payload)  # at-least-once upstream
            stats.duplicates += 1
        if rng.random() < orders_share:
            order = order_ser(_order(rng, review, now_ms=now_ms), order_ctx)
            producer.produce(ORDERS_DELIVERED, key=key, value=order)
            stats.orders += 1
        if poison_every and i % poison_every == poison_every - 1:
            poison = _poison(rng, stats.poison % 3, serialize_review, review)
            producer.produce(REVIEWS_CREATED, key=b"poison", value=poison)
            stats.poison += 1
        producer.poll(0)
        ahead_s = (i + 1) / rate_per_s - (time.monotonic() - started)
        if ahead_s > 0:
            time.sleep(ahead_s)  # pacing to the requested rate, not waiting for a result
        if on_progress is not None and (i + 1) % 500 == 0:
            on_progress(stats)
    producer.flush(30)
    registry.close()
    return stats
