"""PII redaction applied to review text before it leaves the process (DESIGN.md §3 step 4).

Review authors paste e-mails, phone numbers, CPF/CNPJ document numbers and even card
numbers into complaints, written the way people type them: ``11 98765 4321``,
``(11)987654321``, ``123 456 789 09``, ``4111.1111.1111.1111``, ``joão.silva@…``,
``joao arroba gmail ponto com``. None of it helps the model and all of it is personal data.

The text is first cleaned (:func:`streams.validation.clean_text`: NFC, controls, bidi
and zero-width characters removed), so an invisible character cannot split a number or
an address out of a pattern's reach. Patterns then run most-specific first, each replaced
by a token (``[EMAIL]``...), so a later pattern never sees digits an earlier one took.
Digit groups may be separated by a space, two spaces, a dot or a dash. Every pattern takes
time linear in the text, crafted or not (``python -m bench.redact_scaling``).

Bare digit runs are redacted only when a check digit says they are what they look like
(CPF/CNPJ modulo 11, Luhn for cards) or when they have a phone's shape (a Brazilian mobile
is 9 + 8 digits, with or without the 2-digit area code); so prices (``R$ 45,90``), times
(``19:30``), dates, ratings and short order numbers survive. The price of the phone
shapes: a 9-digit number starting with 9 (or 11 digits whose third is 9) is taken for a
phone even when it is an order number; over-redaction only costs the model a number.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from streams.validation import clean_text

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


# A number starts where no word character, "+" or "digit + separator" comes before it, and
# ends where no word character or "separator + digit" follows: so a pattern matches a
# whole run of grouped digits, never a slice of a longer one.
_AFTER = r"(?!\w)(?![ .-]\d)"
_SEP = r"(?: {1,2}|[.-])"  # between digit groups: a space, two spaces, a dot or a dash
_OPT = _SEP + "?"


def _number(body: str) -> re.Pattern[str]:
    """``body`` as a whole number: the start and end conditions above around it.

    The start test is written behind the first digit (``\\d(?<![\\w+].)`` is "no word
    character before this digit") so the pattern begins with a digit class, which the
    regex engine scans for quickly instead of trying lookbehinds at every position
    (5 µs per 300 characters and pattern, measured).
    """
    first = re.match(r"(?:\\d|9|\[\d-\d\])(?![{*+?])", body)
    assert first is not None, f"{body} must start with one unquantified digit class"
    head, rest = body[: first.end()], body[first.end():]
    return re.compile(head + r"(?<![\w+].)(?<!\d[ .-].)" + rest + _AFTER)


# E-mail: Unicode letters in the local part and the domain (joão.silva@exemplo.com.br).
# An address starts only where a run of local-part characters starts, and its local part
# is the whole run (possessive: the run holds no "@" to give back), so each run is scanned
# once. Tried at every character instead, a 20,000-character run in a text holding an "@"
# was scanned 20,000 times: 0.65-1.4 s a call (issue 30). No address is lost: every start
# inside a run reaches the same "@". The one start inside a run that matched follows an
# address (a@b.com.x@y.com), so addresses written back to back are one match, one token
# per "@" (``_replace``).
_EMAIL = r"[\w.%+-]++@[\w-]+(?:\.[\w-]+)*\.[^\W\d_]{2,}"
_EMAIL_RE = re.compile(rf"(?<![\w.%+-])(?:{_EMAIL})+")
# Written out: joao at gmail dot com, joao [at] gmail [dot] com, joao arroba gmail ponto com.
# The address must end in a common top-level domain, so prose ("at home. Com certeza")
# survives; "look at this dot com" does not, and is redacted (over-redaction is the cheap side).
_AT = r"(?:\s*[\[({<]\s*(?:at|arroba)\s*[\])}>]\s*|\s+(?:at|arroba)\s+|\s*@\s*)"
_DOT = r"(?:\s*[\[({<]\s*(?:dot|ponto)\s*[\])}>]\s*|\s+(?:dot|ponto)\s+|\.)"
_TLD = r"(?:com|net|org|edu|gov|br|pt|io|co|me|us|uk|info|biz|app|dev|online)"
_OBFUSCATED_EMAIL_RE = re.compile(
    rf"(?<![\w.%+-])[\w.%+-]+{_AT}[\w-]+(?:{_DOT}[\w-]+)*{_DOT}{_TLD}(?!\w)", re.IGNORECASE)

# Other international numbers: "+", a 1-3 digit country code, 2-5 groups of up to 4 digits,
# each after an optional separator or "(" and before an optional ")". A group is atomic, so
# a digit run is cut 4 + 4 + ... and never every other way: cut every way, each "+" before
# 23 digits and a letter cost ~150 µs of failed cuts (a normal review: ~0.13 µs a character).
# What is redacted is unchanged: both forms end at the farthest run end (or ")") reached
# with no word character after, and cuts of 4 reach every run end other cuts reach, in the
# fewest groups. Only "+" and 3-5 digits, which the old form matched by cutting them small,
# no longer match: the validator refused them (8-15 digits).
_INTERNATIONAL_PHONE_RE = re.compile(r"\+\d{1,3}(?:(?>[\s.-]?\(?\d{1,4})\)?){2,5}(?!\w)")

# (kind, pattern, validator or None). Order matters: see the module docstring.
_RULES: tuple[tuple[str, re.Pattern[str], Callable[[str], bool] | None], ...] = (
    (EMAIL, _EMAIL_RE, None),
    (EMAIL, _OBFUSCATED_EMAIL_RE, None),
    # Formatted documents are unambiguous by shape: redact even with a wrong check digit.
    (CNPJ, _number(r"\d\d\.\d{3}\.\d{3}/\d{4}-\d{2}"), None),
    (CPF, _number(r"\d\d{2}\.\d{3}\.\d{3}-\d{2}"), None),
    # Spaced or bare documents: 12 345 678 0001 95, 123 456 789 09, 12345678909; checked.
    (CNPJ, _number(rf"\d\d{_OPT}\d{{3}}{_OPT}\d{{3}}(?:{_SEP}|/)?\d{{4}}{_OPT}\d{{2}}"), cnpj_is_valid),
    (CPF, _number(rf"\d\d{{2}}{_OPT}\d{{3}}{_OPT}\d{{3}}{_OPT}\d{{2}}"), cpf_is_valid),
    # Cards: 13-19 digits grouped by spaces, double spaces, dots or dashes; Luhn-checked.
    (CARD, _number(rf"\d(?:{_OPT}\d){{12,18}}"), luhn_is_valid),
    # +55 11 98765 4321, +55 (11) 98765-4321, +5511987654321, +55 21 3456-7890
    (PHONE, re.compile(rf"\+55{_OPT}\(?\d{{2}}\)?{_OPT}(?:9{_OPT})?\d{{4}}{_OPT}\d{{4}}" + _AFTER), None),
    # (11) 98765-4321, (11)987654321, (11) 9 8765 4321, (21) 3456-7890, (415) 555-0134
    (PHONE, re.compile(rf"\(\d{{2,3}}\) ?(?:9{_OPT})?\d{{3,4}}{_OPT}\d{{4}}" + _AFTER), None),
    # Area code + number with separators: 11 98765 4321, 11 98765-4321, 11 9 8765 4321, 21 3456 7890
    (PHONE, _number(rf"\d\d{_SEP}(?:9{_OPT})?\d{{4}}{_OPT}\d{{4}}"), None),
    # Area code + mobile, bare: 11987654321
    (PHONE, _number(r"\d\d9\d{8}"), None),
    # Mobile without area code: 98765-4321, 98765 4321, 987654321
    (PHONE, _number(rf"9\d{{4}}{_OPT}\d{{4}}"), None),
    # Landline without area code, dashed: 3456-7890 (a CEP is 5-3: 01310-100)
    (PHONE, _number(r"[2-5]\d{3}-\d{4}"), None),
    # North American: 415-555-0134, 415.555.0134, 415 555 0134
    (PHONE, _number(rf"[2-9]\d{{2}}{_SEP}\d{{3}}{_SEP}\d{{4}}"), None),
    # +44 20 7946 0958, +1 415-555-2671, +351 912 345 678
    (PHONE, _INTERNATIONAL_PHONE_RE, _international_phone_ok),
)


_HAS_DIGIT = re.compile(r"\d")
_HAS_AT_WORD = re.compile(r"(?<!\w)(?:at|arroba)(?!\w)", re.IGNORECASE)


def redact_pii(text: str) -> RedactionResult:
    """Clean ``text``, then replace e-mails, phones, CPF, CNPJ and cards with ``[KIND]`` tokens."""
    text = clean_text(text)
    counts: dict[str, int] = {}
    # Gates: most reviews hold no digit and no address, and a pattern that starts with a
    # lookbehind is tried at every position (~5 µs per 300 chars each): skip what cannot match.
    has_digit = _HAS_DIGIT.search(text) is not None
    for kind, pattern, validator in _RULES:
        if pattern is _EMAIL_RE:
            if "@" not in text:
                continue
        elif pattern is _OBFUSCATED_EMAIL_RE:
            if "@" not in text and _HAS_AT_WORD.search(text) is None:
                continue
        elif not has_digit:
            continue

        def _replace(
            match: re.Match[str],
            kind: str = kind,
            validator: Callable[[str], bool] | None = validator,
            back_to_back: bool = pattern is _EMAIL_RE,
        ) -> str:
            if validator is not None and not validator(match.group(0)):
                return match.group(0)
            items = match.group(0).count("@") if back_to_back else 1
            counts[kind] = counts.get(kind, 0) + items
            return f"[{kind}]" * items

        text = pattern.sub(_replace, text)
        if kind == EMAIL:
            has_digit = has_digit and _HAS_DIGIT.search(text) is not None
    return RedactionResult(text=text, counts=counts)
