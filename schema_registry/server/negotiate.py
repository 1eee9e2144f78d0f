"""Content negotiation of the embedded registry: the answer's media type follows ``Accept``.

Confluent Schema Registry (JAX-RS) declares what it produces with a server-side quality:
``application/vnd.schemaregistry.v1+json`` (1.0), ``application/vnd.schemaregistry+json``
(0.9) and ``application/json`` (0.5). The answer is the type with the highest product of
the client's ``q`` and that quality; so ``Accept: application/json`` gets
``application/json``, while ``*/*`` or no header at all get the v1 type. Karapace does the
same. A request that accepts none of the three gets 406 with Confluent's error body.
"""

from __future__ import annotations

V1 = "application/vnd.schemaregistry.v1+json"
VND = "application/vnd.schemaregistry+json"
JSON = "application/json"

# (media type, server quality), in Confluent's order of preference.
PRODUCES: tuple[tuple[str, float], ...] = ((V1, 1.0), (VND, 0.9), (JSON, 0.5))


def _ranges(accept: str) -> list[tuple[str, float]]:
    """``Accept`` as (media range, q) pairs; a malformed q counts as 1 (lenient, like Jersey)."""
    ranges = []
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        q = 1.0
        for param in params:
            name, _, value = param.partition("=")
            if name.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 1.0
        ranges.append((media.lower(), q))
    return ranges


def _matches(media_range: str, media_type: str) -> bool:
    if media_range in ("*/*", "*"):
        return True
    kind, _, subtype = media_range.partition("/")
    type_kind, _, type_subtype = media_type.partition("/")
    return kind == type_kind and subtype in ("*", type_subtype)


def _client_q(ranges: list[tuple[str, float]], media_type: str) -> float:
    """The q of the most specific range matching ``media_type`` (RFC 9110 §12.5.1)."""
    best: tuple[int, float] | None = None
    for media_range, q in ranges:
        if not _matches(media_range, media_type):
            continue
        specificity = 0 if media_range in ("*/*", "*") else 1 if media_range.endswith("/*") else 2
        if best is None or specificity > best[0]:
            best = (specificity, q)
    return best[1] if best else 0.0


def negotiate(accept: str | None) -> str | None:
    """The media type to answer with, or None when ``accept`` allows none we produce."""
    if accept is None or not accept.strip():
        return V1
    ranges = _ranges(accept)
    scored = [(_client_q(ranges, media_type) * quality, media_type) for media_type, quality in PRODUCES]
    score, media_type = max(scored, key=lambda pair: pair[0])  # ties: the first (preferred) one
    return media_type if score > 0 else None
