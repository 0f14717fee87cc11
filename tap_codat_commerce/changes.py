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

With an events file (``read.completed`` webhook bodies, one a line, as the receiver in
``webhooks/`` writes them) only the triples its events list as changed are read, and companies
they do not name are not visited. A run claims the file's events for its shard at its start
(:func:`claim_events`, see ``webhooks/queue.py``) and, when it succeeds, names the claimed files in
its final STATE (:meth:`ChangeFilter.consumed_state`); the next run started from that STATE deletes
them. Until then every run of the shard reads them again, so no event is lost to a failed run.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .codat.data_types import DataTypeStatus
from .codat.dates import format_instant, parse_instant
from .codat.operations import EventsFileError, Triple, changed_triples
from .webhooks.queue import STATE_KEY, EventQueue, EventQueueError, consumed_in

MARKER = "codat_sync"
EVENTS_STATE_KEY = STATE_KEY  # the top-level STATE key naming the claimed files a successful run read


def claim_events(path: str, state: MutableMapping[str, Any], shard_index: int = 0,
                 shard_count: int = 1) -> tuple[set[Triple], tuple[str, ...]]:
    """Consume the claimed files ``state`` (the run's input STATE) says a successful run read, and
    drop that note from it; then claim this shard's events of ``path``. Returns the changed triples
    of every claimed file the run reads, and those files' names. Raises EventsFileError (one line
    naming the file, and the line) for an unusable events file or a line that is no event."""
    try:
        queue = EventQueue(path)
        queue.consume(consumed_in(state))
        state.pop(STATE_KEY, None)
        claim = queue.claim(shard_index, shard_count)
    except EventQueueError as exc:
        raise EventsFileError(str(exc)) from None
    except OSError as exc:
        raise EventsFileError(f"events_file {path}: {exc.strerror or exc}") from None
    triples: set[Triple] = set()
    for name in claim.files:
        triples |= changed_triples(claim.lines[name], f"events_file {path} (claimed as {name})")
    return triples, claim.files


@dataclass(frozen=True)
class ChangeFilter:
    """What this run reads, from dataStatus markers and (optionally) an events file."""

    skip_unchanged: bool
    reread_after: timedelta
    events: frozenset[Triple] | None = None  # None: no events file
    claimed: tuple[str, ...] = ()  # the claimed event files the events come from

    def consumed_state(self, state: MutableMapping[str, Any]) -> bool:
        """A successful run: note in ``state`` (its final STATE) that its claimed files are read.
        True when there was anything to note."""
        if self.events is None:
            return False
        state[STATE_KEY] = {"consumed": list(self.claimed)}
        return True

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
