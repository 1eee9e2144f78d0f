"""Bounded LRU cache of LLM enrichments keyed by normalised text, model and prompt version.

Short reviews repeat ("Ótimo!", "Muito bom") and a reprocess run re-reads old text: a
hit costs no tokens. The key includes model and prompt version so that changing either
(seed 000 §5.2, drift) never serves an answer produced under the old ones.
"""

from __future__ import annotations

import hashlib
import re
from collections import OrderedDict

from agents.llm.labels import Enrichment

_WHITESPACE = re.compile(r"\s+")


def normalise_text(text: str) -> str:
    """Casefold, collapse whitespace runs to one space, strip: the cache's notion of same."""
    return _WHITESPACE.sub(" ", text.casefold()).strip()


def cache_key(text: str, *, model: str, prompt_version: str) -> str:
    """sha256 hex of normalised text, model and prompt version (NUL separated)."""
    material = "\x00".join((normalise_text(text), model, prompt_version))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


class ResultCache:
    """LRU of at most ``max_entries`` enrichments with hit and miss counters for metrics."""

    def __init__(self, *, max_entries: int = 10_000) -> None:
        if max_entries <= 0:
            raise ValueError("max_entries must be positive")
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Enrichment] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> Enrichment | None:
        """The cached enrichment (now most recently used), counting a hit or a miss."""
        value = self._entries.get(key)
        if value is None:
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: str, value: Enrichment) -> None:
        """Store ``value``, evicting the least recently used entry past ``max_entries``."""
        self._entries[key] = value
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
