"""Local, deterministic lexicon enricher (pt/en): the fallback when the LLM is off or over budget.

It keeps sentiment aggregates and critical alerts alive while the LLM is unavailable
(DESIGN.md §3), so it favours being predictable and explainable over being clever:
a negation-aware word score blended with the star rating, keyword categories, and a
templated reply in the review's language.
"""

from __future__ import annotations

import math
import re
import unicodedata
from dataclasses import dataclass

from agents.llm.labels import Category, Enrichment, ReviewInput, Sentiment
from agents.llm.lexicon import (
    CATEGORY_WORDS,
    EN_MARKERS,
    HYGIENE_CRITICAL,
    INTENSIFIERS,
    NEGATORS,
    PHRASE_CATEGORIES,
    PHRASES,
    POST_INTENSIFIERS,
    PT_MARKERS,
    SENTIMENT,
)

HEURISTIC_MODEL = "reviewpulse-heuristic"
HEURISTIC_VERSION = "heuristic-v1"

# Share of the score taken from the star rating when the text has sentiment words; the
# rating is the author's own summary, the words say why (hand-tuned, see lexicon.py).
RATING_PRIOR_WEIGHT = 0.4
# VADER-style normalisation x / sqrt(x^2 + alpha): one strong word ~ -0.7, three ~ -0.95.
NORMALISATION_ALPHA = 8.0
# A negated word counts for 3/4 of its opposite ("not bad" is weaker than "good").
NEGATION_FACTOR = -0.75
# How many following words a negator reaches ("não estava muito frio").
NEGATION_SCOPE_WORDS = 3
POSITIVE_THRESHOLD = 0.25
NEGATIVE_THRESHOLD = -0.25
CRITICAL_SCORE = -0.8

_TOKEN_RE = re.compile(r"\w+|[.!?;,]")
_CLAUSE_BREAKS = frozenset(".!?;,")
# Word -> the categories it names, in CATEGORY_WORDS order: one lookup per token instead
# of one per token and category (the scan runs for every review at first sight).
_CATEGORIES_OF: dict[str, tuple[Category, ...]] = {}
for _category, _words in CATEGORY_WORDS.items():
    for _word in _words:
        _CATEGORIES_OF[_word] = (*_CATEGORIES_OF.get(_word, ()), _category)


def normalise_words(text: str) -> list[str]:
    """Lower-case, accent-free tokens with clause punctuation kept (it ends a negation)."""
    text = text.casefold().replace("’", "'").replace("n't", " not")
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _TOKEN_RE.findall(plain)


@dataclass(slots=True)
class _Scan:
    weights: list[float]
    category_positions: dict[Category, int]
    critical: bool


def _scan(tokens: list[str]) -> _Scan:
    weights: list[float] = []
    positions: dict[Category, int] = {}
    critical = False
    negate_left = 0
    multiplier = 1.0
    last_weight_at = -2
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in _CLAUSE_BREAKS:
            negate_left, multiplier = 0, 1.0
            i += 1
            continue
        pair = tuple(tokens[i : i + 2])
        if pair in PHRASES:
            weights.append(PHRASES[pair] * multiplier)
            phrase_category = PHRASE_CATEGORIES.get(pair)
            if phrase_category is not None:
                positions.setdefault(phrase_category, i)
                critical = critical or phrase_category is Category.HYGIENE
            negate_left, multiplier, last_weight_at = 0, 1.0, i + 1
            i += 2
            continue
        negated = negate_left > 0
        for category in _CATEGORIES_OF.get(tok, ()):
            if not (category is Category.HYGIENE and negated):
                positions.setdefault(category, i)
        if tok in HYGIENE_CRITICAL and not negated:
            critical = True
        if tok in NEGATORS:
            negate_left = NEGATION_SCOPE_WORDS
        elif tok in INTENSIFIERS:
            multiplier *= INTENSIFIERS[tok]
        elif tok in POST_INTENSIFIERS and last_weight_at == i - 1:
            weights[-1] *= POST_INTENSIFIERS[tok]
        elif tok in SENTIMENT:
            weight = SENTIMENT[tok] * multiplier
            weights.append(weight * NEGATION_FACTOR if negated else weight)
            negate_left, multiplier, last_weight_at = 0, 1.0, i
        elif negate_left:
            negate_left -= 1
        i += 1
    return _Scan(weights=weights, category_positions=positions, critical=critical)


def detect_language(text: str, hint: str | None = None) -> str:
    """Return "pt" or "en": the hint when it names one of them, else a marker-word vote.

    Ties go to Portuguese, the platform's main language (seed 000 is Brazilian).
    """
    if hint:
        code = hint.casefold()[:2]
        if code in ("pt", "en"):
            return code
    tokens = normalise_words(text)
    pt_votes = sum(tok in PT_MARKERS for tok in tokens)
    en_votes = sum(tok in EN_MARKERS for tok in tokens)
    if re.search(r"[ãõçáéíóúâêô]", text.casefold()):
        pt_votes += 2
    return "en" if en_votes > pt_votes else "pt"


def _label(score: float, *, rating: int, critical: bool, words_negative: bool) -> Sentiment:
    # A bare 1-star rating is not an alert: CRITICAL by score also needs negative words.
    if critical or (score <= CRITICAL_SCORE and rating == 1 and words_negative):
        return Sentiment.CRITICAL
    if score >= POSITIVE_THRESHOLD:
        return Sentiment.POSITIVE
    if score <= NEGATIVE_THRESHOLD:
        return Sentiment.NEGATIVE
    return Sentiment.NEUTRAL


_ABOUT = {
    "pt": {
        Category.DELIVERY_TIME: "sobre o tempo de entrega",
        Category.FOOD_QUALITY: "sobre a qualidade da comida",
        Category.TEMPERATURE: "sobre a temperatura do pedido",
        Category.PACKAGING: "sobre a embalagem",
        Category.PRICE: "sobre o preço",
        Category.SERVICE: "sobre o atendimento",
        Category.HYGIENE: "sobre a higiene",
        Category.OTHER: "sobre o seu pedido",
    },
    "en": {
        Category.DELIVERY_TIME: "about the delivery time",
        Category.FOOD_QUALITY: "about the quality of the food",
        Category.TEMPERATURE: "about the temperature of your order",
        Category.PACKAGING: "about the packaging",
        Category.PRICE: "about the price",
        Category.SERVICE: "about our service",
        Category.HYGIENE: "about hygiene",
        Category.OTHER: "about your order",
    },
}

_REPLIES = {
    ("pt", Sentiment.POSITIVE): "Muito obrigado pela avaliação! Ficamos felizes com o seu "
    "comentário {about}. Esperamos atendê-lo novamente em breve.",
    ("pt", Sentiment.NEUTRAL): "Obrigado pelo seu comentário {about}. Ele nos ajuda a "
    "melhorar a sua próxima experiência.",
    ("pt", Sentiment.NEGATIVE): "Lamentamos muito pela experiência. Agradecemos o retorno "
    "{about} e já estamos trabalhando para melhorar. Fale conosco pelo app para resolvermos.",
    ("pt", Sentiment.CRITICAL): "Sentimos muito pelo ocorrido. Levamos muito a sério o que "
    "você relatou {about} e nossa equipe vai investigar com prioridade. Por favor, entre em "
    "contato pelo app para que possamos ajudar.",
    ("en", Sentiment.POSITIVE): "Thank you so much for your review! We are glad to hear your "
    "feedback {about}. We hope to serve you again soon.",
    ("en", Sentiment.NEUTRAL): "Thank you for your feedback {about}. It helps us make your "
    "next order better.",
    ("en", Sentiment.NEGATIVE): "We are sorry about your experience. Thank you for the "
    "feedback {about}; we are already working on it. Please contact us in the app so we can "
    "make it right.",
    ("en", Sentiment.CRITICAL): "We are very sorry about what happened. We take what you "
    "reported {about} very seriously and our team will investigate it as a priority. Please "
    "contact us in the app so we can help.",
}


def reply_draft(*, language: str, label: Sentiment, main_category: Category) -> str:
    """A polite templated reply in ``language`` ("pt" or "en") naming the main topic."""
    lang = language if language in _ABOUT else "pt"
    return _REPLIES[(lang, label)].format(about=_ABOUT[lang][main_category])


def enrich_heuristic(review: ReviewInput) -> Enrichment:
    """Enrich one review without the network; same input, same output, always."""
    label, score, categories = provisional_label(review)
    language = detect_language(review.text, review.language)
    draft = reply_draft(language=language, label=label, main_category=Category(categories[0]))
    return Enrichment(label=label, score=score, categories=categories, reply_draft=draft)


def provisional_label(review: ReviewInput) -> tuple[Sentiment, float, tuple[str, ...]]:
    """The label, score and categories :func:`enrich_heuristic` gives, without the reply:
    what a review is counted with at first sight, before its enrichment joins."""
    rating = min(max(int(review.rating), 1), 5)
    prior = (rating - 3) / 2
    scan = _scan(normalise_words(review.text))
    total = sum(scan.weights)
    if scan.weights:
        lexical = total / math.sqrt(total * total + NORMALISATION_ALPHA)
        score = RATING_PRIOR_WEIGHT * prior + (1 - RATING_PRIOR_WEIGHT) * lexical
    else:
        score = prior
    score = round(min(max(score, -1.0), 1.0), 3)
    ordered = sorted(scan.category_positions, key=lambda c: scan.category_positions[c])
    if Category.HYGIENE in ordered:
        ordered.remove(Category.HYGIENE)
        ordered.insert(0, Category.HYGIENE)
    categories = tuple(c.value for c in ordered) or (Category.OTHER.value,)
    label = _label(score, rating=rating, critical=scan.critical, words_negative=total < 0)
    return label, score, categories
