"""Read only what Codat re-synced: change detection from dataStatus, or from read.completed events.

Codat changes a company's commerce data only when it syncs it, and dataStatus says when
(``latestSuccessfulSyncId`` / ``lastSuccessfulSync`` per data type). After a complete read of a
(company, connection, data type) the tap keeps, in that partition's Singer state, which sync the
read came after::

    {"context": {...}, "replication_key_value": "...",
     "codat_sync": {"id": "<latestSuccessfulSyncId>", "read_at": "2026-11-30T08:00:00Z"}}

The next run skips the data type, with no request, when all of these hold: the setting is on; the
partition has a bookmark (incremental types) or a marker (company info), so this is no full
refresh; dataStatus says ``Complete`` with the same sync; and the last read is less than
``reread_after_hours`` old. A sync running or failed, a new sync, or an old read → read as before.
Skipping never moves a bookmark, so nothing can be lost by it: a record Codat re-stamps without
a new successful sync (a re-map) is read on the next run that reads the type, at the latest after
``reread_after_hours``.

With an events file (``read.completed`` webhook bodies, one a line) only the triples it lists as
changed are read, and companies it does not name are not visited.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from .codat.data_types import DataTypeStatus
from .codat.dates import format_instant, parse_instant
from .codat.operations import EventsFileError, Triple, changed_triples

MARKER = "codat_sync"


def load_events(path: str) -> set[Triple]:
    """The changed triples of an events file (see :func:`changed_triples`)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EventsFileError(f"events_file {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise EventsFileError(f"events_file {path}: not UTF-8 text") from None
    return changed_triples(lines, f"events_file {path}")


@dataclass(frozen=True)
class ChangeFilter:
    """What this run reads, from dataStatus markers and (optionally) an events file."""

    skip_unchanged: bool
    reread_after: timedelta
    events: frozenset[Triple] | None = None  # None: no events file

    @property
    def companies(self) -> frozenset[str] | None:
        """Only these companies are visited (None: all)."""
        return None if self.events is None else frozenset(company for company, _, _ in self.events)

    def reason_to_skip(self, triple: Triple, status: DataTypeStatus | None, partition: dict[str, Any],
                       *, has_bookmark: bool) -> str | None:
        """Why the data type need not be read now, or None to read it."""
        if self.events is not None:
            return None if triple in self.events else "no read.completed event lists it as changed"
        marker = partition.get(MARKER)
        if not self.skip_unchanged or not isinstance(marker, dict) or not has_bookmark or status is None:
            return None
        if status.status != "Complete" or not status.sync_marker or status.sync_marker != marker.get("id"):
            return None
        read_at = parse_instant(str(marker.get("read_at") or ""))
        if read_at is None or datetime.now(UTC) - read_at >= self.reread_after:
            return None
        return "unchanged since the last read (no new Codat sync)"

    @staticmethod
    def mark_read(partition: dict[str, Any], status: DataTypeStatus | None) -> None:
        """A complete read happened after ``status``'s sync: remember it (only a finished sync counts)."""
        if status is not None and status.status == "Complete" and status.sync_marker:
            partition[MARKER] = {"id": status.sync_marker, "read_at": format_instant(datetime.now(UTC))}
        else:
            partition.pop(MARKER, None)
