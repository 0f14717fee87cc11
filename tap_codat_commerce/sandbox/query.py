"""Codat's query language: parse, evaluate, and spot the modifiedDate-range fast path.

Grammar (as Codat documents it)::

    expr   := term ('||' term)*
    term   := factor ('&&' factor)*
    factor := '{' expr '}' | path OP value
    OP     := '!=' | '>=' | '<=' | '=' | '>' | '<' | '~'

Values are bare (no quotes) and run to the next ``&&``, ``||`` or ``}``.
Dotted paths reach into objects; a missing or null value never matches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

MALFORMED = "Error parsing query - Malformed query."
_OPERATORS = ("!=", ">=", "<=", "=", ">", "<", "~")
_PATH = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}")


class QueryError(ValueError):
    """A query Codat would answer with 400."""


@dataclass(frozen=True)
class Comparison:
    path: str
    op: str
    value: str


@dataclass(frozen=True)
class BoolOp:
    op: str  # "&&" or "||"
    items: tuple[Node, ...]


Node = Comparison | BoolOp


def parse(text: str, known_fields: frozenset[str] | None = None) -> Node:
    """Parse a query; ``known_fields`` (top-level names) turns unknown ones into 400s."""
    parser = _Parser(text)
    node = parser.expr()
    parser.skip_spaces()
    if parser.pos != len(text):
        raise QueryError(MALFORMED)
    for comparison in _comparisons(node):
        # Codat reads a date field's bound as a date: `1-01-01T00:00:00Z` is no date
        if (comparison.path.endswith("Date") and comparison.op in (">", ">=", "<", "<=")
                and parse_timestamp(comparison.value) is None):
            raise QueryError(MALFORMED)
    if known_fields is not None:
        for comparison in _comparisons(node):
            root = comparison.path.split(".", 1)[0]
            if root not in known_fields:
                raise QueryError(f"Could not resolve property {root} on Dataset")
    return node


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0

    def skip_spaces(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos].isspace():
            self.pos += 1

    def _take(self, token: str) -> bool:
        self.skip_spaces()
        if self.text.startswith(token, self.pos):
            self.pos += len(token)
            return True
        return False

    def expr(self) -> Node:
        items = [self.term()]
        while self._take("||"):
            items.append(self.term())
        return items[0] if len(items) == 1 else BoolOp("||", tuple(items))

    def term(self) -> Node:
        items = [self.factor()]
        while self._take("&&"):
            items.append(self.factor())
        return items[0] if len(items) == 1 else BoolOp("&&", tuple(items))

    def factor(self) -> Node:
        if self._take("{"):
            node = self.expr()
            if not self._take("}"):
                raise QueryError(MALFORMED)
            return node
        match = _PATH.match(self.text, self.pos)
        if not match:
            raise QueryError(MALFORMED)
        self.pos = match.end()
        op = next((o for o in _OPERATORS if self.text.startswith(o, self.pos)), None)
        if op is None:
            raise QueryError(MALFORMED)
        self.pos += len(op)
        end = len(self.text)
        for stop in ("&&", "||", "}"):
            found = self.text.find(stop, self.pos)
            if found != -1:
                end = min(end, found)
        value = self.text[self.pos : end].strip()
        if not value or value[0] in "=<>!~{":
            raise QueryError(MALFORMED)
        self.pos = end
        return Comparison(match.group(1), op, value)


def _comparisons(node: Node) -> list[Comparison]:
    if isinstance(node, Comparison):
        return [node]
    return [c for item in node.items for c in _comparisons(item)]


def _only_and(node: Node) -> bool:
    return isinstance(node, Comparison) or (node.op == "&&" and all(_only_and(i) for i in node.items))


def parse_timestamp(text: str) -> float | None:
    """Seconds since the epoch for any date form Codat uses; None if not a date."""
    if not _DATE.match(text):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def resolve(record: dict[str, Any], path: str) -> Any:
    value: Any = record
    for part in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _compare(actual: Any, op: str, expected: str) -> bool:
    if actual is None or isinstance(actual, list | dict):
        return False
    if op == "~":
        return isinstance(actual, str) and expected.lower() in actual.lower()
    left: Any
    right: Any
    if isinstance(actual, bool):
        left, right = str(actual).lower(), expected.lower()
    elif isinstance(actual, int | float):
        try:
            left, right = float(actual), float(expected)
        except ValueError:
            return False
    else:
        left_ts, right_ts = parse_timestamp(actual), parse_timestamp(expected)
        if left_ts is not None and right_ts is not None:
            left, right = left_ts, right_ts
        else:
            left, right = actual.lower(), expected.lower()
    return {
        "=": left == right,
        "!=": left != right,
        ">": left > right,
        "<": left < right,
        ">=": left >= right,
        "<=": left <= right,
    }[op]


def matches(node: Node, record: dict[str, Any]) -> bool:
    if isinstance(node, Comparison):
        return _compare(resolve(record, node.path), node.op, node.value)
    results = (matches(item, record) for item in node.items)
    return all(results) if node.op == "&&" else any(results)


@dataclass(frozen=True)
class TimeRange:
    """A window on modifiedDate: lower/upper bounds in epoch seconds."""

    lower: float = float("-inf")
    lower_inclusive: bool = True
    upper: float = float("inf")
    upper_inclusive: bool = True


def modified_range(node: Node | None, field: str = "modifiedDate") -> TimeRange | None:
    """The window when ``node`` is only range comparisons on ``field`` joined by &&."""
    if node is None:
        return TimeRange()
    if not _only_and(node):
        return None
    window = TimeRange()
    for comparison in _comparisons(node):
        ts = parse_timestamp(comparison.value)
        if comparison.path != field or ts is None or comparison.op not in (">", ">=", "<", "<="):
            return None
        if comparison.op in (">", ">="):
            inclusive = comparison.op == ">="
            if ts > window.lower or (ts == window.lower and not inclusive):
                window = TimeRange(ts, inclusive, window.upper, window.upper_inclusive)
        else:
            inclusive = comparison.op == "<="
            if ts < window.upper or (ts == window.upper and not inclusive):
                window = TimeRange(window.lower, window.lower_inclusive, ts, inclusive)
    return window
