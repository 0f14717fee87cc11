"""Records made to match their schema, driven by the schema itself (found once per stream).

- Codat DateTimes (``format: date-time``) become RFC 3339 UTC.
- Numbers sent as strings (``"12.50"``) become numbers.
- A value that cannot be its declared type is emitted as null, with one warning per field.
Everything else, unknown fields included, passes through untouched.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pendulum

logger = logging.getLogger("tap_codat_commerce.normalise")

Normaliser = Callable[[dict[str, Any]], None]


def to_utc(value: str) -> str | None:
    """``2021-11-15T01:00:00-05:00`` → ``2021-11-15T06:00:00Z``; None if it is no date.

    Codat sends UTC with ``Z``, unqualified local times (taken as UTC: the business's
    zone is not known), offsets, bare dates and the ``0001-01-01T00:00:00`` sentinel.
    """
    if len(value) == 20 and value[10] == "T" and value[19] == "Z":
        return value  # already the canonical form: the common case, kept cheap
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = pendulum.parse(value, strict=False)  # type: ignore[assignment]
        except (ValueError, pendulum.parsing.exceptions.ParserError):
            return None
        if not isinstance(parsed, datetime):
            return None
    if parsed.tzinfo is not None:
        with contextlib.suppress(OverflowError):  # an offset on year 1 stays as it is
            parsed = parsed.astimezone(UTC)
    return parsed.replace(tzinfo=None).isoformat() + "Z"


def to_datetime(value: str) -> datetime:
    """A bookmark or setting as an aware UTC datetime (unqualified times are UTC)."""
    parsed = pendulum.parse(str(value))
    if not isinstance(parsed, datetime):
        raise ValueError(f"{value!r} is not a date and time")
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


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
                fixed = to_utc(value)
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
