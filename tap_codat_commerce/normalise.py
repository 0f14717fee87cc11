"""Records made to match their schema, driven by the schema itself (found once per stream).

- Codat DateTimes (``format: date-time``) become RFC 3339 UTC in one fixed-width form
  (``YYYY-MM-DDTHH:MM:SS.ffffffZ``, see :mod:`tap_codat_commerce.codat.dates`).
- Numbers sent as strings (``"12.50"``) become numbers.
- A value that cannot be its declared type is emitted as null, with one warning per field.
Everything else, unknown fields included, passes through untouched.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from .codat.dates import canonical

logger = logging.getLogger("tap_codat_commerce.normalise")

Normaliser = Callable[[dict[str, Any]], None]


def build_normaliser(schema: dict[str, Any], stream: str) -> Normaliser | None:
    """A function normalising every date-time field of a record in place, or None."""
    return _object_normaliser(schema, stream, set())


def to_number(value: str, integer: bool) -> float | int | None:
    try:
        number = float(value)
    except ValueError:
        return None
    if integer:
        return int(number) if number.is_integer() else None
    return number


def _warn_once(warned: set[str], where: str, name: str, value: str, kind: str) -> None:
    """One warning per field and stream, however many records carry the same problem."""
    key = f"{where}.{name}"
    if key not in warned:
        warned.add(key)
        logger.warning("%s: %r is not a %s; emitted as null (further ones in this field are not logged)",
                       key, value[:40], kind)


def _object_normaliser(schema: dict[str, Any], where: str, warned: set[str]) -> Normaliser | None:
    dates: list[str] = []
    numbers: list[tuple[str, bool]] = []
    nested: list[tuple[str, Normaliser]] = []
    arrays: list[tuple[str, Normaliser]] = []
    for name, sub in (schema.get("properties") or {}).items():
        types = sub.get("type")
        types = types if isinstance(types, list) else [types]
        if sub.get("format") == "date-time":
            dates.append(name)
        elif "number" in types or "integer" in types:
            numbers.append((name, "number" not in types))
        elif "object" in types:
            inner = _object_normaliser(sub, f"{where}.{name}", warned)
            if inner:
                nested.append((name, inner))
        elif "array" in types and isinstance(sub.get("items"), dict):
            inner = _object_normaliser(sub["items"], f"{where}.{name}[]", warned)
            if inner:
                arrays.append((name, inner))
    if not (dates or numbers or nested or arrays):
        return None

    def normalise(record: dict[str, Any]) -> None:
        for name in dates:
            value = record.get(name)
            if value.__class__ is str:
                fixed = canonical(value)
                if fixed is None:
                    _warn_once(warned, where, name, value, "date")
                record[name] = fixed
        for name, integer in numbers:
            value = record.get(name)
            if value.__class__ is str:
                number = to_number(value, integer)
                if number is None:
                    _warn_once(warned, where, name, value, "number")
                record[name] = number
        for name, inner in nested:
            value = record.get(name)
            if isinstance(value, dict):
                inner(value)
        for name, inner in arrays:
            value = record.get(name)
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, dict):
                        inner(item)

    return normalise
