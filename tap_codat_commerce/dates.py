"""Codat DateTimes → RFC 3339 UTC, driven by the stream schema's ``format: date-time``."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pendulum

logger = logging.getLogger("tap_codat_commerce.dates")

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
    return _object_normaliser(schema, stream)


def _object_normaliser(schema: dict[str, Any], where: str) -> Normaliser | None:
    dates: list[str] = []
    nested: list[tuple[str, Normaliser]] = []
    arrays: list[tuple[str, Normaliser]] = []
    for name, sub in (schema.get("properties") or {}).items():
        types = sub.get("type")
        types = types if isinstance(types, list) else [types]
        if sub.get("format") == "date-time":
            dates.append(name)
        elif "object" in types:
            inner = _object_normaliser(sub, f"{where}.{name}")
            if inner:
                nested.append((name, inner))
        elif "array" in types and isinstance(sub.get("items"), dict):
            inner = _object_normaliser(sub["items"], f"{where}.{name}[]")
            if inner:
                arrays.append((name, inner))
    if not (dates or nested or arrays):
        return None

    def normalise(record: dict[str, Any]) -> None:
        for name in dates:
            value = record.get(name)
            if isinstance(value, str):
                fixed = to_utc(value)
                if fixed is None:
                    logger.warning("%s.%s: %r is not a date; emitted as null", where, name, value[:40])
                record[name] = fixed
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
