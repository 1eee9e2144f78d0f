"""Timestamps read with a reader schema come out as epoch milliseconds, whatever the writer said.

Avro's schema resolution ignores logical types, so a registry accepts a writer whose
``occurred_at`` is ``local-timestamp-millis``, ``timestamp-micros``, ``date`` (an int of
days), a plain ``long`` or a plain ``int`` where our reader says ``timestamp-millis``.
fastavro then converts by the *writer's* logical type: a naive datetime, a ``date``, a
``time``, or a bare number, which the stages cannot compare or would crash on; and an
aware datetime beyond year 9999 raises inside fastavro. So, when bytes are read with a
reader schema (:func:`schema_registry.serde.decode`), the writer schema is read with its
int/long logical types removed (every such value is the number on the wire), and each
field the *reader* declares ``timestamp-millis`` is converted from the writer's unit:

=================================================  =====================================
writer's type of the field                         value returned
=================================================  =====================================
``timestamp-millis``, plain ``long`` or ``int``    the number, epoch ms
``local-timestamp-millis``                         the number, read as UTC epoch ms (the
                                                   writer's zone is unknowable; the
                                                   event-time skew bound catches a
                                                   producer far from UTC)
``timestamp-micros``, ``local-timestamp-micros``   the number // 1,000
``timestamp-nanos``, ``local-timestamp-nanos``     the number // 1,000,000
``date``, ``time-millis``, ``time-micros``         :class:`LogicalTypeMismatchError`
                                                   (``logical_type_mismatch``): a day or
                                                   a time of day cannot place an event
                                                   in a window
=================================================  =====================================

Range checks are not done here: a number is a number; :mod:`streams.validation` bounds
event times. Fields of the reader with other int/long logical types (none in
``avro_schemas/``) come out as the raw number too. Timestamps inside arrays or maps are
not converted (none in ``avro_schemas/``); nested records and ``["null", timestamp]``
unions are.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from typing import Any

import fastavro

from schema_registry.errors import LogicalTypeMismatchError

_INTERNAL_KEYS = frozenset({"__fastavro_parsed", "__named_schemas"})
READER_TIMESTAMP = "timestamp-millis"

# Divisor to epoch ms per writer logical type (None: a plain int or long).
_DIVISORS: dict[str | None, int] = {
    None: 1,
    "timestamp-millis": 1,
    "local-timestamp-millis": 1,
    "timestamp-micros": 1_000,
    "local-timestamp-micros": 1_000,
    "timestamp-nanos": 1_000_000,
    "local-timestamp-nanos": 1_000_000,
}

# Distinct (writer, reader) pairs an app meets are few; far fewer than this.
_CACHE_SIZE = 1024

Converter = Callable[[int], int]


def _strip(node: Any) -> Any:
    """A JSON copy of a parsed schema without int/long logical types or fastavro's keys."""
    if isinstance(node, list):
        return [_strip(branch) for branch in node]
    if not isinstance(node, Mapping):
        return node
    if node.get("type") in ("int", "long") and "logicalType" in node:
        return node["type"]
    return {k: _strip(v) for k, v in node.items() if k not in _INTERNAL_KEYS}


def _resolve(node: Any, named: Mapping[str, Any]) -> Any:
    return named.get(node, node) if isinstance(node, str) else node


def _int_logicals(node: Any, named: Mapping[str, Any]) -> set[str | None]:
    """The logical types (None: plain) of the int/long branches of a writer field type."""
    found: set[str | None] = set()
    for branch in node if isinstance(node, list) else [node]:
        branch = _resolve(branch, named)
        if branch in ("int", "long"):
            found.add(None)
        elif isinstance(branch, Mapping) and branch.get("type") in ("int", "long"):
            found.add(branch.get("logicalType"))
    return found


def _is_reader_timestamp(node: Any) -> bool:
    branches = node if isinstance(node, list) else [node]
    return any(isinstance(b, Mapping) and b.get("type") == "long"
               and b.get("logicalType") == READER_TIMESTAMP for b in branches)


def _record_of(node: Any, named: Mapping[str, Any]) -> Mapping[str, Any] | None:
    node = _resolve(node, named)
    return node if isinstance(node, Mapping) and node.get("type") == "record" else None


def _converter(path: str, logicals: set[str | None]) -> Converter:
    if len(logicals) != 1:
        kinds = sorted(str(x) for x in logicals) or ["no int or long"]
        message = f"writer's {path} is {' or '.join(kinds)}, reader needs {READER_TIMESTAMP}"
    else:
        [logical] = logicals
        if logical in _DIVISORS:
            divisor = _DIVISORS[logical]
            return (lambda v: v) if divisor == 1 else (lambda v: v // divisor)
        message = (f"writer's {path} is {logical}, reader needs {READER_TIMESTAMP}: "
                   f"a {logical} cannot place an event in time")

    def refuse(_value: int) -> int:
        raise LogicalTypeMismatchError(message)

    return refuse


def _plan(writer: Any, reader: Any, w_named: Mapping[str, Any], r_named: Mapping[str, Any],
          prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Converter]]:
    """(path, converter) for every reader timestamp-millis field reachable through records."""
    w_record, r_record = _record_of(writer, w_named), _record_of(reader, r_named)
    if w_record is None or r_record is None:
        return []
    w_fields = {f["name"]: f for f in w_record["fields"]}
    steps: list[tuple[tuple[str, ...], Converter]] = []
    for field in r_record["fields"]:
        names = [field["name"], *field.get("aliases", ())]
        w_field = next((w_fields[n] for n in names if n in w_fields), None)
        if w_field is None:
            continue  # the reader's default fills it: already in the reader's unit
        path = (*prefix, field["name"])
        if _is_reader_timestamp(field["type"]):
            logicals = _int_logicals(w_field["type"], w_named)
            steps.append((path, _converter(".".join(path), logicals)))
        else:
            steps.extend(_plan(w_field["type"], field["type"], w_named, r_named, path))
    return steps


class _Plans:
    """Stripped writer schemas and conversion steps, per (writer, reader) parsed pair."""

    def __init__(self) -> None:
        self._by_pair: dict[tuple[int, int], tuple[Any, Any, Any, list[Any]]] = {}
        self._lock = threading.Lock()

    def get(self, writer: Any, reader: Any) -> tuple[Any, list[tuple[tuple[str, ...], Converter]]]:
        key = (id(writer), id(reader))
        entry = self._by_pair.get(key)
        if entry is None:
            named_w = writer.get("__named_schemas", {}) if isinstance(writer, Mapping) else {}
            named_r = reader.get("__named_schemas", {}) if isinstance(reader, Mapping) else {}
            stripped = fastavro.parse_schema(_strip(writer))
            # The objects are kept in the entry, so their ids cannot be reused while cached.
            entry = (writer, reader, stripped, _plan(writer, reader, named_w, named_r))
            with self._lock:
                if len(self._by_pair) >= _CACHE_SIZE:
                    self._by_pair.clear()
                self._by_pair[key] = entry
        return entry[2], entry[3]

    def forget(self, writer: Any) -> None:
        """Drop the plans of a writer schema its cache let go (they hold it alive)."""
        with self._lock:
            for key in [k for k in self._by_pair if k[0] == id(writer)]:
                del self._by_pair[key]


PLANS = _Plans()


def apply(value: Any, steps: list[tuple[tuple[str, ...], Converter]]) -> Any:
    """Convert the timestamp fields of a decoded value in place; return it."""
    for path, convert in steps:
        node = value
        for name in path[:-1]:
            node = node.get(name) if isinstance(node, dict) else None
        if isinstance(node, dict):
            raw = node.get(path[-1])
            if isinstance(raw, int):
                node[path[-1]] = convert(raw)
    return value
