"""tap-codat-commerce: the Tap, its settings, and how bad settings and failures are reported."""

from __future__ import annotations

import contextlib
import copy
import gc
import logging
import os
import signal
import sys
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cached_property
from types import FrameType
from typing import Any, cast

import click
import jsonschema
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib import Schema
from singer_sdk.tap_base import CliTestOptionValue

from .changes import EVENTS_STATE_KEY, ChangeFilter, claim_events
from .client import TapServices
from .codat.data_types import COMMERCE_ENDPOINTS
from .codat.http import MAX_PAGE_SIZE, CodatClient, CodatError, QuotaReserveReachedError, RetryPolicy
from .connection_test import run_connection_test
from .failures import (
    DEFAULT_MAX_FAILED_COMPANIES,
    EXIT_FAILED,
    EXIT_QUOTA_RESERVE,
    EXIT_WITH_FAILURES,
    RunReport,
)
from .inputs import InputFileError, check_catalog, read_json_input
from .normalise import UNDECLARED, declare_undeclared
from .output import OrjsonWriter, OutputError
from .progress import Progress, quiet_sdk_logs
from .readiness import Readiness
from .request_metrics import RequestMetrics
from .settings import (
    DEFAULT_BASE_URL,
    DEFAULT_CONCURRENCY,
    DEFAULT_PAGE_SIZE,
    DEFAULT_QUOTA_RESERVE,
    DEFAULT_REQUESTS_PER_MINUTE,
    SettingsError,
    company_id_list,
    gather_settings,
    settings_errors,
    settings_from_environment,
)
from .state import DEFAULT_STATE_INTERVAL, IntervalStateWriter, readable_state
from .streams import CommerceStream, CompaniesStream, ConnectionsStream

HELP = """Extract Codat commerce data (companies, connections and eleven commerce data types) as Singer
messages on stdout.

\b
Settings: --config FILE (JSON; may be given more than once), then TAP_CODAT_COMMERCE_<SETTING>
environment variables for whatever the files leave out; --config ENV makes the environment win.
  tap-codat-commerce --config config.json > records.jsonl
  TAP_CODAT_COMMERCE_API_KEY=... tap-codat-commerce > records.jsonl
  tap-codat-commerce --config config.json --test     (check the key, companies, connections)
  tap-codat-commerce --about                         (every setting)

\b
Before the first run: tap-codat-commerce-setup (sync settings, companies, links, first sync).
To try it without a Codat account: tap-codat-commerce-sandbox (a local Codat-compatible API).
"""


@dataclass
class CommandLineSettings:
    """What ``--config`` gave: the settings merged from files and environment (shape of the SDK's
    own config input: ``config`` and ``parse_env``)."""

    config: dict[str, Any] = field(default_factory=dict)
    parse_env: bool = False
    problems: list[str] = field(default_factory=list)  # unreadable files, bad variables: one line each


class _NullBookmarkNotice(logging.Filter):
    """The SDK logs "New replication value is null" for every record without a modifiedDate;
    the streams warn once per connection and data type instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "New replication value is null"


logging.getLogger("singer_sdk").addFilter(_NullBookmarkNotice())


class FinishedWithFailuresError(CodatError):
    """The sync read everything it could; some partitions failed (the report's summary says which)."""

    cause = "finished, with failures"


class NothingSelectedError(CodatError):
    """The catalog selects no stream this tap has: the run would read nothing."""

    cause = "nothing selected"


def _exit_now(code: int) -> None:
    """Exit with ``code`` at once, once stderr (and stdout, if it still can be) are flushed.
    Fetch-ahead threads are not waited for (a request in flight must not hold up a stopping
    run), and a stdout that cannot be written is not flushed again by the interpreter."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    logging.shutdown()
    os._exit(code)


class Terminated(BaseException):
    """SIGTERM or SIGINT arrived: the sync stops, the run exits 128 + the signal's number."""

    def __init__(self, signum: int, tap: TapCodatCommerce) -> None:
        super().__init__(signum)
        self.signum = signum
        self.tap = tap


class TapCodatCommerce(Tap):
    """Singer tap for Codat's Commerce API."""

    name = "tap-codat-commerce"
    message_writer_class = OrjsonWriter

    config_jsonschema = th.PropertiesList(
        th.Property("api_key", th.StringType, required=True, secret=True,
                    title="API key",
                    description="Codat API key: the raw key, or the full 'Basic …' header value the "
                                "Codat Portal shows."),
        th.Property("base_url", th.StringType, default=DEFAULT_BASE_URL, title="Base URL",
                    description="Codat API base URL. https is required except on loopback (the sandbox)."),
        th.Property("start_date", th.DateTimeType, title="Start date",
                    description="Read records modified on or after this date where no bookmark exists yet."),
        th.Property("company_ids", th.CustomType({"type": ["array", "string", "null"], "items": {"type": "string"}}),
                    title="Company IDs",
                    description="Only these companies (UUIDs): a JSON array, or one string of ids separated by "
                                "commas or spaces. Default: every company of the client."),
        th.Property("page_size", th.IntegerType, default=DEFAULT_PAGE_SIZE, title="Page size",
                    description=f"Records per request, 1-{MAX_PAGE_SIZE} (Codat's maximum)."),
        th.Property("max_concurrency", th.IntegerType, default=DEFAULT_CONCURRENCY, title="Max concurrency",
                    description="Requests in flight at once (pages fetched ahead, data types side by side, "
                                "the next companies' connections). 1 = strictly sequential. Never more than "
                                "10 per company, Codat's limit."),
        th.Property("shard_count", th.IntegerType, default=1, title="Shard count",
                    description="Split companies over this many workers (stable hash of company id)."),
        th.Property("shard_index", th.IntegerType, default=0, title="Shard index",
                    description="Which shard this worker syncs: 0 to shard_count - 1."),
        th.Property("check_data_status", th.BooleanType, default=True, title="Check data status",
                    description="Read each company's dataStatus first and skip data types that never synced "
                                "(no 404/409 round trip)."),
        th.Property("refresh_before_read", th.BooleanType, default=False, title="Refresh before read",
                    description="Queue a Codat sync of each company and wait for it (up to refresh_timeout) "
                                "before reading it."),
        th.Property("refresh_timeout", th.NumberType, default=900, title="Refresh timeout (s)",
                    description="Longest wait for a refresh_before_read sync; then what has synced is read."),
        th.Property("max_retries", th.IntegerType, default=8, title="Max tries",
                    description="Attempts per request for 408/429/5xx, timeouts and dropped connections."),
        th.Property("max_retry_after", th.NumberType, default=300, title="Max Retry-After (s)",
                    description="Longest Retry-After the tap sleeps through; a longer one (daily quota "
                                "spent) stops the sync with a clear error."),
        th.Property("request_timeout", th.NumberType, default=120, title="Request timeout (s)",
                    description="Seconds one whole response may take (connecting, headers and body) before it "
                                "is cut off and retried."),
        th.Property("max_requests_per_minute", th.IntegerType, default=DEFAULT_REQUESTS_PER_MINUTE,
                    title="Max requests per minute",
                    description="Every request the tap sends (retries, dataStatus and listings included), across "
                                "all threads, over any 60 seconds. Codat blocks an IP above 1,000 a minute: "
                                "workers behind one egress IP split it (4 workers: 225 each). 0 = no limit."),
        th.Property("quota_reserve", th.IntegerType, default=DEFAULT_QUOTA_RESERVE, title="Quota reserve",
                    description="Stop cleanly (STATE written, exit code 4) once Codat's X-Rate-Limit-Remaining "
                                "says fewer requests than this are left of the client's daily quota, leaving "
                                "them to the client's other applications. 0 = spend it all."),
        th.Property("throttle_wait", th.NumberType, default=900, title="Throttle wait (s)",
                    description="How long one request keeps waiting out 429s (Retry-After, else backoff from 1 s "
                                "to 60 s) before it fails; Codat's own SDKs wait up to an hour."),
        th.Property("max_failed_companies", th.IntegerType, default=DEFAULT_MAX_FAILED_COMPANIES,
                    title="Max failed companies in a row",
                    description="Stop the run (the circuit breaker) when this many companies in a row fail "
                                "wholly for the same cause: then it is not theirs (an IP block, a key without "
                                "access). Fewer failures stay with their company. 0 = never stop."),
        th.Property("progress_interval", th.NumberType, default=30, title="Progress interval (s)",
                    description="Log a progress line (companies done, records, requests against the budget, "
                                "time left) at most this often; 0 = never."),
        th.Property("state_interval", th.NumberType, default=DEFAULT_STATE_INTERVAL, title="STATE interval (s)",
                    description="Write a STATE at most every this many seconds (and when the sync ends or "
                                "fails); 0 writes one after every connection and data type, as the SDK does. "
                                "A resumed run re-reads at most this much work."),
        th.Property("skip_unchanged", th.BooleanType, default=True, title="Skip unchanged data types",
                    description="Skip, without a request, a data type whose last successful Codat sync "
                                "(dataStatus) is the one the last complete read came after. Needs "
                                "check_data_status; a full refresh (no bookmark) always reads."),
        th.Property("reread_after_hours", th.NumberType, default=24, title="Re-read after (h)",
                    description="Read a data type at least this often even when its sync has not moved "
                                "(a Codat re-map can re-stamp records without a new sync)."),
        th.Property("events_file", th.StringType, title="Events file",
                    description="A file of Codat read.completed webhook bodies, one JSON object a line: only "
                                "the (company, connection, data type) triples they list as changed are read. "
                                "See tap-codat-commerce-setup webhooks."),
        th.Property("log_metrics", th.BooleanType, default=False, title="Log metrics",
                    description="Log the SDK's METRIC lines and per-partition sync messages. Default: one "
                                "progress line per company and a summary per stream at the end."),
        th.Property("undeclared_fields", th.StringType, default="drop", allowed_values=["drop", "keep"],
                    title="Undeclared fields",
                    description="Fields Codat sends that the schema does not declare: 'drop' them (one warning "
                                f"per field and stream, as the SDK does) or 'keep' them in '{UNDECLARED}', an "
                                "untyped JSON object declared in SCHEMA at every level that lists properties."),
    ).to_dict()

    def __init__(self, *, config: Any = None, parse_env_config: bool = False, validate_config: bool = True,
                 **kwargs: Any) -> None:
        self.company_rank: dict[str, int] = {}  # company id → its place in the sync (fetch-ahead priority)
        if isinstance(config, Mapping):
            config = dict(config)
            if parse_env_config:  # as the SDK does: the environment wins over the dict
                try:
                    config |= settings_from_environment(self.settings_properties(), os.environ)
                except SettingsError as exc:
                    raise ConfigValidationError(exc.lines[0], errors=exc.lines) from None
                parse_env_config = False
            if validate_config:
                errors = self.config_errors(config)
                if errors:
                    raise ConfigValidationError(errors[0], errors=errors)
            if config.get("company_ids") is not None:
                with contextlib.suppress(ValueError):  # not validated (discovery): left as given
                    config["company_ids"] = company_id_list(config["company_ids"])
        quiet_sdk_logs(self.name, quiet=not (isinstance(config, Mapping) and config.get("log_metrics")))
        super().__init__(config=config, parse_env_config=parse_env_config, validate_config=validate_config,
                         **kwargs)
        if threading.current_thread() is threading.main_thread():  # only the main thread may set them
            for signum in (signal.SIGTERM, signal.SIGINT):
                signal.signal(signum, self._terminate)

    def setup_mapper(self) -> None:
        """The SDK's mapper, from a catalog that declares ``_codat_undeclared`` when
        ``undeclared_fields: keep`` (a catalog discovered without it lacks it), so that SCHEMA
        and RECORD agree."""
        catalog = self.input_catalog
        if catalog is not None and self.config.get("undeclared_fields") == "keep":
            for entry in catalog.streams:
                entry.schema = Schema.from_dict(declare_undeclared(entry.schema.to_dict()))
        super().setup_mapper()

    def _terminate(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM/SIGINT: stop the sync where it is (:meth:`invoke` then calls :meth:`stop_now`
        and exits 128 + ``signum``). Nothing else happens here: the handler may run while this
        thread holds any lock, and taking one again would deadlock."""
        signal.signal(signum, signal.SIG_IGN)  # a second signal does not interrupt the shutdown
        raise Terminated(signum, self)

    def stop_now(self) -> None:
        """After a signal, once the sync has unwound: write the current STATE (valid for a resume:
        every record before it has been written) and cut off the requests in flight."""
        with contextlib.suppress(OutputError):  # the target is gone: nothing more can reach it
            self.state_writer.flush(self.state)  # now, whatever the interval
        if "client" in self.__dict__:
            self.client.cancel_pending()  # requests in flight end now, not when the server answers

    @cached_property
    def request_metrics(self) -> RequestMetrics:
        """The SDK's http_request_duration/http_request_count for every request the client makes."""
        endpoints = {"/companies": "companies", "/companies/{companyId}": "companies",
                     "/companies/{companyId}/connections": "connections"}
        for endpoint in COMMERCE_ENDPOINTS:
            endpoints[f"/companies/{{companyId}}/connections/{{connectionId}}/data/{endpoint.path}"] = endpoint.name
        return RequestMetrics(endpoints, default_stream="companies")

    @classmethod
    def settings_properties(cls) -> dict[str, dict[str, Any]]:
        """Every setting's JSON Schema, the SDK's built-in ones (stream maps, flattening) included."""
        schema = copy.deepcopy(cls.config_jsonschema)
        cls.append_builtin_config(schema)
        return dict(schema.get("properties") or {})

    @classmethod
    def config_errors(cls, config: Mapping[str, Any]) -> list[str]:
        """Every problem with ``config``, one line each, each naming its setting (no SDK wording)."""
        schema = copy.deepcopy(cls.config_jsonschema)
        cls.append_builtin_config(schema)
        schema.pop("required", None)  # a missing setting is reported by settings_errors, with its sources
        lines: dict[str, str] = {}
        validator = jsonschema.validators.validator_for(schema)(schema)
        properties = schema.get("properties") or {}
        for error in validator.iter_errors(dict(config)):
            setting = str(error.path[0]) if error.path else "config"
            message = error.message
            if (properties.get(setting) or {}).get("secret"):  # never echo a key, even a malformed one
                message = f"the value (not shown) fails its {error.validator!r} check: {error.validator_value!r}"
            lines.setdefault(setting, f"{setting}: {message}")
        for line in settings_errors(config):
            lines.setdefault(line.split(":", 1)[0], line)
        return list(lines.values())

    @cached_property
    def client(self) -> CodatClient:
        return self.new_client(max_tries=int(self.config.get("max_retries", 8)))

    def new_client(self, *, max_tries: int) -> CodatClient:
        """A CodatClient from the settings, trying each request up to ``max_tries`` times."""
        config = self.config
        return CodatClient(
            config.get("base_url") or DEFAULT_BASE_URL,
            config.get("api_key") or "",
            retry=RetryPolicy(max_tries=max_tries, max_retry_after=float(config.get("max_retry_after", 300)),
                              throttle_wait=float(config.get("throttle_wait", 900))),
            timeout=float(config.get("request_timeout", 120)),
            max_concurrency=int(config.get("max_concurrency", DEFAULT_CONCURRENCY)),
            user_agent=f"{self.name}/{self.plugin_version}",
            observer=self.request_metrics.observe,
            requests_per_minute=int(config.get("max_requests_per_minute", DEFAULT_REQUESTS_PER_MINUTE)),
            quota_reserve=int(config.get("quota_reserve", DEFAULT_QUOTA_RESERVE)),
        )

    @cached_property
    def report(self) -> RunReport:
        """This run's failed partitions, gone companies and circuit breaker (see failures.py)."""
        return RunReport(self.logger, max_failed_companies=int(self.config.get(
            "max_failed_companies", DEFAULT_MAX_FAILED_COMPANIES)))

    @cached_property
    def progress(self) -> Progress:
        return Progress(self.logger, float(self.config.get("progress_interval", 30)))

    @property
    def state_writer(self) -> IntervalStateWriter:  # type: ignore[override]
        """STATE lines on an interval, serialised once each (see state.py)."""
        return self._interval_state_writer

    @cached_property
    def _interval_state_writer(self) -> IntervalStateWriter:
        assert isinstance(self.message_writer, OrjsonWriter)
        interval = float(self.config.get("state_interval", DEFAULT_STATE_INTERVAL))
        return IntervalStateWriter(self.message_writer, interval)

    @cached_property
    def changes(self) -> ChangeFilter:
        """What this run reads (see changes.py); the events file's events are claimed once, here."""
        config = self.config
        events_file = config.get("events_file")
        state = cast("dict[str, Any]", self.state)
        events, claimed = claim_events(str(events_file), state, int(config.get("shard_index", 0)),
                                       int(config.get("shard_count", 1))) if events_file else (None, ())
        return ChangeFilter(
            skip_unchanged=bool(config.get("skip_unchanged", True)) and bool(config.get("check_data_status", True)),
            reread_after=timedelta(hours=float(config.get("reread_after_hours", 24))),
            events=None if events is None else frozenset(events), claimed=claimed)

    def load_state(self, state: dict[str, Any]) -> None:
        """The SDK's state loading, with what cannot be read as bookmarks left out (one warning;
        see :func:`~tap_codat_commerce.state.readable_state`), and the note of the events the run
        that wrote ``state`` consumed (the SDK keeps only ``bookmarks``; changes.py: this run
        deletes them)."""
        super().load_state(readable_state(state, "the state", self.logger))
        if EVENTS_STATE_KEY in state:
            cast("dict[str, Any]", self.state)[EVENTS_STATE_KEY] = copy.deepcopy(state[EVENTS_STATE_KEY])

    @cached_property
    def readiness(self) -> Readiness:
        return Readiness(self.client, enabled=bool(self.config.get("check_data_status", True)))

    def run_sync(self) -> None:
        """The SDK's :meth:`sync_all` of every selected stream; then, if partitions failed, the
        report's summary and FinishedWithFailuresError. Raises NothingSelectedError when the
        catalog selects no stream of this tap, before any request."""
        if not any(stream.selected or stream.has_selected_descendents for stream in self.streams.values()):
            named = sorted(entry.tap_stream_id for entry in self.input_catalog.streams) if self.input_catalog else []
            raise NothingSelectedError(
                f"the catalog selects no stream this tap has (it names: {', '.join(named) or 'none'}; this tap has: "
                f"{', '.join(self.streams)})")
        try:
            self.sync_all()
        except CodatError:
            self._log_summary(error=False)
            raise
        if self.report.failures:
            last = self._log_summary(error=True)[-1]
            raise FinishedWithFailuresError(last)
        # Success: the events this sync claimed (when it did: "changes" is computed as it starts) are read.
        if "changes" in self.__dict__ and self.changes.consumed_state(cast("dict[str, Any]", self.state)):
            self.state_writer.flush(self.state)

    def _log_summary(self, *, error: bool) -> list[str]:
        """Log the report's summary (its last line too, unless ``error``: the caller reports it)."""
        lines = self.report.summary(self.progress.total)  # the companies this run visits
        for line in lines[:-1] if error else lines:
            self.logger.warning("%s", line)
        return lines

    def discover_streams(self) -> list[Stream]:
        return [
            CompaniesStream(self),
            ConnectionsStream(self),
            *(CommerceStream(self, endpoint) for endpoint in COMMERCE_ENDPOINTS),
        ]

    def check_connection(self) -> bool:
        """``--test``: what it checks, one line each, and whether it passed (see connection_test.py)."""
        # A test answers in seconds: at most 3 tries per request, not the sync's max_retries.
        client = self.new_client(max_tries=min(3, int(self.config.get("max_retries", 8))))
        return run_connection_test(client, self.config, self.logger)

    # --- command line -----------------------------------------------------------------------
    @classmethod
    def invoke(cls, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Run the sync; a bad setting or a Codat failure ends it with one clear line and exit code 1."""
        given = kwargs.get("config")
        if isinstance(given, CommandLineSettings) and given.problems and not kwargs.get("about"):
            for line in given.problems:
                cls.logger.error("%s", line)
            sys.exit(1)
        # A page of 2000 orders is ~160k new containers, none in a cycle, freed by reference
        # counting once written: a young generation this large lets them go before any cyclic
        # collection walks them (measured: ~10% less CPU per record than the default 700).
        gc.set_threshold(100_000, 50, 100)
        try:
            cls._invoke_sync(*args, **kwargs)
        except ConfigValidationError as exc:
            cls.report_bad_settings(exc)
            sys.exit(EXIT_FAILED)
        except FinishedWithFailuresError as exc:
            cls.logger.error("%s", exc)
            _exit_now(EXIT_WITH_FAILURES)
        except QuotaReserveReachedError as exc:
            cls.logger.error("Sync stopped: %s; the last STATE written is where to resume", exc.located())
            _exit_now(EXIT_QUOTA_RESERVE)
        except CodatError as exc:
            cls.logger.error("Sync failed: %s", exc.located())
            _exit_now(EXIT_FAILED)
        except Terminated as exc:
            exc.tap.stop_now()
            name = signal.Signals(exc.signum).name
            cls.logger.error("Sync stopped by %s before it finished; the last STATE written is where to resume",
                             name)
            _exit_now(128 + exc.signum)
        except (OutputError, BrokenPipeError) as exc:
            message = str(exc) if isinstance(exc, OutputError) else (
                "Sync stopped: whatever reads stdout (the target) closed it before the end")
            cls.logger.error("%s", message)
            _exit_now(EXIT_FAILED)

    @classmethod
    def _invoke_sync(cls, *, about: bool = False, about_format: str | None = None,
                     config: CommandLineSettings | None = None, state: dict[str, Any] | None = None,
                     catalog: dict[str, Any] | None = None) -> None:
        """The SDK's ``Tap.invoke`` (``--about``, or build the tap and sync), syncing with :meth:`run_sync`;
        ``state`` and ``catalog`` as :meth:`cb_input_file` read them."""
        super(Tap, cls).invoke(about=about, about_format=about_format)
        cls.print_version(print_fn=cls.logger.info)
        config = config or CommandLineSettings()
        tap = cls(config=config.config, state=state, catalog=catalog, parse_env_config=config.parse_env,
                  validate_config=True)
        tap.run_sync()

    @classmethod
    def report_bad_settings(cls, exc: ConfigValidationError) -> None:
        for line in exc.errors or [str(exc)]:
            cls.logger.error("%s", line)

    @classmethod
    def cb_config(cls, ctx: click.Context, param: click.Option, value: tuple[str, ...]) -> Any:  # type: ignore[override]
        """``--config``: files in order, then the environment for what they leave out. An unreadable
        file or a bad variable is kept as a problem: a sync or ``--test`` reports it (one line each,
        exit code 1); ``--about`` and ``--discover`` need no settings and go on."""
        try:
            return CommandLineSettings(gather_settings(value, cls.settings_properties(), os.environ))
        except SettingsError as exc:
            return CommandLineSettings(problems=exc.lines)

    @classmethod
    def cb_input_file(cls, ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
        """``--state`` / ``--catalog`` FILE: read and checked now (see inputs.py); a file the tap
        cannot use is one ERROR line naming it, and exit code 1. Returns the checked JSON."""
        if value is None:
            return None
        option = f"--{param.name}"
        try:
            loaded = read_json_input(option, value)
            if param.name == "catalog":
                check_catalog(f"{option} {value}", loaded)
            else:
                loaded = readable_state(loaded, f"{option} {value}", cls.logger)
        except InputFileError as exc:
            cls.logger.error("%s", exc)
            ctx.exit(1)
        return loaded

    @classmethod
    def cb_test(cls, ctx: click.Context, param: click.Option, value: str) -> None:  # type: ignore[override]
        """``--test``: check the settings, the API key, companies, connections and one record of each
        data type; exit code 0 when it passed, 1 when it did not (``--test=schema``: the SCHEMA messages)."""
        if value == CliTestOptionValue.Disabled.value:
            return
        config = ctx.params.get("config") or CommandLineSettings()
        if config.problems:
            for line in config.problems:
                cls.logger.error("%s", line)
            ctx.exit(1)
        try:
            tap = cls(config=config.config, parse_env_config=config.parse_env, validate_config=True)
        except ConfigValidationError as exc:
            cls.report_bad_settings(exc)
            ctx.exit(1)
        if value == CliTestOptionValue.Schema.value:
            tap.write_schemas()
            ctx.exit(0)
        ctx.exit(0 if tap.check_connection() else 1)

    @classmethod
    def get_singer_command(cls) -> click.Command:
        command = super().get_singer_command()
        command.help = HELP
        for option in command.params:
            if option.name == "config" and isinstance(option, click.Option):
                option.help = ("Settings file (JSON), or ENV; settings missing from the files are read from "
                               "TAP_CODAT_COMMERCE_<SETTING> environment variables.")
            elif option.name in ("state", "catalog") and isinstance(option, click.Option):
                option.type = click.STRING  # read by cb_input_file: one line for any fault, never click's usage
                option.callback = cls.cb_input_file
            elif option.name == "test" and isinstance(option, click.Option):
                option.help = ("Check the settings, the API key, the companies and connections, and read one "
                               "record of each data type; say what passed, exit 1 on failure. "
                               "--test=schema prints the SCHEMA messages.")
        return command


def _provides_services(tap: TapCodatCommerce) -> TapServices:
    return tap  # mypy checks here that the tap gives the streams what TapServices names


if __name__ == "__main__":
    TapCodatCommerce.cli()
