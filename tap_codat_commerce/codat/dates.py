"""Codat's date-times as instants, and the one canonical text the tap writes them in.

Codat sends ``2021-11-15T15:28:09Z``, ``…09.3409951Z`` (seven fraction digits, .NET ticks),
offsets (``-05:00``), unqualified local times (taken as UTC: the business's zone is not
known), bare dates and the ``0001-01-01T00:00:00`` sentinel. The canonical form is
``YYYY-MM-DDTHH:MM:SS.ffffffZ``: fixed width (27 characters), UTC, microseconds, so that
text order is time order. A seventh fraction digit is dropped (rounded down), which keeps
``>=`` comparisons safe. Years are written with four digits by hand: ``strftime('%Y')``
gives ``1`` for year 1 on glibc, which Codat's query parser rejects.
"""

from __future__ import annotations

import contextlib
import functools
import re
from datetime import UTC, datetime, timedelta

import pendulum

CANONICAL_LENGTH = 27
_SECOND = timedelta(seconds=1)
# "…:SS" then an optional fraction of any length: the cheap, common shapes of UTC values.
# Months, hours, minutes and seconds are checked by the pattern itself; day 29 and later
# (group 2) needs the calendar (2021-02-29 is no date).
_UTC_SHAPE = re.compile(r"(\d{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|1\d|2[0-8]|(29|3[01]))"
                        r"T(?:[01]\d|2[0-3]):[0-5]\d:[0-5]\d)(?:\.(\d+))?Z?")
# The same shape with any digits: what the pattern above refuses is no date (not another form).
_ANY_UTC_SHAPE = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z?")


def parse_instant(value: str) -> datetime | None:
    """An aware UTC datetime for any date-time form Codat sends; None if ``value`` is none."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        try:
            parsed = pendulum.parse(value, strict=False)  # type: ignore[assignment]
        except (ValueError, OverflowError, pendulum.parsing.exceptions.ParserError):
            return None
        if not isinstance(parsed, datetime):
            return None
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=UTC)
    with contextlib.suppress(OverflowError):  # an offset on year 1 stays as it is
        return parsed.astimezone(UTC)
    return parsed


def format_instant(moment: datetime) -> str:
    """``moment`` (aware, or naive UTC) in the canonical form ``YYYY-MM-DDTHH:MM:SS.ffffffZ``."""
    if moment.tzinfo is not None:
        with contextlib.suppress(OverflowError):
            moment = moment.astimezone(UTC)
    return (f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment.hour:02d}:{moment.minute:02d}:"
            f"{moment.second:02d}.{moment.microsecond:06d}Z")


@functools.lru_cache(maxsize=1 << 16)  # a record's dates repeat in its payments and lines
def canonical(value: str) -> str | None:
    """Any Codat date-time text in the canonical form; None if it is no date.

    >>> canonical("2021-11-15T15:28:09.3409951Z")
    '2021-11-15T15:28:09.340995Z'
    """
    shape = _UTC_SHAPE.fullmatch(value)
    if shape is not None:  # UTC already (or unqualified): no parsing, the common case kept cheap
        whole, late_day, fraction = shape.groups()
        if late_day is not None and not _valid_calendar(whole):
            return None
        if fraction is None:
            return whole + ".000000Z"
        return f"{whole}.{fraction[:6].ljust(6, '0')}Z"
    if _ANY_UTC_SHAPE.fullmatch(value) is not None:  # …-13-…, …T25:00:00, …:60: no date
        return None
    parsed = parse_instant(value)
    return None if parsed is None else format_instant(parsed)


def _valid_calendar(whole: str) -> bool:
    """``2021-02-29T…`` and ``…T25:00:00`` match the shape but are no date."""
    try:
        datetime.fromisoformat(whole)
    except ValueError:
        return False
    return True


def query_second(moment: datetime) -> str:
    """``moment`` rounded down to its second, as a value for Codat's query language."""
    return format_instant(moment)[:19] + "Z"


def second_of(canonical_value: str) -> str:
    """The second a canonical value falls in (its first 19 characters): the keyset's unit."""
    return canonical_value[:19]


def next_second(second: str) -> datetime:
    """The instant one second after ``second`` (``YYYY-MM-DDTHH:MM:SS``, UTC)."""
    return datetime.fromisoformat(second).replace(tzinfo=UTC) + _SECOND
