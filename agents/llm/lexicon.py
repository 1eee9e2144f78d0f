"""Word lists (Portuguese and English) for the heuristic enricher, accent-free and lower case.

Weights are hand-set on a -3..+3 scale (VADER's convention) and tuned only against
the unit tests and the sample traffic; they are a fallback, not a model. Every entry is
written without accents because the heuristic strips accents before matching, so
"péssimo" and "pessimo" (common on phone keyboards) score the same.
"""

from __future__ import annotations

from agents.llm.labels import Category


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


def _weights(text: str) -> dict[str, float]:
    pairs = (item.rsplit(":", 1) for item in text.split())
    return {word: float(weight) for word, weight in pairs}


def _phrase_weights(text: str) -> dict[tuple[str, ...], float]:
    return {tuple(k.split("_")): v for k, v in _weights(text).items()}


# Multi-word expressions (words joined by _), matched before single words; a phrase
# consumes its tokens.
PHRASES: dict[tuple[str, ...], float] = _phrase_weights(
    """
    sem_sabor:-2 sem_gosto:-2 nunca_mais:-2.5 never_again:-2.5 passei_mal:-3
    food_poisoning:-3 got_sick:-3 mal_educado:-2 mal_educada:-2 took_forever:-2
    nada_demais:-0.5
"""
)

# Phrases that are about one category; the health ones also make a review CRITICAL.
PHRASE_CATEGORIES: dict[tuple[str, ...], Category] = {
    ("sem", "sabor"): Category.FOOD_QUALITY,
    ("sem", "gosto"): Category.FOOD_QUALITY,
    ("took", "forever"): Category.DELIVERY_TIME,
    ("mal", "educado"): Category.SERVICE,
    ("mal", "educada"): Category.SERVICE,
    ("passei", "mal"): Category.HYGIENE,
    ("food", "poisoning"): Category.HYGIENE,
    ("got", "sick"): Category.HYGIENE,
}

SENTIMENT: dict[str, float] = _weights(
    """
    bom:1.5 boa:1.5 otimo:2.5 otima:2.5 excelente:3 perfeito:3 perfeita:3 delicioso:2.5
    deliciosa:2.5 gostoso:2 gostosa:2 saboroso:2 saborosa:2 maravilhoso:3 maravilhosa:3
    adorei:2.5 amei:3 gostei:2 recomendo:2 rapido:1.5 rapida:1.5 quentinho:1.5
    quentinha:1.5 incrivel:3 top:2 caprichado:2 caprichada:2 fresco:1 fresca:1
    educado:1.5 educada:1.5 atencioso:1.5 atenciosa:1.5 pontual:1.5 satisfeito:2
    satisfeita:2 parabens:2.5 show:2 limpo:1 limpa:1 good:1.5 great:2.5 excellent:3
    delicious:2.5 tasty:2 amazing:3 perfect:3 love:2.5 loved:2.5 fresh:1 fast:1.5
    quick:1.5 friendly:1.5 recommend:2 awesome:3 nice:1.5 best:2.5 yummy:2 polite:1.5
    punctual:1.5 hot:0.5 clean:1

    ruim:-2 pessimo:-3 pessima:-3 horrivel:-3 terrivel:-3 frio:-1.5 fria:-1.5 frios:-1.5
    frias:-1.5 demorou:-1.5 demorada:-1.5 demorado:-1.5 demora:-1.5 atrasou:-1.5
    atrasado:-1.5 atrasada:-1.5 atraso:-1.5 sujo:-2.5 suja:-2.5 nojento:-3 nojenta:-3
    nojo:-3 cru:-2 crua:-2 queimado:-2 queimada:-2 insosso:-1.5 insossa:-1.5 vazou:-2
    vazando:-2 derramou:-2 amassado:-1 amassada:-1 caro:-1 carissimo:-2 carissima:-2
    errado:-1.5 errada:-1.5 faltou:-1.5 faltando:-1.5 decepcionante:-2.5 decepcao:-2.5
    decepcionado:-2.5 decepcionada:-2.5 grosso:-2 grossa:-2 lento:-1.5 estragado:-3
    estragada:-3 podre:-3 azedo:-2.5 azeda:-2.5 mal:-1.5 pior:-2.5 salgado:-1 salgada:-1
    gelado:-1 gelada:-1 morno:-1 morna:-1 bad:-2 terrible:-3 awful:-3 horrible:-3
    cold:-1.5 late:-1.5 delay:-1.5 delayed:-1.5 slow:-1.5 dirty:-2.5 rude:-2 bland:-1.5
    raw:-2 burnt:-2 soggy:-1.5 leaked:-2 leaking:-2 spilled:-2 expensive:-1
    overpriced:-2 wrong:-1.5 missing:-1.5 disgusting:-3 worst:-3 poor:-2 stale:-2
    rotten:-3 undercooked:-2 lukewarm:-1 disappointing:-2.5 disappointed:-2.5 gross:-2.5
"""
)

# Words that flip the polarity of the next few sentiment words ("não estava frio").
NEGATORS: frozenset[str] = _words(
    """
    hardly jamais nada nao nem never no nor not nothing nunca sem without
"""
)
# Multipliers for the next sentiment word; POST_ ones work backwards ("demorou demais").
INTENSIFIERS: dict[str, float] = _weights(
    """
    muito:1.5 muita:1.5 super:1.5 extremamente:1.8 bem:1.3 totalmente:1.5 very:1.5
    really:1.5 extremely:1.8 so:1.3 too:1.3 pouco:0.5 slightly:0.5 bit:0.5 meio:0.6
"""
)
POST_INTENSIFIERS: dict[str, float] = {"demais": 1.5, "mesmo": 1.2}

# Non-negated, these make a review CRITICAL (health and safety, seed 000 §4.3).
HYGIENE_CRITICAL: frozenset[str] = _words(
    """
    alergia alergica alergico allergic anaphylaxis barata baratas bug bugs cabelo
    cabelos cockroach cockroaches diarreia diarrhea dirty estragada estragado hair
    insect inseto insetos intoxicacao intoxicada intoxicado larva mofada mofado mofo
    mold moldy mosca podre poisoning roach rotten suja sujeira sujo verme vomit
    vomitando vomited vomitei vomiting vomito worm
"""
)

CATEGORY_WORDS: dict[Category, frozenset[str]] = {
    Category.DELIVERY_TIME: _words(
        """
        atrasada atrasado atraso atrasou delay delayed delivery demora demorada demorado
        demorando demorou entrega fast forever hora horas hour hours late minutes pontual
        punctual quick rapida rapido slow
        """
    ),
    Category.TEMPERATURE: _words(
        """
        cold fria frias frio frios gelada gelado hot lukewarm morna morno quente quentinha
        quentinho warm
        """
    ),
    Category.PACKAGING: _words(
        """
        amassada amassado container derramado derramou embalagem embalagens lacre leaked
        leaking lid package packaging seal sealed spilled tampa vazado vazando vazou
        """
    ),
    Category.PRICE: _words(
        """
        barato carissima carissimo caro caros cheap cost custo expensive overpriced preco
        precos price prices pricey
        """
    ),
    Category.SERVICE: _words(
        """
        atenciosa atencioso atendente atendimento courier driver educada educado entregador
        entregadora friendly garcom grossa grosso motoboy polite rude service staff suporte
        support waiter
        """
    ),
    Category.HYGIENE: HYGIENE_CRITICAL,
    Category.FOOD_QUALITY: _words(
        """
        arroz batata bland burger burnt carne comida cru crua deliciosa delicioso delicious
        dish flavor flavour food frango fresh gosto gostosa gostoso hamburguer insossa
        insosso lanche massa meal overcooked pizza porcao portion prato queimada queimado
        raw sabor saborosa saboroso salgada salgado salty soggy stale sushi taste tasty
        temperado tempero undercooked
        """
    ),
}

# Function words that tell Portuguese from English when the event has no language.
PT_MARKERS: frozenset[str] = _words(
    """
    bem chegou com comida da de do e entrega estava ficou foi mas muito nao o para
    pedido que uma veio
"""
)
EN_MARKERS: frozenset[str] = _words(
    """
    and arrived but delivery food is it my not of order the this too very was were with
"""
)
