"""What can go wrong talking to Codat, and whom it concerns: one company, or the whole run.

Every error carries ``cause``, a short kind (``"403"``, ``"5xx"``, ``"timeout"``, ``"dropped
connection"``, ``"invalid JSON"``, …) that summaries group by and the circuit breaker compares,
and ``whole_run``: True when the failure cannot belong to one merchant (a wrong key, the
client's daily quota, Codat unreachable), so the run must stop; False when it concerns the
company (or connection, or data type) whose path it came from, so only that part is given up.
"""

from __future__ import annotations

import re

# ``/companies/{id}`` and everything below it: a failure there may be that company's alone.
_COMPANY_PATH = re.compile(r"/companies/([^/?]+)")


def company_of(path: str) -> str | None:
    """The company id a request path is about (``/companies/{id}/…``), or None."""
    found = _COMPANY_PATH.match(path)
    return found.group(1) if found else None


class CodatError(Exception):
    """A failure the tap reports as one line; see the module's text for ``cause``/``whole_run``."""

    cause: str = "error"
    whole_run: bool = True
    where: str = ""  # the stream, company and connection it happened in, once known

    def located(self) -> str:
        """The message, prefixed with ``where`` when known."""
        return f"{self.where}: {self}" if self.where else str(self)


class AuthError(CodatError):
    """401: the key is wrong or revoked (it concerns every company)."""

    cause = "401"


class QuotaExhaustedError(CodatError):
    """The client's daily quota is spent: Codat asked for a wait longer than ``max_retry_after``."""

    cause = "daily quota"


class MaintenanceError(CodatError):
    """503 with a Retry-After longer than ``max_retry_after``: Codat is under maintenance."""

    cause = "maintenance"


class QuotaReserveReachedError(CodatError):
    """``X-Rate-Limit-Remaining`` fell below ``quota_reserve``: the rest is left to the client's
    other applications."""

    cause = "quota reserve"


class CancelledError(CodatError):
    """The sync that asked for a request has ended (or the run is stopping)."""

    cause = "cancelled"


class RequestFailedError(CodatError):
    """A request that failed for good (after retries, or a 4xx that retrying won't fix).

    ``status`` is the HTTP status (None when no response came), ``codat_message`` the ``error``
    text of Codat's body. A failure on ``/companies/{id}/…`` concerns that company only
    (``whole_run`` False) unless a subclass says otherwise.
    """

    def __init__(self, message: str, status: int | None = None, codat_message: str | None = None, *,
                 path: str = "", cause: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.codat_message = codat_message
        self.path = path
        self.company_id = company_of(path)
        self.cause = cause or (f"{status}" if status and status < 500 else "5xx" if status else "error")
        self.whole_run = self.company_id is None


class ForbiddenError(RequestFailedError):
    """403: the key may not read this company or data type (or Codat is blocking this IP,
    which looks the same on every company: the circuit breaker tells them apart)."""


class UnreachableError(RequestFailedError):
    """No connection could be opened to Codat (refused, DNS, connect timeout): the network is
    gone for every company, so the run stops."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(message, None, None, path=path, cause="unreachable")
        self.whole_run = True


class TooDeepError(CodatError):
    """JSON nested deeper than the parser (or the writer) can follow: that partition stops with one
    line (not retried: the same body fails the same way)."""

    cause = "JSON too deep"
    whole_run = False


class InvalidJSONError(ValueError):
    """A body that no JSON parser accepts (truncated, or not JSON at all)."""


__all__ = ["AuthError", "CancelledError", "CodatError", "ForbiddenError", "InvalidJSONError", "MaintenanceError",
           "QuotaExhaustedError", "QuotaReserveReachedError", "RequestFailedError", "TooDeepError", "UnreachableError",
           "company_of"]
