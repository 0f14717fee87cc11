"""The events file shared by the webhook receiver and the tap: appended once, claimed atomically.

Files, all in the events file's directory (``F`` is the ``events_file`` setting)::

    F                          events not yet claimed by a run, one JSON object a line
    F.lock                     the lock every writer and every claim takes (fcntl.flock, exclusive)
    F.seen.sqlite              the svix-ids written, with when (the receiver's dedupe, kept RETENTION_S)
    F.claimed.<i>of<n>.<run>   the events run <run> of shard i of n claimed: read, kept until consumed

The receiver (:meth:`EventQueue.append_once`), under the lock: skips an id already seen, else
appends the line with one ``write`` on an ``O_APPEND`` descriptor opened for that write, fsyncs
it, then records the id. So several receiver processes never interleave partial lines, and a
claim (under the same lock) never takes a half-written one.

A run (:meth:`EventQueue.claim`), under the lock: takes the lines of ``F`` whose company is in
its shard (CRC-32 of the lower-cased company id, as the tap's ``shard_of``) into a new claimed
file (written and fsynced first), then puts the other shards' lines back as ``F`` (a temporary
file renamed over it); with one shard ``F`` is simply renamed. The run reads its new claimed file
and every claimed file of its shard that an earlier run left. They are consumed only when a later
run starts from the STATE a successful run wrote (the run records their names in it under
:data:`STATE_KEY`): Meltano saves that STATE only once the target has committed the records, so a
run that fails, is killed, or whose target fails leaves its events to the next run, and a run
that succeeds is never read twice. A crash mid-claim can at worst leave a line both claimed and in
``F`` (read twice, never lost).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import sqlite3
import time
import uuid
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Svix retries a message for about 27.6 hours (5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h); ids are
# remembered for three days, so a retry after a receiver outage is still recognised.
RETENTION_S = 3 * 24 * 3600.0
STATE_KEY = "codat_events"  # in the tap's STATE: {"consumed": [claimed file names]}
CLAIMED = re.compile(r"\.claimed\.(\d+)of(\d+)\.[A-Za-z0-9T-]+$")


class EventQueueError(OSError):
    """The events file (or its directory) cannot be used; the message names it."""


def shard_of_company(company_id: str, shard_count: int) -> int:
    """The shard of a company: CRC-32 of its lower-cased id, modulo ``shard_count`` (the tap's rule)."""
    return zlib.crc32(company_id.lower().encode()) % shard_count


def company_of(line: str) -> str | None:
    """The company a ``read.completed`` line names (``payload.referenceCompany.id``), or None."""
    try:
        event = json.loads(line)
        return str(event["payload"]["referenceCompany"]["id"])
    except (ValueError, KeyError, TypeError):
        return None


@dataclass(frozen=True)
class Claim:
    """What one run claimed: the claimed files it reads (names, in the events file's directory)
    and, per file, its lines."""

    files: tuple[str, ...]
    lines: dict[str, list[str]]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_new(path: Path, data: bytes) -> None:
    """Write ``data`` to a new file at ``path``, fsynced."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


class EventQueue:
    """The events file ``path`` and its companions (see the module's text)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.directory = self.path.parent
        if not self.directory.is_dir():
            raise EventQueueError(f"events_file {self.path}: its directory {self.directory} does not exist")
        if self.path.is_dir():
            raise EventQueueError(f"events_file {self.path}: is a directory")

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold ``F.lock`` exclusively (blocking) for the block."""
        try:
            fd = os.open(self.path.with_name(self.path.name + ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise EventQueueError(f"events_file {self.path}: cannot open its lock file: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    # --- the receiver's side ------------------------------------------------------------------
    def _seen_db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path.with_name(self.path.name + ".seen.sqlite"), timeout=30, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.execute("CREATE TABLE IF NOT EXISTS seen (id TEXT PRIMARY KEY, at REAL NOT NULL)")
        return db

    def append_once(self, message_id: str, line: bytes, now: float | None = None) -> bool:
        """Append ``line`` (one event, no newline inside) durably unless ``message_id`` was written
        within :data:`RETENTION_S`; True when it was written. Raises OSError when the disk fails
        (nothing is recorded as seen then: the delivery must be refused so that Svix retries)."""
        if b"\n" in line or b"\r" in line:
            raise ValueError("an event line must not hold a line break")
        at = time.time() if now is None else now
        with self.locked():
            db = self._seen_db()
            try:
                row = db.execute("SELECT at FROM seen WHERE id = ?", (message_id,)).fetchone()
                if row is not None and at - float(row[0]) < RETENTION_S:
                    return False
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    data = line + b"\n"
                    if os.write(fd, data) != len(data):
                        raise OSError(f"short write to {self.path}")
                    os.fsync(fd)
                finally:
                    os.close(fd)
                _fsync_dir(self.directory)  # a newly created F survives a crash
                db.execute("INSERT OR REPLACE INTO seen (id, at) VALUES (?, ?)", (message_id, at))
                return True
            finally:
                db.close()

    def forget_old(self, now: float | None = None) -> int:
        """Drop the ids seen more than :data:`RETENTION_S` ago; how many were dropped."""
        at = time.time() if now is None else now
        with self.locked():
            db = self._seen_db()
            try:
                return db.execute("DELETE FROM seen WHERE at < ?", (at - RETENTION_S,)).rowcount
            finally:
                db.close()

    # --- the tap's side -----------------------------------------------------------------------
    def claimed_files(self) -> list[tuple[str, int, int]]:
        """Every claimed file, as (name, shard index, shard count), oldest claim first."""
        found = []
        for candidate in self.directory.glob(glob_escape(self.path.name) + ".claimed.*"):
            match = CLAIMED.search(candidate.name[len(self.path.name):])
            if match:
                found.append((candidate.name, int(match.group(1)), int(match.group(2))))
        return sorted(found)

    def consume(self, names: list[str]) -> None:
        """Delete these claimed files (read by a run whose STATE was committed); absent ones are fine."""
        for name in names:
            if "/" in name or not CLAIMED.search(name[len(self.path.name):]) or not name.startswith(self.path.name):
                continue  # only ever a claimed file of this events file
            with contextlib.suppress(FileNotFoundError):
                (self.directory / name).unlink()
        _fsync_dir(self.directory)

    def claim(self, shard_index: int = 0, shard_count: int = 1) -> Claim:
        """Claim the new events of this shard and pick up its leftover claims (see the module's text).
        Claimed files of another ``shard_count`` (left before a change of it) go back into ``F``."""
        tag = f"{shard_index}of{shard_count}"
        run = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        new_name = f"{self.path.name}.claimed.{tag}.{run}"
        with self.locked():
            for name, _, count in self.claimed_files():
                if count != shard_count:  # a claim under another shard_count: every shard's again
                    text = (self.directory / name).read_bytes()
                    if text.strip():
                        self._append_raw(text if text.endswith(b"\n") else text + b"\n")
                    (self.directory / name).unlink()
            try:
                pending = self.path.read_bytes()
            except FileNotFoundError:
                pending = b""
            if pending:
                if shard_count == 1:
                    os.rename(self.path, self.directory / new_name)
                else:
                    mine: list[bytes] = []
                    others: list[bytes] = []
                    for raw in pending.splitlines(keepends=True):
                        company = company_of(raw.decode("utf-8", "replace"))
                        keep = company is None or shard_of_company(company, shard_count) == shard_index
                        (mine if keep else others).append(raw)  # an unreadable line: claimed, so it is reported
                    if mine:
                        _write_new(self.directory / new_name, b"".join(mine))
                    temporary = self.path.with_name(self.path.name + ".rewrite")
                    _write_new(temporary, b"".join(others))
                    os.replace(temporary, self.path)
                _fsync_dir(self.directory)
            names = [name for name, index, count in self.claimed_files() if (index, count) == (shard_index,
                                                                                             shard_count)]
        lines: dict[str, list[str]] = {}
        for name in names:
            try:
                lines[name] = (self.directory / name).read_text(encoding="utf-8").splitlines()
            except UnicodeDecodeError:
                raise EventQueueError(f"events_file {self.path}: claimed file {name} is not UTF-8 text") from None
        return Claim(tuple(names), lines)

    def _append_raw(self, data: bytes) -> None:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def glob_escape(name: str) -> str:
    """``name`` with glob's special characters escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def consumed_in(state: Mapping[str, Any] | None) -> list[str]:
    """The claimed files a committed STATE says were read by a successful run."""
    entry = (state or {}).get(STATE_KEY)
    names = entry.get("consumed") if isinstance(entry, dict) else None
    return [str(n) for n in names] if isinstance(names, list) else []
