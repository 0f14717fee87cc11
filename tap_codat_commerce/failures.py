"""One merchant's failure stays with that merchant: what failed in a run, and when to stop anyway.

A failure that belongs to one company, connection or data type (a 403, 5xx or timeouts past the
retry budget, a body never valid JSON, a record that cannot be emitted) gives up only that
partition: it keeps the bookmark of the last record it emitted, loses its dataStatus marker, and
is read again by the next run. :class:`RunReport` collects them and writes, at the end, a summary
of fixed size (counts per cause, the first few examples), whose last line says "finished, with
failures"; the tap then exits with :data:`EXIT_WITH_FAILURES`.

A company deleted while the run is under way (404 after it was listed) is no failure: it is
skipped with one warning, as an unknown id in ``company_ids`` is.

The circuit breaker: when ``max_failed_companies`` companies in a row fail wholly (nothing of
theirs was read) for the same cause, the cause is not theirs (an IP block looks like a 403 or a
closed connection on every company), so the run stops (:class:`CircuitOpenError`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass, field

from .codat.errors import CodatError

EXIT_FAILED = 1  # stopped: a failure of the whole run (settings, 401, network, quota, breaker)
EXIT_WITH_FAILURES = 3  # finished, with failures: some partitions failed, all others were read
EXIT_QUOTA_RESERVE = 4  # stopped at quota_reserve: the rest of Codat's daily quota is left alone
DEFAULT_MAX_FAILED_COMPANIES = 10
EXAMPLES = 3  # examples per cause in the summary
LOGGED_PER_CAUSE = 5  # failures of one cause logged as they happen; later ones are only counted


class RecordError(CodatError):
    """A record the tap cannot emit correctly (no id, or not serialisable): its partition fails."""

    cause = "bad record"
    whole_run = False


class CircuitOpenError(CodatError):
    """``max_failed_companies`` companies in a row failed wholly for one cause: stop the run."""

    cause = "circuit breaker"


@dataclass(frozen=True)
class Failure:
    """One failed partition: ``connection_id`` None for a company-level failure."""

    company_id: str
    connection_id: str | None
    stream: str
    cause: str
    message: str

    def where(self) -> str:
        connection = f", connection {self.connection_id}" if self.connection_id else ""
        return f"{self.stream} (company {self.company_id}{connection})"


@dataclass
class _CompanyOutcome:
    read: int = 0  # partitions read to the end (or skipped as nothing to read)
    causes: Counter[str] = field(default_factory=Counter)


class RunReport:
    """The failures of one run, the companies gone during it, and the circuit breaker. Thread-safe."""

    def __init__(self, logger: logging.Logger, *, max_failed_companies: int = DEFAULT_MAX_FAILED_COMPANIES) -> None:
        self.logger = logger
        self.max_failed_companies = max_failed_companies
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """A new sync."""
        with self._lock:
            self.failures: list[Failure] = []
            self._by_cause: Counter[str] = Counter()
            self._companies: dict[str, _CompanyOutcome] = {}
            self._gone: set[tuple[str, str | None]] = set()
            self._streak_cause: str | None = None
            self._streak = 0

    # --- what happened ---------------------------------------------------------------------
    def failed(self, company_id: str, connection_id: str | None, stream: str, error: CodatError) -> None:
        """A partition failed for good: remember it, and log it while its cause is still rare."""
        failure = Failure(company_id, connection_id, stream, error.cause, str(error))
        with self._lock:
            self.failures.append(failure)
            self._by_cause[error.cause] += 1
            self._companies.setdefault(company_id, _CompanyOutcome()).causes[error.cause] += 1
            count = self._by_cause[error.cause]
        if count <= LOGGED_PER_CAUSE:
            later = "; later failures of this cause are only counted" if count == LOGGED_PER_CAUSE else ""
            self.logger.warning("Failed %s: %s; it keeps its bookmark and is read again by the next run%s",
                                failure.where(), failure.message, later)

    def read(self, company_id: str) -> None:
        """A partition of the company was read to the end (or had nothing to read)."""
        with self._lock:
            self._companies.setdefault(company_id, _CompanyOutcome()).read += 1

    def gone(self, company_id: str, connection_id: str | None = None, *, during: str) -> None:
        """The company (or connection) was deleted after it was listed: one warning, no failure."""
        key = (company_id, connection_id)
        with self._lock:
            if key in self._gone or (company_id, None) in self._gone:
                return
            self._gone.add(key)
        what = f"Company {company_id}" + (f" connection {connection_id}" if connection_id else "")
        self.logger.warning("%s no longer exists (404 %s, after it was listed); skipping it", what, during)

    def is_gone(self, company_id: str, connection_id: str | None = None) -> bool:
        with self._lock:
            return (company_id, None) in self._gone or (company_id, connection_id) in self._gone

    def company_finished(self, company_id: str) -> None:
        """Every partition of the company is done: update the breaker; raises CircuitOpenError."""
        with self._lock:
            outcome = self._companies.pop(company_id, None)
            if outcome is None or not outcome.causes:
                self._streak_cause, self._streak = None, 0
                return
            if outcome.read:
                self._streak_cause, self._streak = None, 0
                return
            cause = outcome.causes.most_common(1)[0][0]
            self._streak = self._streak + 1 if cause == self._streak_cause else 1
            self._streak_cause = cause
            streak = self._streak
        if self.max_failed_companies and streak >= self.max_failed_companies:
            raise CircuitOpenError(
                f"stopped: the last {streak} companies in a row failed wholly with the same cause ({cause}), so "
                f"it is not theirs (an IP block or a key without access looks like this); max_failed_companies="
                f"{self.max_failed_companies}")

    # --- the end ---------------------------------------------------------------------------
    def summary(self, companies: int) -> list[str]:
        """The end-of-run lines (empty when nothing failed); fixed size at any scale. The last
        one says "finished, with failures" and how many."""
        with self._lock:
            failures = list(self.failures)
            by_cause = self._by_cause.most_common()
        if not failures:
            return []
        lines = []
        for cause, count in by_cause:
            examples = [f for f in failures if f.cause == cause][:EXAMPLES]
            shown = "; ".join(f"{f.where()}: {f.message}" for f in examples)
            more = f" (and {count - len(examples):,} more)" if count > len(examples) else ""
            lines.append(f"{cause}: {count:,} partition{'s' if count != 1 else ''}, e.g. {shown}{more}")
        failed_companies = len({f.company_id for f in failures})
        causes = ", ".join(f"{cause}: {count:,}" for cause, count in by_cause)
        lines.append(f"Sync finished, with failures: {len(failures):,} partition{'s' if len(failures) != 1 else ''} "
                     f"of {failed_companies:,} of {companies:,} compan{'ies' if companies != 1 else 'y'} failed "
                     f"({causes}); everything else was read, and the failed ones are read again by the next run "
                     f"(exit code {EXIT_WITH_FAILURES})")
        return lines
