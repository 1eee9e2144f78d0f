"""Benchmark traffic: reviews produced like another service would (confluent-kafka + AvroSerializer).

Unlike ``streams.dev.sample`` every review text is unique (a word suffix, no digits, so
PII redaction cannot fold two texts into one): the result cache and in-batch
de-duplication would otherwise answer almost every review without an LLM call, and the
LLM figures would measure nothing. No duplicates, late events, orders or poison: the
counts must be exact (every review produced yields exactly one ``reviews.enriched``).
"""

from __future__ import annotations

import random
import time
import uuid
from typing import Any

import avro_schemas
from streams.dev.sample import RATING_WEIGHTS, TEXTS
from streams.topics import REVIEWS_CREATED

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def word(n: int) -> str:
    """A unique lowercase word for ``n`` (base 26, at least 4 letters)."""
    out = []
    for _ in range(4):
        n, rem = divmod(n, 26)
        out.append(LETTERS[rem])
    while n:
        n, rem = divmod(n, 26)
        out.append(LETTERS[rem])
    return "".join(reversed(out))


class ReviewProducer:
    """Builds and produces unique reviews; ``next_id`` keeps texts unique across calls."""

    def __init__(self, *, bootstrap: str, registry_url: str, restaurants: int = 200,
                 seed: int = 11, linger_ms: int = 1) -> None:
        from confluent_kafka import Producer
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroSerializer
        from confluent_kafka.serialization import MessageField, SerializationContext

        self.rng = random.Random(seed)
        self.names = [f"rest-{i:03d}" for i in range(1, restaurants + 1)]
        registry = SchemaRegistryClient({"url": registry_url})
        self._ser = AvroSerializer(registry, avro_schemas.schema_text("ReviewCreated"))
        self._ctx = SerializationContext(REVIEWS_CREATED, MessageField.VALUE)
        # linger 1 ms: the latency run measures the pipeline, not the producer's batching.
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": linger_ms,
                                  "queue.buffering.max.messages": 1_000_000})
        self.next_id = 0

    def review(self, now_ms: int) -> dict[str, Any]:
        rng = self.rng
        rating = rng.choices(list(RATING_WEIGHTS), weights=list(RATING_WEIGHTS.values()))[0]
        language, text = rng.choice(TEXTS[rating])
        self.next_id += 1
        return {
            "event_id": f"bench_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}",
            "event_version": 1,
            "occurred_at": now_ms,
            "entity": {
                "review_id": f"rv_{rng.getrandbits(40):x}",
                "order_id": f"ord_{rng.getrandbits(40):x}",
                "user_id": f"usr_{rng.randint(1, 50_000)}",
                "restaurant_id": rng.choice(self.names),
                "rating": rating,
                "text": f"{text} ref {word(self.next_id)}",
                "language": "pt-BR" if language == "pt" else "en",
            },
            "metadata": {"source": "bench", "trace_id": f"trc_{rng.getrandbits(48):x}", "retries": 0},
        }

    def produce(self, count: int) -> None:
        """``count`` reviews as fast as this process can serialize them."""
        for _ in range(count):
            self._send(self.review(int(time.time() * 1000)))
        self.producer.flush(60)

    def produce_paced(self, *, rate_per_s: float, duration_s: float, tick_s: float = 0.01) -> int:
        """A steady ``rate_per_s`` for ``duration_s``: a small burst every ``tick_s``."""
        started = time.monotonic()
        sent = 0
        while (elapsed := time.monotonic() - started) < duration_s:
            due = int(elapsed * rate_per_s) + 1
            while sent < due:
                self._send(self.review(int(time.time() * 1000)))
                sent += 1
            self.producer.poll(0)
            ahead_s = sent / rate_per_s - (time.monotonic() - started)
            if ahead_s > 0:
                time.sleep(min(ahead_s, tick_s))
        self.producer.flush(60)
        return sent

    def _send(self, review: dict[str, Any]) -> None:
        payload = self._ser(review, self._ctx)
        key = review["entity"]["review_id"].encode()
        while True:
            try:
                self.producer.produce(REVIEWS_CREATED, key=key, value=payload)
                return
            except BufferError:
                self.producer.poll(0.01)
