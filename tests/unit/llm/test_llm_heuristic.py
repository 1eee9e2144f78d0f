"""The lexicon fallback: languages, negation, rating prior, categories, CRITICAL, replies."""

from __future__ import annotations

import pytest

from agents.llm.heuristic import detect_language, enrich_heuristic
from agents.llm.labels import ReviewInput, Sentiment


def review(text: str, rating: int = 3, language: str | None = None) -> ReviewInput:
    return ReviewInput(ref="r1", text=text, rating=rating, language=language)


def test_seed_example_is_negative_about_delivery_and_temperature() -> None:
    result = enrich_heuristic(review("Demorou demais. A comida chegou fria.", rating=2))
    assert result.label is Sentiment.NEGATIVE
    assert result.categories[0] == "delivery_time"
    assert "temperature" in result.categories
    assert result.reply_draft.startswith("Lamentamos")
    assert "tempo de entrega" in result.reply_draft


def test_english_praise_is_positive_with_english_reply() -> None:
    result = enrich_heuristic(review("Great food, delicious and fast delivery!", rating=5))
    assert result.label is Sentiment.POSITIVE
    assert result.score > 0.5
    assert {"food_quality", "delivery_time"} <= set(result.categories)
    assert result.reply_draft.startswith("Thank you")


@pytest.mark.parametrize(
    ("plain", "negated"),
    [
        ("estava frio", "não estava frio"),
        ("good", "not good"),
        ("bom", "nada bom"),
        ("late", "never late"),
        ("the food wasn't good", "the food was good"),
    ],
)
def test_negation_flips_the_sign_of_the_word_score(plain: str, negated: str) -> None:
    # With a neutral rating the sign of the score is the sign of the words.
    first = enrich_heuristic(review(plain)).score
    second = enrich_heuristic(review(negated)).score
    assert first != 0 and second != 0
    assert (first > 0) != (second > 0)


def test_intensifier_strengthens_the_word() -> None:
    assert enrich_heuristic(review("muito ruim")).score < enrich_heuristic(review("ruim")).score


def test_rating_prior_decides_when_text_has_no_sentiment_words() -> None:
    assert enrich_heuristic(review("pedido número 42", rating=5)).score == 1.0
    assert enrich_heuristic(review("pedido número 42", rating=3)).label is Sentiment.NEUTRAL
    assert enrich_heuristic(review("pedido número 42", rating=2)).score == -0.5


def test_rating_prior_is_blended_with_the_words() -> None:
    low = enrich_heuristic(review("bom", rating=2)).score
    high = enrich_heuristic(review("bom", rating=5)).score
    assert low < high


@pytest.mark.parametrize(
    ("text", "category"),
    [
        ("o pedido atrasou uma hora", "delivery_time"),
        ("took forever to arrive", "delivery_time"),
        ("the fries were cold", "temperature"),
        ("a embalagem vazou", "packaging"),
        ("the soup leaked everywhere", "packaging"),
        ("muito caro pelo que é", "price"),
        ("way too expensive", "price"),
        ("o entregador foi grosso", "service"),
        ("the driver was rude", "service"),
        ("sabor sem graça", "food_quality"),
        ("the burger was bland", "food_quality"),
        ("achei uma barata", "hygiene"),
        ("ok", "other"),
    ],
)
def test_categories_from_keywords_in_both_languages(text: str, category: str) -> None:
    assert category in enrich_heuristic(review(text)).categories


@pytest.mark.parametrize(
    "text",
    [
        "Achei um cabelo na comida",
        "there was a cockroach in the box",
        "tive intoxicação alimentar depois de comer",
        "I got food poisoning",
        "a cozinha parece suja",
    ],
)
def test_hygiene_and_health_terms_make_a_review_critical(text: str) -> None:
    result = enrich_heuristic(review(text, rating=4))
    assert result.label is Sentiment.CRITICAL
    assert result.categories[0] == "hygiene"


def test_negated_hygiene_term_is_not_critical() -> None:
    result = enrich_heuristic(review("no hair, clean kitchen, great", rating=5))
    assert result.label is Sentiment.POSITIVE
    assert "hygiene" not in result.categories


def test_very_negative_one_star_is_critical_but_bare_one_star_is_not() -> None:
    assert enrich_heuristic(review("Péssimo, horrível", rating=1)).label is Sentiment.CRITICAL
    assert enrich_heuristic(review("pedido 42", rating=1)).label is Sentiment.NEGATIVE


def test_language_hint_wins_and_detection_falls_back_to_markers() -> None:
    assert detect_language("whatever", "pt-BR") == "pt"
    assert detect_language("A comida estava boa") == "pt"
    assert detect_language("The food was good and hot") == "en"
    english_reply = enrich_heuristic(review("bom", language="en")).reply_draft
    assert english_reply.startswith("Thank")


def test_same_input_same_output() -> None:
    text = "Demorou, mas a pizza estava excelente"
    assert enrich_heuristic(review(text, 4)) == enrich_heuristic(review(text, 4))
