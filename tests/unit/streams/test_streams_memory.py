"""The byte-bounded primitives: whatever the mix of entry sizes, the bytes held stay under the
bound, the oldest go first, and the counts add up (issue 30, finding 9)."""

from __future__ import annotations

import tracemalloc

from hypothesis import given, settings
from hypothesis import strategies as st

from streams import metrics
from streams.memory import ENTRY_OVERHEAD_BYTES, RING_OVERHEAD_BYTES, ByteLRU, Rings, str_bytes

sizes = st.lists(st.integers(0, 5_000), min_size=1, max_size=300)


@given(sizes=sizes, max_bytes=st.integers(1, 200_000))
@settings(max_examples=200, deadline=None)
def test_byte_lru_holds_the_newest_entries_that_fit_and_counts_the_rest(sizes: list[int],
                                                                        max_bytes: int) -> None:
    lru: ByteLRU[int, int] = ByteLRU(part="llm_cache", max_bytes=max_bytes)
    for i, size in enumerate(sizes):
        lru.put(i, i, size)
        assert lru.bytes <= max_bytes
    held = [i for i in range(len(sizes)) if i in lru]
    assert lru.bytes == sum(sizes[i] + ENTRY_OVERHEAD_BYTES for i in held)
    assert len(held) + lru.evicted == len(sizes)
    # Oldest first: what is held is a run of the newest puts (an entry larger than the whole
    # bound is refused on its own and leaves the others alone).
    if held:
        newest_run = [i for i in range(held[0], len(sizes)) if sizes[i] + ENTRY_OVERHEAD_BYTES <= max_bytes]
        assert held == newest_run


def test_byte_lru_evicts_the_least_recently_used_and_reports_its_bytes() -> None:
    lru: ByteLRU[str, str] = ByteLRU(part="llm_cache", max_bytes=3 * (100 + ENTRY_OVERHEAD_BYTES))
    for key in "abc":
        lru.put(key, key, 100)
    assert lru.get("a") == "a"  # now the most recently used
    lru.put("d", "d", 100)
    assert "b" not in lru and all(k in lru for k in "acd")
    assert lru.evicted == 1
    assert metrics.REGISTRY.get_sample_value("reviewpulse_memory_bytes", {"part": "llm_cache"}) == lru.bytes


def test_byte_lru_entry_count_bound_still_applies() -> None:
    lru: ByteLRU[int, int] = ByteLRU(part="llm_cache", max_bytes=10**9, max_entries=2)
    for i in range(5):
        lru.put(i, i, 1)
    assert len(lru) == 2 and lru.evicted == 3 and 4 in lru and 3 in lru


@given(appends=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 3_000)), min_size=1, max_size=400),
       max_bytes=st.integers(1, 100_000), per_key=st.integers(1, 8))
@settings(max_examples=200, deadline=None)
def test_rings_stay_under_their_bytes_and_evict_the_oldest_of_all_keys(
        appends: list[tuple[int, int]], max_bytes: int, per_key: int) -> None:
    rings = Rings(part="web_history", max_bytes=max_bytes, per_key=per_key)
    for n, (key, size) in enumerate(appends):
        rings.append(f"r{key}", b"x" * size, tag=n)
        assert rings.bytes <= max_bytes
    held = {(k, e) for k in rings for e in range(len(rings.entries(k)))}
    live = sum(len(rings.entries(k)) for k in rings)
    assert live == len(rings) == len(held)
    assert rings.bytes == (sum(len(b) + ENTRY_OVERHEAD_BYTES for k in rings for b in rings.entries(k))
                           + sum(RING_OVERHEAD_BYTES + str_bytes(k) for k in rings))
    # Every append is held, dropped by its key's count, or evicted for bytes.
    per: dict[str, int] = {}
    for key, _ in appends:
        per[f"r{key}"] = per.get(f"r{key}", 0) + 1
    dropped_by_count = sum(max(0, n - per_key) for n in per.values())
    assert live + rings.evicted <= len(appends)
    assert live + rings.evicted + dropped_by_count >= len(appends)
    # Oldest first across keys: nothing evicted is newer than anything held.
    if rings.evicted and live:
        oldest_held = min(rings._rings[k][0].tag for k in rings)
        assert rings.evicted_tag is not None and rings.evicted_tag < oldest_held


def test_rings_keep_per_key_order_and_count() -> None:
    rings = Rings(part="web_recent", max_bytes=10**6, per_key=3)
    for i in range(5):
        rings.append("a", str(i).encode())
    assert rings.entries("a") == [b"2", b"3", b"4"]
    assert rings.evicted == 0  # a count drop is not a memory eviction


def test_rings_dead_slots_are_compacted() -> None:
    rings = Rings(part="web_recent", max_bytes=10**9, per_key=1)
    for i in range(10_000):
        rings.append("hot", str(i).encode())
    assert len(rings._order) <= 2 * 1024 + 2
    assert rings.entries("hot") == [b"9999"]


def test_the_overheads_are_not_below_what_python_allocates() -> None:
    """The per-entry and per-ring constants cover the real objects (tracemalloc)."""
    payloads = [b"x" * 700 for _ in range(2_000)]
    rings = Rings(part="web_history", max_bytes=10**9, per_key=60)
    tracemalloc.start()
    for i, data in enumerate(payloads):
        rings.append(f"restaurant-{i % 200:05d}", data, tag=i)
    allocated, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    counted_without_payloads = rings.bytes - sum(len(p) for p in payloads)
    assert allocated <= counted_without_payloads, (allocated, counted_without_payloads)
