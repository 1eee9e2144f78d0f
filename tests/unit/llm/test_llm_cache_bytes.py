"""The enrichment result cache is bounded in bytes as well as entries (issue 30, finding 9)."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from agents.llm.cache import ResultCache, cache_key, enrichment_bytes
from agents.llm.labels import Enrichment


def enrichment(reply: str) -> Enrichment:
    return Enrichment(label="NEGATIVE", score=-0.5, categories=("food_quality", "delivery_time"),
                      reply_draft=reply)


@given(replies=st.lists(st.text(max_size=4_000), min_size=1, max_size=80))
@settings(max_examples=60, deadline=None)
def test_long_reply_drafts_are_held_under_the_bound_oldest_evicted(replies: list[str]) -> None:
    cache = ResultCache(max_entries=10_000, max_bytes=64 * 1024)
    keys = [cache_key(f"review {i}", model="m", prompt_version="v") for i in range(len(replies))]
    for key, reply in zip(keys, replies, strict=True):
        cache.put(key, enrichment(reply))
        assert cache.bytes <= 64 * 1024
    assert len(cache) + cache.evicted == len(replies)
    held = [i for i, k in enumerate(keys) if k in cache._entries]
    assert held == list(range(len(keys) - len(held), len(keys)))  # the newest; the oldest went
    assert cache.get(keys[-1]) is not None  # any one entry (<= ~17 KB) fits the bound


def test_the_entry_estimate_is_not_below_what_python_allocates() -> None:
    replies = [("Sentimos muito pelo atraso 😀 " * 20)[: 50 + i % 400] for i in range(2_000)]
    keys = [cache_key(f"review {i}", model="m", prompt_version="v") for i in range(2_000)]
    cache = ResultCache(max_entries=10_000, max_bytes=10**9)
    tracemalloc.start()
    for key, reply in zip(keys, replies, strict=True):
        cache.put(key, enrichment(reply))  # the reply and key strs already exist: counted anyway
    allocated, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    payloads = sum(enrichment_bytes(k, enrichment(r)) for k, r in zip(keys, replies, strict=True))
    assert allocated + sum(map(len, replies)) <= cache.bytes <= 4 * (allocated + payloads)
