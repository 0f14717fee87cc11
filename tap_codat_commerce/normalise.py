"""Records made to match their schema, driven by the schema itself (found once per stream).

- Codat DateTimes (``format: date-time``) become RFC 3339 UTC in one fixed-width form
  (``YYYY-MM-DDTHH:MM:SS.ffffffZ``, see :mod:`tap_codat_commerce.codat.dates`).
- Numbers keep the digits Codat sent: a number sent as a string (``"12345678901234567.89"``)
  becomes an exact ``Decimal`` (an ``int`` in an integer field), never a rounded double.
- A value that cannot be its declared type becomes null, with one warning per field and
  stream: a date that is no date (``2021-02-29T00:00:00Z``), and in number fields text that
  is no number, ``NaN``, ``Infinity`` and numbers beyond a double's range (``1e400``), which
  no warehouse number column holds.
- Fields the schema does not declare (``RECORD`` properties ⊆ ``SCHEMA`` properties, at every
  level whose schema lists properties) are dropped with one warning per field and stream, as
  the SDK does; with ``undeclared="keep"`` they are moved into :data:`UNDECLARED`, an untyped
  JSON object that :func:`declare_undeclared` adds to the schema at every such level.
Objects declared without properties (or with ``additionalProperties``) are free-form: kept whole.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

from .codat.dates import canonical

logger = logging.getLogger("tap_codat_commerce.normalise")

Normaliser = Callable[[dict[str, Any]], None]
UndeclaredMode = Literal["drop", "keep"]
UNDECLARED = "_codat_undeclared"
UNDECLARED_SCHEMA: dict[str, Any] = {"type": ["object", "null"],
                                     "description": "Fields Codat sent that this schema does not declare "
                                                    "(undeclared_fields: keep), as untyped JSON."}
# The largest magnitude a double holds: beyond it no warehouse number column (nor a JSON
# reader using doubles) can hold the value.
_LARGEST = Decimal("1.7976931348623157e308")
_LARGEST_FLOAT = 1.7976931348623157e308


def build_normaliser(schema: dict[str, Any], stream: str, undeclared: UndeclaredMode = "drop") -> Normaliser | None:
    """A function normalising a record in place (see the module's text), or None if none is needed."""
    return _object_normaliser(schema, stream, set(), undeclared)


def to_number(value: str | float | Decimal, integer: bool) -> int | float | Decimal | None:
    """``value`` as an exact number of its field's type; None if it cannot be one.

    >>> to_number("12345678901234567.89", False)
    Decimal('12345678901234567.89')
    >>> to_number("7", True), to_number("7.5", True), to_number("NaN", False), to_number("1e400", False)
    (7, None, None, None)
    """
    if isinstance(value, str):
        try:
            number = Decimal(value.strip())
        except InvalidOperation:
            return None
    elif isinstance(value, float):
        if not -_LARGEST_FLOAT <= value <= _LARGEST_FLOAT:  # NaN fails every comparison
            return None
        return value
    else:
        number = value
    if not number.is_finite() or abs(number) > _LARGEST:
        return None
    if integer:
        return int(number) if number == number.to_integral_value() else None
    return number


def _warn_once(warned: set[str], where: str, name: str, value: Any, kind: str) -> None:
    """One warning per field and stream, however many records carry the same problem."""
    key = f"{where}.{name}"
    if key not in warned:
        warned.add(key)
        logger.warning("%s: %r is not a %s; emitted as null (further ones in this field are not logged)",
                       key, str(value)[:40], kind)


def _warn_undeclared(warned: set[str], where: str, names: list[str], kept: bool) -> None:
    for name in names:
        key = f"{where}.{name}\0undeclared"
        if key not in warned:
            warned.add(key)
            if kept:
                logger.warning("%s.%s is not in the schema; kept in %s (undeclared_fields: keep; further "
                               "ones are not logged)", where, name, UNDECLARED)
            else:
                logger.warning("%s.%s is not in the schema; dropped, as the SDK does (set undeclared_fields: "
                               "keep to load it; further ones are not logged)", where, name)


def _types(schema: dict[str, Any]) -> list[Any]:
    types = schema.get("type")
    return types if isinstance(types, list) else [types]


def _is_closed(schema: dict[str, Any]) -> bool:
    """Does this object schema list its properties (so that others are undeclared)?"""
    return bool(schema.get("properties")) and not schema.get("additionalProperties")


def declare_undeclared(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` declaring :data:`UNDECLARED` at every level that lists properties."""
    declared = copy.deepcopy(schema)

    def add(node: dict[str, Any]) -> None:
        if _is_closed(node) and UNDECLARED not in node["properties"]:
            for sub in node["properties"].values():
                if isinstance(sub, dict):
                    add(sub)
            node["properties"][UNDECLARED] = copy.deepcopy(UNDECLARED_SCHEMA)
        items = node.get("items")
        if isinstance(items, dict):
            add(items)

    add(declared)
    return declared


def without_empty_properties(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``schema`` where a free-form object says so by listing no properties at all
    (``{"type": "object"}``) rather than ``"properties": {}``: the same JSON Schema, but the
    SDK's flattening gives the former one JSON column, as it flattens its records, and the
    latter none (its records would carry a column SCHEMA does not declare)."""
    cleaned = copy.deepcopy(schema)

    def clean(node: dict[str, Any]) -> None:
        properties = node.get("properties")
        if properties == {}:
            del node["properties"]
        elif isinstance(properties, dict):
            for sub in properties.values():
                if isinstance(sub, dict):
                    clean(sub)
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                clean(node[key])

    clean(cleaned)
    return cleaned


def _object_normaliser(schema: dict[str, Any], where: str, warned: set[str],
                       undeclared: UndeclaredMode) -> Normaliser | None:
    """The normaliser of one object schema, as straight-line code generated from the schema
    (one statement group per field: no per-record loops over field lists, which cost more than
    the work itself at ~20 objects a record). Nested objects that need only the
    undeclared-field check are checked inline (one C-level subset test)."""
    properties: dict[str, Any] = schema.get("properties") or {}
    keep = undeclared == "keep"
    declared = frozenset(properties) if _is_closed(schema) else None
    names: dict[str, Any] = {"canonical": canonical, "Decimal": Decimal, "dict": dict, "list": list, "str": str,
                             "declared": declared}
    body: list[str] = []

    def constant(value: Any) -> str:
        key = f"c{len(names)}"
        names[key] = value
        return key

    def separate(record: dict[str, Any]) -> None:
        """Drop (or keep aside) the fields of ``record`` that are not declared."""
        assert declared is not None
        extra = [name for name in record if name not in declared]
        _warn_undeclared(warned, where, extra, keep)
        moved = {name: record.pop(name) for name in extra}
        if keep:
            record[UNDECLARED] = moved

    def bad_date(name: str, value: str) -> None:
        _warn_once(warned, where, name, value, "date")

    def fix_number(name: str, value: Any, integer: bool) -> Any:
        number = to_number(value, integer)
        if number is None:
            _warn_once(warned, where, name, value, "number" if not integer else "whole number")
        return number

    names.update(separate=separate, bad_date=bad_date, fix_number=fix_number)
    if declared is not None:
        body.append("if not declared.issuperset(r): separate(r)")
    for name, sub in properties.items():
        if not isinstance(sub, dict) or name == UNDECLARED:
            continue
        types = _types(sub)
        key = repr(name)
        if sub.get("format") == "date-time":
            body += [f"v = r.get({key})",
                     "if v.__class__ is str:",
                     "    f = canonical(v)",
                     f"    if f is None: bad_date({key}, v)",
                     f"    r[{key}] = f"]
        elif "number" in types or "integer" in types:
            # The common case (a float, always finite: see codat.http.decode_json; an int; null)
            # needs nothing; text and Decimals are checked and made exact numbers.
            body += [f"v = r.get({key})",
                     "if v.__class__ is str or v.__class__ is Decimal:",
                     f"    r[{key}] = fix_number({key}, v, {'number' not in types})"]
        elif "object" in types or ("array" in types and isinstance(sub.get("items"), dict)):
            is_array = "object" not in types
            inner = _object_normaliser(sub["items"] if is_array else sub, f"{where}.{name}{'[]' if is_array else ''}",
                                       warned, undeclared)
            if inner is None:
                continue
            leaf = getattr(inner, "declared_only", None)
            if leaf is not None:
                test = f"x.__class__ is dict and not {constant(leaf)}.issuperset(x)"
            else:
                test = "x.__class__ is dict"
            call = f"{constant(inner)}(x)"
            if is_array:
                body += [f"v = r.get({key})",
                         "if v.__class__ is list:",
                         "    for x in v:",
                         f"        if {test}: {call}"]
            else:
                body += [f"x = r.get({key})", f"if {test}: {call}"]
    if not body:
        return None
    source = "def normalise(r):\n" + "\n".join("    " + line for line in body) + "\n"
    exec(compile(source, f"<normaliser {where}>", "exec"), names)  # names are repr() literals from the schema
    normalise: Normaliser = names["normalise"]
    if declared is not None and len(body) == 1:
        normalise.declared_only = declared  # type: ignore[attr-defined]  # its parent checks it inline
    return normalise
