"""Compatibility decisions for all seven levels, on a table of real schema changes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from schema_registry.compatibility import (
    CompatibilityLevel,
    check,
    ensure_compatible,
    parse_avro,
)
from schema_registry.errors import IncompatibleSchemaError, InvalidSchemaError


def record(*fields: dict[str, Any], name: str = "Review") -> str:
    return json.dumps({"type": "record", "name": name, "namespace": "t", "fields": list(fields)})


def field(name: str, type_: Any, **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def enum(symbols: list[str], **extra: Any) -> dict[str, Any]:
    return {"type": "enum", "name": "Label", "symbols": symbols, **extra}


def inner(*fields: dict[str, Any]) -> dict[str, Any]:
    return {"type": "record", "name": "Inner", "fields": list(fields)}


A = field("a", "int")

# (id, old schema, new schema, new can read old (backward), old can read new (forward))
CHANGES = [
    ("add-field-with-default", record(A), record(A, field("b", "string", default="")), True, True),
    ("add-field-without-default", record(A), record(A, field("b", "string")), False, True),
    (
        "remove-field-with-default",
        record(A, field("b", "string", default="")),
        record(A),
        True,
        True,
    ),
    ("remove-field-without-default", record(A, field("b", "string")), record(A), True, False),
    ("int-to-long", record(field("n", "int")), record(field("n", "long")), True, False),
    ("long-to-float", record(field("n", "long")), record(field("n", "float")), True, False),
    ("float-to-double", record(field("n", "float")), record(field("n", "double")), True, False),
    ("int-to-double", record(field("n", "int")), record(field("n", "double")), True, False),
    ("long-to-int", record(field("n", "long")), record(field("n", "int")), False, True),
    ("double-to-float", record(field("n", "double")), record(field("n", "float")), False, True),
    ("double-to-long", record(field("n", "double")), record(field("n", "long")), False, True),
    ("string-to-bytes", record(field("s", "string")), record(field("s", "bytes")), True, True),
    ("bytes-to-string", record(field("s", "bytes")), record(field("s", "string")), True, True),
    ("string-to-int", record(field("s", "string")), record(field("s", "int")), False, False),
    (
        "enum-symbol-added",
        record(field("e", enum(["A", "B"]))),
        record(field("e", enum(["A", "B", "C"]))),
        True,
        False,
    ),
    (
        "enum-symbol-added-old-has-default",
        record(field("e", enum(["A", "B"], default="A"))),
        record(field("e", enum(["A", "B", "C"], default="A"))),
        True,
        True,
    ),
    (
        "enum-symbol-removed",
        record(field("e", enum(["A", "B", "C"]))),
        record(field("e", enum(["A", "B"]))),
        False,
        True,
    ),
    (
        "enum-symbol-removed-new-has-default",
        record(field("e", enum(["A", "B", "C"]))),
        record(field("e", enum(["A", "B"], default="A"))),
        True,
        True,
    ),
    (
        "union-widened",
        record(field("u", ["null", "string"], default=None)),
        record(field("u", ["null", "string", "int"], default=None)),
        True,
        False,
    ),
    (
        "union-narrowed",
        record(field("u", ["null", "string", "int"], default=None)),
        record(field("u", ["null", "string"], default=None)),
        False,
        True,
    ),
    (
        "plain-type-made-nullable",
        record(field("u", "string")),
        record(field("u", ["null", "string"], default=None)),
        True,
        False,
    ),
    (
        "nested-record-field-added-without-default",
        record(field("in", inner(field("x", "int")))),
        record(field("in", inner(field("x", "int"), field("y", "int")))),
        False,
        True,
    ),
    (
        "nested-record-field-added-with-default",
        record(field("in", inner(field("x", "int")))),
        record(field("in", inner(field("x", "int"), field("y", "int", default=0)))),
        True,
        True,
    ),
    (
        "array-items-int-to-long",
        record(field("xs", {"type": "array", "items": "int"})),
        record(field("xs", {"type": "array", "items": "long"})),
        True,
        False,
    ),
    (
        "array-items-string-to-int",
        record(field("xs", {"type": "array", "items": "string"})),
        record(field("xs", {"type": "array", "items": "int"})),
        False,
        False,
    ),
    (
        "map-values-long-to-int",
        record(field("m", {"type": "map", "values": "long"})),
        record(field("m", {"type": "map", "values": "int"})),
        False,
        True,
    ),
    (
        "map-values-record-field-added-with-default",
        record(field("m", {"type": "map", "values": inner(field("x", "int"))})),
        record(
            field(
                "m",
                {
                    "type": "map",
                    "values": inner(field("x", "int"), field("y", "string", default="")),
                },
            )
        ),
        True,
        True,
    ),
    ("record-renamed", record(A), record(A, name="Renamed"), False, False),
    ("unchanged", record(A), record(A), True, True),
]


def expected(level: CompatibilityLevel, backward: bool, forward: bool) -> bool:
    if level is CompatibilityLevel.NONE:
        return True
    if level.value.startswith("BACKWARD"):
        return backward
    if level.value.startswith("FORWARD"):
        return forward
    return backward and forward


@pytest.mark.parametrize("level", list(CompatibilityLevel), ids=str)
@pytest.mark.parametrize(
    ("old", "new", "backward", "forward"), [c[1:] for c in CHANGES], ids=[c[0] for c in CHANGES]
)
def test_one_change_against_one_previous_version(level, old, new, backward, forward):
    messages = check(parse_avro(new), [parse_avro(old)], level)
    assert (not messages) is expected(level, backward, forward), messages


def test_incompatibility_messages_name_the_direction_the_kind_and_the_field():
    messages = check(
        parse_avro(record(A, field("b", "string"))), [parse_avro(record(A))], "BACKWARD"
    )
    assert len(messages) == 1
    assert "BACKWARD vs version 1" in messages[0]
    assert "READER_FIELD_MISSING_DEFAULT_VALUE" in messages[0]
    assert "/fields/1" in messages[0]
    assert ": b" in messages[0]


# Three versions where the newest is compatible with the latest but not with the first.
BACKWARD_CHAIN = [
    record(A),
    record(A, field("b", "string", default="")),
    record(A, field("b", "string")),
]
FORWARD_CHAIN = [
    record(A, field("b", "string")),
    record(A, field("b", "string", default="")),
    record(A),
]


@pytest.mark.parametrize(
    ("chain", "level", "ok"),
    [
        (BACKWARD_CHAIN, "BACKWARD", True),
        (BACKWARD_CHAIN, "BACKWARD_TRANSITIVE", False),
        (BACKWARD_CHAIN, "FULL", True),
        (BACKWARD_CHAIN, "FULL_TRANSITIVE", False),
        (FORWARD_CHAIN, "FORWARD", True),
        (FORWARD_CHAIN, "FORWARD_TRANSITIVE", False),
        (FORWARD_CHAIN, "FULL", True),
        (FORWARD_CHAIN, "FULL_TRANSITIVE", False),
        (FORWARD_CHAIN, "NONE", True),
    ],
)
def test_transitive_levels_check_every_version_not_only_the_latest(chain, level, ok):
    *previous, new = (parse_avro(text) for text in chain)
    messages = check(new, previous, level, versions=[1, 2])
    assert (not messages) is ok, messages
    if not ok:
        assert all("version 1" in message for message in messages)


def test_a_new_subject_is_compatible_at_every_level():
    assert all(not check(parse_avro(record(A)), [], level) for level in CompatibilityLevel)


def test_levels_parse_in_any_case_and_reject_unknown_names():
    assert CompatibilityLevel.parse("full_transitive") is CompatibilityLevel.FULL_TRANSITIVE
    with pytest.raises(ValueError):
        CompatibilityLevel.parse("SIDEWAYS")


def test_ensure_compatible_raises_with_subject_and_messages():
    with pytest.raises(IncompatibleSchemaError) as info:
        ensure_compatible(
            "reviews-value", parse_avro(record(field("a", "string"))), [parse_avro(record(A))]
        )
    assert info.value.subject == "reviews-value"
    assert info.value.messages and "TYPE_MISMATCH" in info.value.messages[0]


def test_invalid_avro_is_an_invalid_schema_error():
    with pytest.raises(InvalidSchemaError):
        parse_avro('{"type": "record", "name": "X", "fields": [{"name": "a", "type": "nosuch"}]}')


def test_schemas_avro_warns_about_are_accepted_without_warnings():
    # avro warns (IgnoredLogicalType) on a bad decimal and reads it as plain bytes, as
    # Java Avro and Confluent's registry do; with filterwarnings=error this would raise.
    parsed = parse_avro('{"type": "bytes", "logicalType": "decimal", "precision": -1}')
    assert parsed.type == "bytes"
