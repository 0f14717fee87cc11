"""Faults of one merchant, Codat's IP protection and per-company budgets, deterministic per seed.

- :class:`CompanyFaults`: what goes wrong for one company (or one of its data types): 403, 5xx,
  answers slower than any timeout, dropped connections, bodies never valid JSON, records without
  an id, the company deleted after N of its requests, a body trickled a byte at a time, or headers
  then silence. ``choose`` draws a share of the companies per kind from the seed.
- :class:`IpProtection`: Codat's 1,000 requests a minute per IP: over the cap a request gets 429
  (Retry-After: when the window has room); sustained traffic over it (``block_after`` refused
  requests within a minute) gets the IP blocked for ``block_seconds``: every request is then
  answered 403 or its connection closed (which one is drawn from the seed).
- :class:`CompanyBudgets`: Codat's per-company daily budget of data requests: 429 with a
  Retry-After up to midnight UTC once spent.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .records import mix

KINDS = ("forbidden", "forbidden_data_type", "server_error", "timeout", "drop", "invalid_json", "no_id",
         "deleted", "trickle", "silent")
TRUNCATED = b'{"results": [{"id": "x"'


@dataclass
class Fault:
    """What goes wrong for one company. ``data_type`` limits it to that data type's path;
    ``after`` lets that many matching requests through first; ``seconds`` is the delay of
    ``timeout`` and the pause between bytes of ``trickle``."""

    kind: str
    data_type: str | None = None
    after: int = 0
    seconds: float = 5.0

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Fault:
        kind = str(body.get("kind"))
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
        return cls(kind, body.get("dataType"), int(body.get("after", 0)), float(body.get("seconds", 5.0)))

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "dataType": self.data_type, "after": self.after, "seconds": self.seconds}


@dataclass(frozen=True)
class Action:
    """What the server does with one request instead of (or on top of) answering it."""

    kind: str  # as Fault.kind
    seconds: float = 0.0


class CompanyFaults:
    """Per-company faults; thread-safe."""

    def __init__(self) -> None:
        self.faults: dict[str, Fault] = {}
        self.seen: Counter[str] = Counter()  # matching requests served per company
        self.lock = threading.Lock()

    def set(self, faults: dict[str, Fault]) -> None:
        with self.lock:
            self.faults = dict(faults)
            self.seen.clear()

    @staticmethod
    def choose(company_ids: list[str], share: float, kinds: list[str], seed: int,
               data_type: str = "commerce-taxComponents") -> dict[str, Fault]:
        """``share`` of the companies for each of ``kinds``, none twice, drawn from ``seed``;
        ``forbidden_data_type`` is a 403 on ``data_type`` only; ``deleted`` happens after 0, 1 or
        2 of the company's requests (before its connections, its dataStatus, or during its data)."""
        ranked = sorted(company_ids, key=lambda cid: mix(seed, int(cid.replace("-", "")[:15], 16)))
        per_kind = max(1, round(share * len(company_ids)))
        chosen: dict[str, Fault] = {}
        for index, kind in enumerate(kinds):
            for position, company_id in enumerate(ranked[index * per_kind:(index + 1) * per_kind]):
                chosen[company_id] = Fault(kind, data_type if kind == "forbidden_data_type" else None,
                                           after=position % 3 if kind == "deleted" else 0)
        return chosen

    def action(self, company_id: str | None, path: str) -> Action | None:
        """The fault this request meets, if any (counting it)."""
        if company_id is None:
            return None
        with self.lock:
            fault = self.faults.get(company_id)
            if fault is None or (fault.data_type and f"/data/{fault.data_type}" not in path):
                return None
            self.seen[company_id] += 1
            if self.seen[company_id] <= fault.after:
                return None
            return Action(fault.kind, fault.seconds)


class IpProtection:
    """Codat's per-IP ceiling (see the module's text); ``per_minute`` 0 is off. Thread-safe."""

    def __init__(self, per_minute: int, block_after: int, block_seconds: float, seed: int) -> None:
        self.per_minute = per_minute
        self.block_after = block_after
        self.block_seconds = block_seconds
        self.block_mode = "forbidden" if mix(seed, 97) % 2 == 0 else "drop"
        self._served: dict[str, deque[float]] = {}
        self._refused: dict[str, deque[float]] = {}
        self._blocked_until: dict[str, float] = {}
        self.lock = threading.Lock()
        self.refused = 0  # 429s answered for the ceiling
        self.blocked = 0  # requests answered as blocked

    def admit(self, ip: str) -> tuple[str, float] | None:
        """None to serve; ("429", retry_after) over the ceiling; ("blocked", 0) while blocked."""
        if not self.per_minute:
            return None
        now = time.monotonic()
        with self.lock:
            if self._blocked_until.get(ip, 0.0) > now:
                self.blocked += 1
                return ("blocked", 0.0)
            served = self._served.setdefault(ip, deque())
            while served and now - served[0] >= 60:
                served.popleft()
            if len(served) < self.per_minute:
                served.append(now)
                return None
            refused = self._refused.setdefault(ip, deque())
            refused.append(now)
            while refused and now - refused[0] >= 60:
                refused.popleft()
            self.refused += 1
            if self.block_after and len(refused) >= self.block_after:
                self._blocked_until[ip] = now + self.block_seconds
                refused.clear()
            return ("429", max(1.0, served[0] + 60 - now))


class CompanyBudgets:
    """Codat's per-company daily budget of requests; ``per_day`` 0 is off. Thread-safe."""

    def __init__(self, per_day: int) -> None:
        self.per_day = per_day
        self.used: Counter[str] = Counter()
        self.lock = threading.Lock()

    def spend(self, company_id: str | None) -> float | None:
        """None when the request may be served, else the Retry-After (seconds to midnight UTC)."""
        if not self.per_day or company_id is None:
            return None
        with self.lock:
            self.used[company_id] += 1
            if self.used[company_id] <= self.per_day:
                return None
        now = datetime.now(UTC)
        midnight = (now + timedelta(days=1)).replace(hour=0, minute=0, second=0, microsecond=0)
        return (midnight - now).total_seconds() + 1
