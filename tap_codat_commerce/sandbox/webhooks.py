"""Webhook deliveries as Codat makes them through Svix: signed, retried, sometimes twice or late.

Each message gets an id (``msg_…``, from the seed), and each attempt the headers Svix sends::

    svix-id: msg_…   svix-timestamp: <Unix seconds>   svix-signature: v1,<base64 HMAC-SHA256>

the HMAC keyed with the secret's bytes (``whsec_`` + base64) over ``"{id}.{timestamp}.{body}"``.
This is written out here with the standard library, on purpose: the receiver verifies with Svix's
library, so the two check each other. An attempt not answered 2xx within 15 s is retried on
Svix's schedule (immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h) divided by
``speedup``; after the last one the message has failed.

Controls (``POST /_sandbox/webhooks``): ``{"duplicate": n}`` delivers the next n messages a second
time once delivered (same id, new timestamp: a response Svix did not see); ``{"stale": n}`` signs
the first attempt of the next n messages with a timestamp ten minutes old (a replay: refused, then
retried fresh). ``GET /_sandbox/webhooks`` says what happened to every message.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import heapq
import hmac
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

RETRY_SCHEDULE_S = (0.0, 5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)  # before each attempt
ANSWER_WITHIN_S = 15.0
STALE_BY_S = 600


def signing_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret. Raises ValueError when it is not one."""
    if not secret.startswith("whsec_"):
        raise ValueError("a webhook secret starts with whsec_")
    encoded = secret.removeprefix("whsec_")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def sign(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """Svix's ``svix-signature`` value for one attempt."""
    digest = hmac.new(key, f"{message_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


@dataclass
class Message:
    id: str
    body: bytes
    company_id: str
    attempts: list[dict[str, Any]] = field(default_factory=list)  # {"at", "status", "stale"}
    state: str = "pending"  # pending → delivered | failed
    stale_first: bool = False
    duplicate: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "companyId": self.company_id, "state": self.state, "attempts": self.attempts,
                "duplicated": self.duplicate and self.state == "delivered"}


class WebhookSender:
    """Deliver messages to ``url`` in the background (one scheduler thread, a thread per attempt)."""

    def __init__(self, url: str, secret: str | None, *, speedup: float = 1.0) -> None:
        self.url = url
        self.key = signing_key(secret) if secret else None  # None: unsigned, as before
        self.speedup = max(speedup, 1e-9)
        self.messages: dict[str, Message] = {}
        self.duplicate_next = 0
        self.stale_next = 0
        self._due: list[tuple[float, int, str, int]] = []  # (when, order, message id, attempt number)
        self._order = 0
        self._lock = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name="codat-sandbox-webhooks", daemon=True)
        self._thread.start()

    def send(self, message_id: str, body: dict[str, Any], delay: float) -> None:
        """Queue ``body`` (a Codat event) as message ``message_id``, first attempted after ``delay`` s."""
        raw = json.dumps(body).encode()
        company = str(((body.get("payload") or {}).get("referenceCompany") or {}).get("id", ""))
        with self._lock:
            message = Message(message_id, raw, company)
            if self.stale_next > 0:
                self.stale_next -= 1
                message.stale_first = True
            if self.duplicate_next > 0:
                self.duplicate_next -= 1
                message.duplicate = True
            self.messages[message_id] = message
            self._schedule(message_id, 0, max(delay, 0.0))

    def _schedule(self, message_id: str, attempt: int, delay: float) -> None:
        self._order += 1
        heapq.heappush(self._due, (time.monotonic() + delay, self._order, message_id, attempt))
        self._lock.notify()

    def _run(self) -> None:
        with self._lock:
            while not self._stopped:
                if not self._due:
                    self._lock.wait()
                    continue
                when, _, message_id, attempt = self._due[0]
                wait = when - time.monotonic()
                if wait > 0:
                    self._lock.wait(wait)
                    continue
                heapq.heappop(self._due)
                threading.Thread(target=self._attempt, args=(message_id, attempt), daemon=True).start()

    def _attempt(self, message_id: str, attempt: int) -> None:
        message = self.messages[message_id]
        stale = attempt == 0 and message.stale_first
        timestamp = int(time.time()) - (STALE_BY_S if stale else 0)
        headers = {"Content-Type": "application/json", "svix-id": message.id, "svix-timestamp": str(timestamp)}
        if self.key is not None:
            headers["svix-signature"] = sign(self.key, message.id, timestamp, message.body)
        request = urllib.request.Request(self.url, data=message.body, method="POST", headers=headers)
        status = 0
        try:
            with urllib.request.urlopen(request, timeout=ANSWER_WITHIN_S) as answer:
                status = answer.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except OSError:
            status = 0  # refused, reset or timed out
        with self._lock:
            message.attempts.append({"at": time.time(), "status": status, "stale": stale})
            if 200 <= status < 300:
                if message.state == "delivered":
                    return  # the duplicate itself
                message.state = "delivered"
                if message.duplicate:
                    self._schedule(message_id, attempt + 1, 0.0)
            elif message.state == "delivered":
                return
            elif attempt + 1 < len(RETRY_SCHEDULE_S):
                self._schedule(message_id, attempt + 1, RETRY_SCHEDULE_S[attempt + 1] / self.speedup)
            else:
                message.state = "failed"

    def control(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /_sandbox/webhooks``: set ``duplicate`` / ``stale`` counts; returns :meth:`stats`."""
        with self._lock:
            if "duplicate" in body:
                self.duplicate_next = int(body["duplicate"])
            if "stale" in body:
                self.stale_next = int(body["stale"])
        return self.stats()

    def stats(self) -> dict[str, Any]:
        """Every message and its attempts; counts per state."""
        with self._lock:
            messages = [m.to_json() for m in self.messages.values()]
        counts = {state: sum(m["state"] == state for m in messages) for state in ("pending", "delivered", "failed")}
        return {"url": self.url, "signed": self.key is not None, "speedup": self.speedup, **counts,
                "messages": messages}

    def stop(self) -> None:
        with self._lock:
            self._stopped = True
            self._lock.notify()
        with contextlib.suppress(RuntimeError):
            self._thread.join(timeout=5)
