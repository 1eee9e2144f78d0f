"""How PII redaction's time grows with the text: crafted inputs against a normal review.

``python -m bench.redact_scaling`` prints microseconds per ``redact_pii`` call for each
crafted family and for a normal review at 2,500 / 5,000 / 10,000 / 20,000 characters, and
the ratio of the time at 20,000 to the time at 2,500: about 8 when redaction is linear,
about 64 when it is quadratic (issue 30, finding 10). Review texts are capped at 5,000
characters (``text_max_chars``); the larger sizes show the trend. Figures, not assertions.
"""

from __future__ import annotations

import argparse
import timeit
from collections.abc import Callable

from agents.llm.redact import redact_pii

SIZES = (2_500, 5_000, 10_000, 20_000)
BUDGET_S = 0.05  # time one measurement aims for: enough calls of a fast family to read µs


def _cycle(unit: str, chars: int) -> str:
    return (unit * (chars // len(unit) + 1))[:chars]


# name -> text of ``chars`` characters. The first ones are what the issue reported: a long
# run of e-mail local-part characters (letters, digits, dots, dashes) in a text holding an "@".
FAMILIES: dict[str, Callable[[int], str]] = {
    "letters, then @": lambda chars: "a" * (chars - 1) + "@",
    "@, then letters": lambda chars: "@" + "a" * (chars - 1),
    "digits, then @": lambda chars: "1" * (chars - 1) + "@",
    "digits and dots, then @": lambda chars: _cycle("1.", chars - 1) + "@",
    "digits and dashes, then @": lambda chars: _cycle("9-", chars - 1) + "@",
    "a@, then dotted labels": lambda chars: "a@" + _cycle("b.", chars - 2),
    "+ and 24 digits": lambda chars: _cycle("+" + "1" * 24 + " ", chars),
    "+ and 23 digits, a letter": lambda chars: _cycle("+" + "1" * 23 + "x ", chars),
    "spaced digits": lambda chars: _cycle("1 2 3 4 5 6 7 8 9 ", chars),
    "digits, double spaces": lambda chars: _cycle("1  ", chars),
    "written e-mail near-misses": lambda chars: _cycle("joao at gmail dot ", chars),
    "normal review": lambda chars: _cycle(
        "A pizza chegou fria e o entregador demorou 40 minutos. Paguei R$ 45,90, liguei para "
        "(11) 98765-4321 e escrevi para joao.silva@exemplo.com.br, sem resposta. ", chars),
}


def _us_per_call(text: str, repeat: int) -> float:
    once_s = timeit.timeit(lambda: redact_pii(text), number=1)
    number = max(1, int(BUDGET_S / max(once_s, 1e-9)))
    return min(timeit.repeat(lambda: redact_pii(text), number=number, repeat=repeat)) / number * 1e6


def run(repeat: int) -> None:
    print(f"{'us per call':<28}" + "".join(f"{size:>10,}" for size in SIZES) + f"{'20k/2.5k':>10}")
    for name, make in FAMILIES.items():
        us = [_us_per_call(make(size), repeat) for size in SIZES]
        print(f"{name:<28}" + "".join(f"{u:>10.0f}" for u in us) + f"{us[-1] / us[0]:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timings per cell; the best is printed")
    run(parser.parse_args().repeat)


if __name__ == "__main__":
    main()
