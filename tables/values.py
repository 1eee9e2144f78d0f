"""Pure aggregate value types: a fixed-bucket latency histogram and one restaurant pane.

No Faust, no I/O: the aggregating agent folds events into a :class:`PaneAggregate`, the
table stores :meth:`PaneAggregate.to_json`, and the closer merges panes into a window and
calls :meth:`PaneAggregate.to_record` (the ``RestaurantWindowAggregate`` Avro contract).

Mutability, one rule for both types (chosen for the hot path, ~5,000 events/s): the
``add*`` methods and ``merge_from`` change the value in place and return ``None``;
``merge``, ``merge_all`` and ``copy`` return a new value and never change their inputs
(``set.update`` versus ``set.union``). A value read from a table is the caller's to
mutate; write it back once per batch (every write is a changelog record).

Exactness: every sum is an integer (scores in thousandths, money in micro-dollars, times
in ms), so a window's totals do not depend on the order in which events were folded or
panes merged; a ground truth computed in any order with :func:`score_to_milli` matches
exactly.

Lateness: an event whose tumbling window is already closed (end + grace passed) when it
arrives is *late beyond grace*. It is not folded into the totals of any window; the
pipeline calls :meth:`PaneAggregate.add_late` on the open pane it arrives in (the pane
holding the current watermark), so ``late_events`` is reported by the window that was
open at arrival: counted, never dropped silently.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from operator import add
from typing import Any

# Upper bounds (inclusive, ms) of the histogram buckets, shared by processing lag and
# delivery delay so one table value type serves both. Why these numbers:
# - 25 ms .. 1 h, roughly doubling (1-2-4-8 then minute steps): ~20 buckets keep a pane
#   small (the table stores only non-empty buckets) while a percentile read from a bucket
#   is at worst about 2x off;
# - the default SLOs are bounds themselves: processing lag 8 s (WARNING) and 30 s
#   (CRITICAL), delivery delay 600 s. A percentile is reported as the upper bound of its
#   bucket, so a rule "p95 > SLO" is exact when the SLO is a bound (no false alert from a
#   bucket straddling it); other SLO values are judged at bucket resolution;
# - above 1 h everything lands in the overflow bucket, reported as the observed max.
# Changing these bounds changes the meaning of stored ``bucket_counts``: give the pane
# table a new name (table names are data) when you do.
BUCKET_BOUNDS_MS: tuple[int, ...] = (
    25, 50, 100, 250, 500,
    1_000, 2_000, 4_000, 8_000, 15_000, 30_000,
    60_000, 120_000, 300_000, 600_000, 900_000,
    1_200_000, 1_800_000, 2_700_000, 3_600_000,
)  # fmt: skip
N_BUCKETS = len(BUCKET_BOUNDS_MS) + 1  # the last bucket is overflow (> 1 h)

# --- how large a pane record can grow ---------------------------------------------------------
# A pane is written whole on every batch that touches it (one changelog record), so its size
# is bounded whatever the traffic. Everything but ``pending`` is bounded by construction
# (counters, histograms of N_BUCKETS, categories from an enum): at most PANE_FIXED_MAX_BYTES,
# a test measures the largest. ``pending`` holds one entry per review that owes its
# enrichment: :func:`pane_pending_cap` bounds it, and the stage folds a review beyond it as
# final (the heuristic at once) instead of owing.
PANE_MAX_BYTES = 512 * 1024  # half the producer's 1,000,000-byte request limit: room for key and framing
PANE_FIXED_MAX_BYTES = 4 * 1024  # measured largest: 2,535 bytes (test_pane_fixed_part_is_bounded)


def pending_entry_max_bytes(id_max_chars: int) -> int:
    """Most JSON bytes one ``pending`` entry takes: ``"<event id>":1,``. An id is printable
    (decode checks it), so each character is at most 4 UTF-8 bytes and JSON escapes only
    ``"`` and ``\\`` (2 bytes); Faust's json codec writes UTF-8, not ``\\u`` escapes."""
    return 4 * id_max_chars + 5


def pane_pending_cap(*, max_pending: int, id_max_chars: int) -> int:
    """Reviews one pane may owe: ``max_pending``, lowered until a pane full of the longest ids
    still fits in PANE_MAX_BYTES (so no setting can make a pane record too large)."""
    room = (PANE_MAX_BYTES - PANE_FIXED_MAX_BYTES) // pending_entry_max_bytes(id_max_chars)
    return max(1, min(max_pending, room))


LABELS = ("POSITIVE", "NEUTRAL", "NEGATIVE", "CRITICAL")  # SentimentLabel symbols
STATUSES = ("ENRICHED", "FALLBACK", "BUDGET_SKIPPED")  # EnrichmentStatus symbols
WINDOW_KINDS = ("TUMBLING", "HOPPING")  # WindowKind symbols


def score_to_milli(score: float) -> int:
    """A sentiment score in [-1, 1] as integer thousandths (clamped; NaN is refused).

    Rounding is Python's ``round`` (half to even) applied per review, before any sum:
    use this same function for a ground truth and the totals match exactly.
    """
    if score != score:  # NaN: upstream validation should have refused it
        raise ValueError("sentiment score is NaN")
    milli = round(score * 1000)
    return -1000 if milli < -1000 else 1000 if milli > 1000 else milli


@dataclass(slots=True)
class Histogram:
    """Count, sum, max and fixed-bucket counts of non-negative millisecond observations."""

    count: int = 0
    sum_ms: int = 0
    max_ms: int = 0
    bucket_counts: list[int] = field(default_factory=lambda: [0] * N_BUCKETS)

    def add(self, value_ms: int | float) -> None:
        """Fold one observation in; negative values (clock skew, early delivery) count as 0."""
        v = int(value_ms)
        if v < 0:
            v = 0
        self.count += 1
        self.sum_ms += v
        if v > self.max_ms:
            self.max_ms = v
        # bisect_left: first bound >= v, i.e. the bucket with v <= bound (Prometheus "le").
        self.bucket_counts[bisect_left(BUCKET_BOUNDS_MS, v)] += 1

    def merge_from(self, other: Histogram) -> None:
        """Add ``other``'s observations to this histogram, in place."""
        if not other.count:
            return
        self.count += other.count
        self.sum_ms += other.sum_ms
        if other.max_ms > self.max_ms:
            self.max_ms = other.max_ms
        self.bucket_counts = list(map(add, self.bucket_counts, other.bucket_counts))

    def merge(self, other: Histogram) -> Histogram:
        """A new histogram holding both; neither input changes."""
        out = self.copy()
        out.merge_from(other)
        return out

    def copy(self) -> Histogram:
        return Histogram(self.count, self.sum_ms, self.max_ms, list(self.bucket_counts))

    def percentile(self, q: float) -> int:
        """Upper bound of the bucket holding rank ``ceil(q * count)``, never above ``max_ms``.

        The overflow bucket reports ``max_ms``; an empty histogram reports 0. ``q`` is in
        [0, 1]; ``q * count`` is rounded to 9 decimals first so 0.95 * 100 is rank 95, not 96.
        """
        if not self.count:
            return 0
        if not 0.0 <= q <= 1.0:
            raise ValueError(f"percentile q must be in [0, 1], got {q}")
        rank = max(1, math.ceil(round(q * self.count, 9)))
        seen = 0
        for i, n in enumerate(self.bucket_counts):
            seen += n
            if seen >= rank:
                if i == len(BUCKET_BOUNDS_MS):
                    return self.max_ms
                return min(BUCKET_BOUNDS_MS[i], self.max_ms)
        return self.max_ms  # unreachable while count == sum(bucket_counts)

    @property
    def mean_ms(self) -> float:
        return self.sum_ms / self.count if self.count else 0.0

    def to_record(self) -> dict[str, Any]:
        """The ``LatencyStats`` Avro record."""
        return {
            "count": self.count,
            "sum_ms": self.sum_ms,
            "max_ms": self.max_ms,
            "p50_ms": self.percentile(0.50),
            "p95_ms": self.percentile(0.95),
            "p99_ms": self.percentile(0.99),
            "bucket_counts": list(self.bucket_counts),
        }

    def to_json(self) -> list[Any]:
        """Compact form ``[count, sum_ms, max_ms, [bucket, n, bucket, n, ...]]`` (sparse)."""
        sparse: list[int] = []
        for i, n in enumerate(self.bucket_counts):
            if n:
                sparse.append(i)
                sparse.append(n)
        return [self.count, self.sum_ms, self.max_ms, sparse]

    @classmethod
    def from_json(cls, data: list[Any]) -> Histogram:
        count, sum_ms, max_ms, sparse = data
        buckets = [0] * N_BUCKETS
        for j in range(0, len(sparse), 2):
            buckets[sparse[j]] = sparse[j + 1]
        return cls(count, sum_ms, max_ms, buckets)


# Integer counters of a pane, in Avro field order; JSON omits the zero ones.
_COUNTERS = (
    "reviews", "rating_sum", "score_sum_milli",
    "positive", "neutral", "negative", "critical",
    "llm_calls", "tokens_in", "tokens_out", "cost_micro_usd",
    "cache_hits", "fallbacks", "budget_skips", "orders_delivered", "late_events", "provisional_labels",
)  # fmt: skip
_LABEL_FIELD = {"POSITIVE": "positive", "NEUTRAL": "neutral", "NEGATIVE": "negative",
                "CRITICAL": "critical"}  # fmt: skip


@dataclass(slots=True)
class PaneAggregate:
    """Sentiment, cost and lag of one restaurant over one pane (or a merge of panes)."""

    reviews: int = 0
    rating_sum: int = 0
    score_sum_milli: int = 0
    positive: int = 0
    neutral: int = 0
    negative: int = 0
    critical: int = 0
    categories: dict[str, int] = field(default_factory=dict)
    llm_calls: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    cost_micro_usd: int = 0
    cache_hits: int = 0
    fallbacks: int = 0
    budget_skips: int = 0
    orders_delivered: int = 0
    processing_lag: Histogram = field(default_factory=Histogram)  # from the record reaching Kafka
    delivery_delay: Histogram = field(default_factory=Histogram)
    event_age: Histogram = field(default_factory=Histogram)  # from occurred_at: lateness included
    late_events: int = 0
    # Idempotence watermark: the highest input offset already folded into this pane. The
    # agent skips an event whose offset is <= this (redelivery after a crash between the
    # table write and the commit). All of a restaurant's events come from one partition of
    # the repartition topic, so offsets of one pane are comparable; merge takes the max.
    applied_offset: int = -1
    # Reviews folded at first sight whose final enrichment has not joined yet: their label,
    # score and categories above are the heuristic's. A window that closes with some
    # reports them as ``provisional_labels``.
    provisional_labels: int = 0
    # Which reviews of this pane still owe their enrichment: event id -> 1 (counted, label
    # provisional) or 0 (late: counted nowhere). A join pops its entry, so a second join of
    # one review (a replay, a second retry copy) finds none and changes nothing: the join
    # is idempotent in the pane it changes, with no second write elsewhere. Bounded by the
    # reviews in enrichment; a window merge ignores it (it is the pane's bookkeeping).
    pending: dict[str, int] = field(default_factory=dict)

    # --- folding events (in place) -----------------------------------------------------
    def add_first_sight(self, *, event_id: str, rating: int, label: str, score: float,
                        categories: Iterable[str], processing_lag_ms: int,
                        event_age_ms: int | None = None, final_status: str | None = None) -> None:
        """Fold what a review says without the LLM; its label is provisional until :meth:`join`.

        Count, rating and processing lag are final now; label, score and categories are the
        heuristic's and are replaced when the LLM's answer (or the final fallback) joins.
        With ``final_status`` (a pane that owes :func:`pane_pending_cap` reviews already),
        the label is final at once, counted under that status, and nothing is owed.
        """
        label_field = _LABEL_FIELD.get(label)
        if label_field is None:
            raise ValueError(f"unknown sentiment label {label!r}")
        score_milli = score_to_milli(score)
        if final_status is not None:
            self._count_status(final_status, cache_hit=False)  # may refuse: before any change
        cats = sorted(set(categories))
        self.reviews += 1
        self.rating_sum += rating
        self.score_sum_milli += score_milli
        setattr(self, label_field, getattr(self, label_field) + 1)
        for name in cats:
            self.categories[name] = self.categories.get(name, 0) + 1
        self.processing_lag.add(processing_lag_ms)
        self.event_age.add(processing_lag_ms if event_age_ms is None else event_age_ms)
        if final_status is None:
            self.provisional_labels += 1
            self.pending[event_id] = 1

    def pending_full(self, cap: int) -> bool:
        """Whether the pane owes ``cap`` reviews already: one more must be folded as final."""
        return len(self.pending) >= cap

    def owes(self, event_id: str) -> bool:
        """Whether the review folded here still waits for its enrichment to join."""
        return event_id in self.pending

    def join(self, *, event_id: str, provisional: tuple[str, float, Iterable[str]] | None, label: str,
             score: float, categories: Iterable[str], status: str, cache_hit: bool, tokens_in: int,
             tokens_out: int, cost_micro_usd: int) -> bool:
        """Replace one review's ``provisional`` (label, score, categories: what
        :meth:`add_first_sight` counted, recomputed by the caller) by its final enrichment.

        Once per review: returns False, changing nothing, when ``event_id`` owes nothing here
        (joined before); True for a late review too, which only stops owing (``provisional``
        may then be None: nothing of it was counted).
        """
        label_field = _LABEL_FIELD.get(label)
        if label_field is None:
            raise ValueError(f"unknown sentiment label {label!r}")
        score_milli = score_to_milli(score)
        counted = self.pending.get(event_id)
        if counted is None:
            return False
        if counted and provisional is None:
            raise ValueError(f"review {event_id!r} was counted with a provisional label: pass it")
        del self.pending[event_id]
        if not counted:
            return True
        old_label, old_score, old_cats = provisional
        old_field = _LABEL_FIELD[old_label]
        old_score = score_to_milli(old_score)
        old_cats = set(old_cats)
        setattr(self, old_field, getattr(self, old_field) - 1)
        setattr(self, label_field, getattr(self, label_field) + 1)
        self.score_sum_milli += score_milli - old_score
        cats = self.categories
        for name in old_cats:
            left = cats.get(name, 0) - 1
            if left > 0:
                cats[name] = left
            else:
                cats.pop(name, None)
        for name in set(categories):
            cats[name] = cats.get(name, 0) + 1
        self._count_status(status, cache_hit=cache_hit)
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cost_micro_usd += cost_micro_usd
        self.provisional_labels -= 1
        return True

    def _count_status(self, status: str, *, cache_hit: bool) -> None:
        """How the review's enrichment was made: an LLM call, the cache, or the heuristic."""
        if status not in ("ENRICHED", "FALLBACK", "BUDGET_SKIPPED"):
            raise ValueError(f"unknown enrichment status {status!r}")
        if status == "ENRICHED" and not cache_hit:
            self.llm_calls += 1
        elif status == "FALLBACK":
            self.fallbacks += 1
        elif status == "BUDGET_SKIPPED":
            self.budget_skips += 1
        if cache_hit:
            self.cache_hits += 1

    def add_review(
        self,
        *,
        rating: int,
        score: float,
        label: str,
        categories: Iterable[str],
        status: str,
        cache_hit: bool,
        tokens_in: int,
        tokens_out: int,
        cost_micro_usd: int,
        processing_lag_ms: int,
    ) -> None:
        """Fold one enriched review in.

        ``llm_calls`` counts ENRICHED reviews not served from the cache (the reviews an LLM
        call answered); ``cache_hits`` counts every cached answer; ``fallbacks`` and
        ``budget_skips`` count the heuristic paths (FALLBACK, BUDGET_SKIPPED). Tokens and
        cost are added as attributed to the review (0 for cache and heuristic answers).
        A category named twice in one review counts once.
        """
        label_field = _LABEL_FIELD.get(label)
        if label_field is None:
            raise ValueError(f"unknown sentiment label {label!r}")
        score_milli = score_to_milli(score)  # may refuse NaN: validate before any change
        self._count_status(status, cache_hit=cache_hit)
        self.reviews += 1
        self.rating_sum += rating
        self.score_sum_milli += score_milli
        setattr(self, label_field, getattr(self, label_field) + 1)
        cats = self.categories
        for name in set(categories):
            cats[name] = cats.get(name, 0) + 1
        self.tokens_in += tokens_in
        self.tokens_out += tokens_out
        self.cost_micro_usd += cost_micro_usd
        self.processing_lag.add(processing_lag_ms)

    def add_order(self, *, delay_ms: int) -> None:
        """Fold one delivered order in (``delivered_at - promised_at``; negative -> 0)."""
        self.orders_delivered += 1
        self.delivery_delay.add(delay_ms)

    def add_late(self, *, review_id: str | None = None) -> None:
        """Count one event that arrived after its window closed (see the module docstring).

        A late review (``review_id``, its event id) still owes its enrichment here."""
        self.late_events += 1
        if review_id is not None:
            self.pending[review_id] = 0

    def seen(self, offset: int) -> bool:
        """True when the event at ``offset`` is already folded into this pane."""
        return offset <= self.applied_offset

    def mark_applied(self, offset: int) -> None:
        if offset > self.applied_offset:
            self.applied_offset = offset

    # --- merging -----------------------------------------------------------------------
    def merge_from(self, other: PaneAggregate) -> None:
        """Add ``other`` to this aggregate, in place (spelled out: ~2x faster than a loop)."""
        self.reviews += other.reviews
        self.rating_sum += other.rating_sum
        self.score_sum_milli += other.score_sum_milli
        self.positive += other.positive
        self.neutral += other.neutral
        self.negative += other.negative
        self.critical += other.critical
        self.llm_calls += other.llm_calls
        self.tokens_in += other.tokens_in
        self.tokens_out += other.tokens_out
        self.cost_micro_usd += other.cost_micro_usd
        self.cache_hits += other.cache_hits
        self.fallbacks += other.fallbacks
        self.budget_skips += other.budget_skips
        self.orders_delivered += other.orders_delivered
        self.late_events += other.late_events
        if other.categories:
            cats = self.categories
            for name, n in other.categories.items():
                cats[name] = cats.get(name, 0) + n
        self.processing_lag.merge_from(other.processing_lag)
        self.event_age.merge_from(other.event_age)
        self.delivery_delay.merge_from(other.delivery_delay)
        if other.applied_offset > self.applied_offset:
            self.applied_offset = other.applied_offset
        self.provisional_labels += other.provisional_labels

    def merge(self, other: PaneAggregate) -> PaneAggregate:
        """A new aggregate holding both; neither input changes."""
        out = self.copy()
        out.merge_from(other)
        return out

    @staticmethod
    def merge_all(panes: Iterable[PaneAggregate]) -> PaneAggregate:
        """The union of ``panes`` (a window), as a new value; empty input -> empty aggregate."""
        out = PaneAggregate()
        for pane in panes:
            out.merge_from(pane)
        return out

    def copy(self) -> PaneAggregate:
        """A deep copy (categories and histograms included)."""
        out = PaneAggregate()
        out.merge_from(self)
        return out

    # --- reading -----------------------------------------------------------------------
    @property
    def is_empty(self) -> bool:
        """No review, order or late event: a closer can skip emitting such a window."""
        return not (self.reviews or self.orders_delivered or self.late_events)

    @property
    def sentiment_avg(self) -> float:
        """Mean score in [-1, 1]; 0.0 without reviews."""
        return self.score_sum_milli / 1000 / self.reviews if self.reviews else 0.0

    @property
    def negative_share(self) -> float:
        """(NEGATIVE + CRITICAL) / reviews; 0.0 without reviews."""
        return (self.negative + self.critical) / self.reviews if self.reviews else 0.0

    def to_record(
        self,
        *,
        restaurant_id: str,
        window_kind: str,
        window_start_ms: int,
        window_end_ms: int,
        closed_at_ms: int,
    ) -> dict[str, Any]:
        """The ``RestaurantWindowAggregate`` Avro record (timestamps as int ms)."""
        kind = str(window_kind)
        if kind not in WINDOW_KINDS:
            raise ValueError(f"unknown window kind {window_kind!r}")
        return {
            "aggregate_id": f"{restaurant_id}:{kind}:{window_start_ms}",
            "restaurant_id": restaurant_id,
            "window_kind": kind,
            "window_start": window_start_ms,
            "window_end": window_end_ms,
            "closed_at": closed_at_ms,
            "reviews": self.reviews,
            "rating_sum": self.rating_sum,
            "score_sum_milli": self.score_sum_milli,
            "sentiment_avg": self.sentiment_avg,
            "positive": self.positive,
            "neutral": self.neutral,
            "negative": self.negative,
            "critical": self.critical,
            "categories": dict(sorted(self.categories.items())),
            "llm_calls": self.llm_calls,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "cost_micro_usd": self.cost_micro_usd,
            "cache_hits": self.cache_hits,
            "fallbacks": self.fallbacks,
            "budget_skips": self.budget_skips,
            "orders_delivered": self.orders_delivered,
            "processing_lag": self.processing_lag.to_record(),
            "event_age": self.event_age.to_record(),
            "delivery_delay": self.delivery_delay.to_record(),
            "late_events": self.late_events,
            "provisional_labels": self.provisional_labels,
        }

    # --- table value (JSON) ------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        """Primitives only, zero fields and empty histograms omitted (small changelog records)."""
        out: dict[str, Any] = {}
        for name in _COUNTERS:
            n = getattr(self, name)
            if n:
                out[name] = n
        if self.categories:
            out["categories"] = dict(self.categories)
        if self.processing_lag.count:
            out["processing_lag"] = self.processing_lag.to_json()
        if self.event_age.count:
            out["event_age"] = self.event_age.to_json()
        if self.delivery_delay.count:
            out["delivery_delay"] = self.delivery_delay.to_json()
        if self.applied_offset != -1:
            out["applied_offset"] = self.applied_offset
        if self.pending:
            out["pending"] = dict(self.pending)
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> PaneAggregate:
        """Inverse of :meth:`to_json`; unknown keys are refused (a renamed field is a bug)."""
        kwargs = dict(data)
        if "categories" in kwargs:
            kwargs["categories"] = dict(kwargs["categories"])
        if "pending" in kwargs:
            kwargs["pending"] = dict(kwargs["pending"])
        if "processing_lag" in kwargs:
            kwargs["processing_lag"] = Histogram.from_json(kwargs["processing_lag"])
        if "event_age" in kwargs:
            kwargs["event_age"] = Histogram.from_json(kwargs["event_age"])
        if "delivery_delay" in kwargs:
            kwargs["delivery_delay"] = Histogram.from_json(kwargs["delivery_delay"])
        return cls(**kwargs)
