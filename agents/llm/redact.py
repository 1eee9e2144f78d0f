"""PII redaction applied to review text before it leaves the process (DESIGN.md §3 step 4).

Review authors paste e-mails, phone numbers, CPF/CNPJ document numbers and even card
numbers into complaints; none of it helps the model and all of it is personal data.
Patterns run most-specific first, each replaced by a token (``[EMAIL]``...), so a
later pattern never sees digits an earlier one already took. Bare digit runs are only
redacted when a check digit says they are what they look like (CPF/CNPJ modulo 11,
Luhn for cards), so order numbers, dates and prices survive.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

EMAIL = "EMAIL"
PHONE = "PHONE"
CPF = "CPF"
CNPJ = "CNPJ"
CARD = "CARD"
KINDS: tuple[str, ...] = (EMAIL, PHONE, CPF, CNPJ, CARD)


@dataclass(frozen=True, slots=True)
class RedactionResult:
    """The redacted text and how many items of each kind were replaced."""

    text: str
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def cpf_is_valid(number: str) -> bool:
    """CPF check: two modulo-11 digits; repeated-digit numbers are invalid by rule."""
    digits = _digits(number)
    if len(digits) != 11 or len(set(digits)) == 1:
        return False
    values = [int(d) for d in digits]
    for size in (9, 10):
        total = sum(v * w for v, w in zip(values[:size], range(size + 1, 1, -1), strict=True))
        check = (total * 10) % 11 % 10
        if check != values[size]:
            return False
    return True


def cnpj_is_valid(number: str) -> bool:
    """CNPJ check: two modulo-11 digits with the 5..2, 9..2 weight cycle."""
    digits = _digits(number)
    if len(digits) != 14 or len(set(digits)) == 1:
        return False
    values = [int(d) for d in digits]
    for size in (12, 13):
        weights = [(i % 8) + 2 for i in range(size)][::-1]
        total = sum(v * w for v, w in zip(values[:size], weights, strict=True))
        remainder = total % 11
        check = 0 if remainder < 2 else 11 - remainder
        if check != values[size]:
            return False
    return True


def luhn_is_valid(number: str) -> bool:
    """Luhn checksum of a 13-19 digit card number (1 in 10 random runs pass it)."""
    digits = _digits(number)
    if not 13 <= len(digits) <= 19 or len(set(digits)) == 1:
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        value = int(ch)
        if i % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _international_phone_ok(candidate: str) -> bool:
    # E.164 allows at most 15 digits; fewer than 8 is a short code or a number in prose.
    return 8 <= len(_digits(candidate)) <= 15


_NOT_DIGIT_BEFORE = r"(?<![\w+])"
_NOT_DIGIT_AFTER = r"(?![\w])"

# (kind, pattern, validator or None). Order matters: see the module docstring.
_RULES: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None], ...] = (
    (EMAIL, re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"), None),
    # Formatted documents are unambiguous by shape: redact even with a wrong check digit.
    (
        CNPJ,
        re.compile(_NOT_DIGIT_BEFORE + r"\d{2}\.\d{3}\.\d{3}/\d{4}-\d{2}" + _NOT_DIGIT_AFTER),
        None,
    ),
    (CPF, re.compile(_NOT_DIGIT_BEFORE + r"\d{3}\.\d{3}\.\d{3}-\d{2}" + _NOT_DIGIT_AFTER), None),
    # Cards: 13-19 digits, optionally grouped by single spaces or dashes; Luhn-checked.
    (
        CARD,
        re.compile(_NOT_DIGIT_BEFORE + r"\d(?:[ -]?\d){12,18}" + _NOT_DIGIT_AFTER),
        luhn_is_valid,
    ),
    (CNPJ, re.compile(_NOT_DIGIT_BEFORE + r"\d{14}" + _NOT_DIGIT_AFTER), cnpj_is_valid),
    (CPF, re.compile(_NOT_DIGIT_BEFORE + r"\d{11}" + _NOT_DIGIT_AFTER), cpf_is_valid),
    # +55 11 98765 4321, +55 (11) 98765-4321, +5511987654321
    (
        PHONE,
        re.compile(r"\+55[\s.-]?\(?\d{2}\)?[\s.-]?9?\d{4}[\s.-]?\d{4}" + _NOT_DIGIT_AFTER),
        None,
    ),
    # (11) 98765-4321, (11) 3456-7890, (415) 555-2671
    (PHONE, re.compile(r"\(\d{2,3}\)\s?9?\d{3,4}[\s.-]?\d{4}" + _NOT_DIGIT_AFTER), None),
    # 11 98765-4321, 98765-4321 (mobile: 9 + 8 digits with the dash), 11987654321
    (
        PHONE,
        re.compile(_NOT_DIGIT_BEFORE + r"(?:\d{2}[\s.-])?9\d{4}-\d{4}" + _NOT_DIGIT_AFTER),
        None,
    ),
    (PHONE, re.compile(_NOT_DIGIT_BEFORE + r"\d{2}9\d{8}" + _NOT_DIGIT_AFTER), None),
    # Other international numbers: +44 20 7946 0958, +1 415-555-2671, +351 912 345 678
    (
        PHONE,
        re.compile(r"\+\d{1,3}(?:[\s.-]?\(?\d{1,4}\)?){2,5}" + _NOT_DIGIT_AFTER),
        _international_phone_ok,
    ),
)


def redact_pii(text: str) -> RedactionResult:
    """Replace e-mails, phones, CPF, CNPJ and card numbers with ``[KIND]`` tokens."""
    counts: dict[str, int] = {}
    for kind, pattern, validator in _RULES:

        def _replace(
            match: re.Match[str],
            kind: str = kind,
            validator: Callable[[str], bool] | None = validator,
        ) -> str:
            if validator is not None and not validator(match.group(0)):
                return match.group(0)
            counts[kind] = counts.get(kind, 0) + 1
            return f"[{kind}]"

        text = pattern.sub(_replace, text)
    return RedactionResult(text=text, counts=counts)
