"""Byte bounds of what a worker keeps in memory: a bounded LRU, bounded rings, their metrics.

Issue 30, finding 9: the caches, queues and histories were bounded by counts, and a count
says nothing of bytes (5,000 restaurants x 60 windows of ~4 KB each is ~1.15 GiB, past the
chart's 1 GiB limit, and the OOM kill is a SIGKILL). Each part now has its own bound in
bytes (a ``REVIEWPULSE_*_MAX_BYTES`` setting) and reports what it holds in
``reviewpulse_memory_bytes{part}`` and what it let go in ``reviewpulse_memory_evicted_total{part}``.

Sizes are cheap, conservative estimates, never a walk of the object graph: the length of an
encoded form the caller already has (or makes once), ``sys.getsizeof`` of a ``str`` (O(1):
a string's size is its header plus length times its character width), plus a fixed
overhead per entry measured with tracemalloc (``tests/unit/streams/test_streams_memory.py``
checks that the estimate is never below what Python really allocates).
"""

from __future__ import annotations

import sys
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from typing import Any, Generic, TypeVar

import orjson

from streams import metrics

K = TypeVar("K")
V = TypeVar("V")

# What one entry costs besides its payload: the OrderedDict node or _Entry object, the
# tuple holding value and size, the deque slot, the key's own str header. tracemalloc
# measured 150-190 bytes; rounded up.
ENTRY_OVERHEAD_BYTES = 256
# A ring's own cost: an empty deque is one 64-slot block (~630 bytes), plus its dict slot.
RING_OVERHEAD_BYTES = 768


def compact_json(value: Any) -> bytes:
    """``value`` as JSON bytes that occupy their length. orjson (3.13) returns its output in
    the buffer it wrote it in, at least 4 KiB (8 KiB for a ~800-byte record, measured with
    tracemalloc): kept long, a small record costs ten times its length. One copy trims it."""
    return memoryview(orjson.dumps(value)).tobytes()


def str_bytes(text: str | None) -> int:
    """Bytes a str occupies (header + length x its width, 1, 2 or 4): O(1), no walk."""
    return 0 if text is None else sys.getsizeof(text)


class ByteLRU(Generic[K, V]):
    """A mapping bounded in bytes (and optionally in entries); past a bound the least
    recently used entries go first. Each entry's size is the caller's estimate."""

    def __init__(self, *, part: str, max_bytes: int, max_entries: int | None = None,
                 on_evict: Callable[[K, V], None] | None = None) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be at least 1")
        self.part = part
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._on_evict = on_evict
        self._entries: OrderedDict[K, tuple[V, int]] = OrderedDict()
        self.bytes = 0
        self.evicted = 0
        self._gauge = metrics.MEMORY_BYTES.labels(part)
        self._evictions = metrics.MEMORY_EVICTED.labels(part)

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries

    def get(self, key: K) -> V | None:
        """The value (now most recently used), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: K, value: V, size_bytes: int) -> None:
        """Store ``value``, counted as ``size_bytes`` plus :data:`ENTRY_OVERHEAD_BYTES`; evict
        the least recently used while over a bound. An entry larger than the whole bound is
        not kept (counted as evicted)."""
        size = size_bytes + ENTRY_OVERHEAD_BYTES
        old = self._entries.pop(key, None)
        if old is not None:
            self.bytes -= old[1]
        if size > self.max_bytes:
            self._evicted(1)
        else:
            self._entries[key] = (value, size)
            self.bytes += size
            n = 0
            while self.bytes > self.max_bytes or (
                    self.max_entries is not None and len(self._entries) > self.max_entries):
                gone, (value_gone, dropped) = self._entries.popitem(last=False)
                self.bytes -= dropped
                n += 1
                if self._on_evict is not None:
                    self._on_evict(gone, value_gone)
            self._evicted(n)
        self._gauge.set(self.bytes)

    def pop(self, key: K) -> V | None:
        entry = self._entries.pop(key, None)
        if entry is None:
            return None
        self.bytes -= entry[1]
        self._gauge.set(self.bytes)
        return entry[0]

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0
        self._gauge.set(0)

    def _evicted(self, n: int) -> None:
        if n:
            self.evicted += n
            self._evictions.inc(n)


class _Entry:
    __slots__ = ("data", "key", "size", "tag")

    def __init__(self, key: str, data: bytes, size: int, tag: int) -> None:
        self.key, self.data, self.size, self.tag = key, data, size, tag


class Rings:
    """Per-key rings of encoded entries, at most ``per_key`` each, bounded in bytes over all
    keys together: past ``max_bytes`` the oldest entry of all goes, whatever its key (a
    quiet key's old entries before a busy key's new ones). A key whose ring empties is
    dropped. ``tag`` is an int the caller orders entries by (a window start);
    :attr:`evicted_tag` is the largest one the byte bound let go.

    The global order is a deque of the entries; an entry a ring dropped by count stays in it
    as a dead slot (its payload released) until it reaches the front, and the deque is
    rebuilt when dead slots outnumber live ones, so it never grows past twice the live count.
    """

    def __init__(self, *, part: str, max_bytes: int, per_key: int) -> None:
        if max_bytes < 1 or per_key < 1:
            raise ValueError("max_bytes and per_key must be at least 1")
        self.part = part
        self.max_bytes = max_bytes
        self.per_key = per_key
        self._rings: dict[str, deque[_Entry]] = {}
        self._order: deque[_Entry] = deque()
        self._dead = 0
        self.bytes = 0
        self.evicted = 0
        self.evicted_tag: int | None = None
        self._gauge = metrics.MEMORY_BYTES.labels(part)
        self._evictions = metrics.MEMORY_EVICTED.labels(part)

    def __len__(self) -> int:
        """Live entries."""
        return len(self._order) - self._dead

    def keys(self) -> list[str]:
        return list(self._rings)

    def entries(self, key: str) -> list[bytes]:
        """The key's payloads, oldest first."""
        return [e.data for e in self._rings.get(key, ()) if e.data is not None]

    def last_tag(self, key: str) -> int | None:
        ring = self._rings.get(key)
        return ring[-1].tag if ring else None

    def append(self, key: str, data: bytes, *, tag: int = 0) -> None:
        ring = self._rings.get(key)
        if ring is None:
            ring = self._rings[key] = deque()
            self.bytes += RING_OVERHEAD_BYTES + str_bytes(key)
        entry = _Entry(key, data, len(data) + ENTRY_OVERHEAD_BYTES, tag)
        ring.append(entry)
        self._order.append(entry)
        self.bytes += entry.size
        if len(ring) > self.per_key:  # the count bound: not an eviction for memory
            self._release(ring.popleft())
            self._dead += 1
        self._evict()
        if self._dead > 1024 and self._dead * 2 > len(self._order):
            self._order = deque(e for e in self._order if e.data is not None)
            self._dead = 0
        self._gauge.set(self.bytes)

    def _release(self, entry: _Entry) -> None:
        entry.data = None  # type: ignore[assignment]  # the payload goes now; the slot later
        self.bytes -= entry.size

    def _evict(self) -> None:
        n = 0
        while self.bytes > self.max_bytes and self._order:
            entry = self._order.popleft()
            if entry.data is None:
                self._dead -= 1
                continue
            ring = self._rings[entry.key]
            oldest = ring.popleft()
            assert oldest is entry, "a ring's order and the global order disagree"
            self._release(entry)
            if not ring:
                del self._rings[entry.key]
                self.bytes -= RING_OVERHEAD_BYTES + str_bytes(entry.key)
            self.evicted_tag = entry.tag if self.evicted_tag is None else max(self.evicted_tag, entry.tag)
            n += 1
        if n:
            self.evicted += n
            self._evictions.inc(n)

    def clear(self) -> None:
        self._rings.clear()
        self._order.clear()
        self._dead = 0
        self.bytes = 0
        self._gauge.set(0)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._rings)
