"""Bounded LRU cache of LLM enrichments keyed by normalised text, model and prompt version.

Bounded in entries and in bytes (issue 30, finding 9: a reply draft has no length cap of its
own, so a count says little of the memory).

Short reviews repeat ("Ótimo!", "Muito bom") and a reprocess run re-reads old text: a
hit costs no tokens. The key includes model and prompt version so that changing either
(seed 000 §5.2, drift) never serves an answer produced under the old ones.
"""

from __future__ import annotations

import hashlib
import re

from agents.llm.labels import Enrichment
from streams.memory import ByteLRU, str_bytes

_WHITESPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Casefold, collapse whitespace runs to one space, strip: the cache's notion of same."""
    return _WHITESPACE.sub(" ", text.casefold()).strip()


def cache_key(text: str, *, model: str, prompt_version: str) -> str:
    """sha256 hex of normalised text, model and prompt version (NUL separated)."""
    material = "\x00".join((normalise_text(text), model, prompt_version))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


# An Enrichment besides its strings: the frozen dataclass, its label, float and tuple, and
# the OrderedDict node. tracemalloc measured ~420 bytes (tests/unit/llm); rounded up.
ENRICHMENT_OVERHEAD_BYTES = 512
CATEGORY_BYTES = 64  # one category name (a short str) in the tuple


def enrichment_bytes(key: str, value: Enrichment) -> int:
    """What one cache entry costs, estimated without walking it."""
    return (str_bytes(key) + str_bytes(value.reply_draft) + ENRICHMENT_OVERHEAD_BYTES
            + CATEGORY_BYTES * len(value.categories))


class ResultCache:
    """LRU of at most ``max_entries`` enrichments and ``max_bytes``, with hit and miss counters."""

    def __init__(self, *, max_entries: int = 10_000, max_bytes: int = 32 * 1024 * 1024) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._entries: ByteLRU[str, Enrichment] = ByteLRU(part="llm_cache", max_bytes=max_bytes,
                                                         max_entries=max_entries)
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes(self) -> int:
        return self._entries.bytes

    @property
    def evicted(self) -> int:
        return self._entries.evicted

    def get(self, key: str) -> Enrichment | None:
        """The cached enrichment (now most recently used), counting a hit or a miss."""
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self.hits += 1
        return value

    def put(self, key: str, value: Enrichment) -> None:
        """Store ``value``, evicting the least recently used entries past either bound."""
        self._entries.put(key, value, enrichment_bytes(key, value))

    def clear(self) -> None:
        self._entries.clear()
