"""LLM cost in integer micro-dollars, and the token estimates budgets are checked against.

Money is integer micro-dollars end to end (DESIGN.md §4): float prices from settings
are converted once, here, and every per-call cost is rounded *up* so that summed costs
never under-report the provider's bill.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

MICRO_USD_PER_USD = 1_000_000
TOKENS_PER_MTOK = 1_000_000
# ~4 characters per token for English and Portuguese with BPE tokenizers (OpenAI's rule
# of thumb; Portuguese runs a little higher, which the per-message overhead absorbs).
CHARS_PER_TOKEN = 4
# Chat framing per message (role, separators) in OpenAI's published token accounting.
TOKENS_PER_MESSAGE_OVERHEAD = 4


@dataclass(frozen=True, slots=True)
class Prices:
    """Prices in integer micro-dollars per million tokens (input, output)."""

    in_micro_usd_per_mtok: int
    out_micro_usd_per_mtok: int

    @classmethod
    def from_usd_per_mtok(cls, *, in_usd_per_mtok: float, out_usd_per_mtok: float) -> Prices:
        """Convert settings like 0.15 / 0.60 USD per 1M tokens, once, rounding to the micro."""
        if in_usd_per_mtok < 0 or out_usd_per_mtok < 0:
            raise ValueError("prices must not be negative")
        return cls(
            in_micro_usd_per_mtok=round(in_usd_per_mtok * MICRO_USD_PER_USD),
            out_micro_usd_per_mtok=round(out_usd_per_mtok * MICRO_USD_PER_USD),
        )


FREE = Prices(in_micro_usd_per_mtok=0, out_micro_usd_per_mtok=0)


def _ceil_div(numerator: int, denominator: int) -> int:
    return -(-numerator // denominator)


def cost_micro_usd(*, tokens_in: int, tokens_out: int, prices: Prices) -> int:
    """Cost of one call: each side rounded up to a whole micro-dollar, integer math only."""
    return _ceil_div(tokens_in * prices.in_micro_usd_per_mtok, TOKENS_PER_MTOK) + _ceil_div(
        tokens_out * prices.out_micro_usd_per_mtok, TOKENS_PER_MTOK
    )


def estimate_tokens(text: str) -> int:
    """Tokens for ``text`` by the chars/4 rule, rounded up; at least 1 for non-empty text."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def estimate_messages_tokens(messages: Sequence[dict[str, str]]) -> int:
    """Prompt tokens of a chat request: content by chars/4 plus per-message framing."""
    return sum(
        estimate_tokens(m.get("content", "")) + TOKENS_PER_MESSAGE_OVERHEAD for m in messages
    )


def apportion(total: int, weights: Sequence[int]) -> list[int]:
    """Split an integer ``total`` over ``weights`` so the parts sum exactly to ``total``.

    Largest-remainder method: a batch's cost shared over its reviews adds back up to
    the billed cost, with no micro-dollar lost or invented.
    """
    if not weights:
        return []
    clean = [max(w, 0) for w in weights]
    weight_sum = sum(clean)
    if weight_sum == 0:
        clean, weight_sum = [1] * len(weights), len(weights)
    shares = [total * w // weight_sum for w in clean]
    remainders = sorted(range(len(clean)), key=lambda i: (-(total * clean[i] % weight_sum), i))
    for i in remainders[: total - sum(shares)]:
        shares[i] += 1
    return shares
