"""PII redaction: every kind is replaced, look-alike numbers are not."""

from __future__ import annotations

import pytest

from agents.llm.redact import cnpj_is_valid, cpf_is_valid, luhn_is_valid, redact_pii


@pytest.mark.parametrize(
    ("text", "expected", "kind"),
    [
        ("fale comigo: joao.silva+food@example.com.br ok", "fale comigo: [EMAIL] ok", "EMAIL"),
        ("ligue (11) 98765-4321 agora", "ligue [PHONE] agora", "PHONE"),
        ("ligue +55 11 98765 4321", "ligue [PHONE]", "PHONE"),
        ("fixo +55 (21) 3456-7890", "fixo [PHONE]", "PHONE"),
        ("zap 11 98765-4321.", "zap [PHONE].", "PHONE"),
        ("zap 11987654321", "zap [PHONE]", "PHONE"),
        ("+5511987654321", "[PHONE]", "PHONE"),
        ("call +1 415-555-2671", "call [PHONE]", "PHONE"),
        ("call +44 20 7946 0958", "call [PHONE]", "PHONE"),
        ("meu cpf 123.456.789-09", "meu cpf [CPF]", "CPF"),
        ("cpf 12345678909", "cpf [CPF]", "CPF"),
        ("cnpj 12.345.678/0001-95", "cnpj [CNPJ]", "CNPJ"),
        ("cnpj 12345678000195", "cnpj [CNPJ]", "CNPJ"),
        ("card 4111 1111 1111 1111", "card [CARD]", "CARD"),
        ("card 4111-1111-1111-1111", "card [CARD]", "CARD"),
        ("card 5500005555555559 please", "card [CARD] please", "CARD"),
        ("amex 3782 822463 10005", "amex [CARD]", "CARD"),
    ],
)
def test_each_pii_kind_is_replaced_by_its_token(text: str, expected: str, kind: str) -> None:
    result = redact_pii(text)
    assert result.text == expected
    assert result.counts == {kind: 1}


@pytest.mark.parametrize(
    "text",
    [
        "pedido #12345678 chegou",
        "order 100200300400 was wrong",
        "nota fiscal 12345678901",  # 11 digits, CPF check digits fail
        "protocolo 12345678000100",  # 14 digits, CNPJ check digits fail
        "card-like 1234567890123456 without Luhn",
        "entregue em 12/05/2024 às 19:30",
        "data 2024-05-12, total R$ 1.234,56",
        "paguei R$ 45,90 por 2 pizzas",
        "nota 10/10, 5 estrelas, mesa 12",
        "CEP 01310-100",
        "tracking 1Z999AA10123456784",
    ],
)
def test_look_alike_numbers_are_left_alone(text: str) -> None:
    result = redact_pii(text)
    assert result.text == text
    assert result.total == 0


def test_counts_add_up_across_kinds() -> None:
    text = "a@b.com, c@d.org, (11) 98765-4321, 123.456.789-09 e 4111 1111 1111 1111"
    result = redact_pii(text)
    assert result.counts == {"EMAIL": 2, "PHONE": 1, "CPF": 1, "CARD": 1}
    assert result.total == 5
    assert not any(ch.isdigit() for ch in result.text)


def test_check_digit_validators() -> None:
    assert cpf_is_valid("123.456.789-09")
    assert not cpf_is_valid("123.456.789-00")
    assert not cpf_is_valid("111.111.111-11")
    assert cnpj_is_valid("12.345.678/0001-95")
    assert not cnpj_is_valid("12.345.678/0001-90")
    assert luhn_is_valid("4111 1111 1111 1111")
    assert not luhn_is_valid("4111 1111 1111 1112")
