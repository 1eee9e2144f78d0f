"""Input records as the producing services send them: one factory per record type.

``ReviewCreated`` and ``OrderDelivered`` dicts (avro_schemas), ids derived from a tag and a
sequence number so a test can name what it sent (``evt-<tag>-<n>``, ``rv-``, ``trc-``).
A test passes only what it is about; the rest is a valid, ordinary record.
"""

from __future__ import annotations

import time
from typing import Any

ORDER_LATE_MS = 60_000  # an ordinary order is delivered a minute after its promise


def now_ms() -> int:
    return int(time.time() * 1000)


def review_created(tag: str, n: int = 0, *, restaurant_id: str, occurred_at: int | None = None,
                   rating: int | None = None, text: str | None = None, language: str | None = "pt-BR",
                   order_id: str | None = None, user_id: str = "u", source: str = "test",
                   review_id: str | None = None, **top: Any) -> dict[str, Any]:
    """A ``ReviewCreated`` record; ``top`` replaces top-level fields (``metadata``, ``event_id``...).

    By default ratings cycle 1-5 with ``n`` and every other text is negative, so a run of
    them exercises both labels and the alert rules."""
    record: dict[str, Any] = {
        "event_id": f"evt-{tag}-{n}", "event_version": 1,
        "occurred_at": now_ms() if occurred_at is None else occurred_at,
        "entity": {"review_id": review_id or f"rv-{tag}-{n}", "order_id": order_id, "user_id": user_id,
                   "restaurant_id": restaurant_id, "rating": 1 + n % 5 if rating is None else rating,
                   "text": f"Pedido {n} {tag}: " + ("ótimo" if n % 2 else "frio e atrasado") if text is None
                   else text,
                   "language": language},
        "metadata": {"source": source, "trace_id": f"trc-{tag}-{n}", "retries": 0},
    }
    record.update(top)
    return record


def order_delivered(tag: str, n: int = 0, *, restaurant_id: str, occurred_at: int | None = None,
                    late_ms: int = ORDER_LATE_MS, **top: Any) -> dict[str, Any]:
    """An ``OrderDelivered`` record delivered at ``occurred_at``, ``late_ms`` after its promise."""
    at = now_ms() if occurred_at is None else occurred_at
    record: dict[str, Any] = {
        "event_id": f"evo-{tag}-{n}", "occurred_at": at, "order_id": f"o-{tag}-{n}",
        "restaurant_id": restaurant_id, "promised_at": at - late_ms, "delivered_at": at,
        "metadata": {"source": "test", "trace_id": f"tro-{tag}-{n}", "retries": 0},
    }
    record.update(top)
    return record
