"""Before the first sync: enable commerce sync settings, onboard a company, wait for its data.

Python API (each function takes the shared :class:`CodatClient`) and the console script
``tap-codat-commerce-setup``::

    tap-codat-commerce-setup sync-settings [--schedule-hours 24] [--dry-run]
    tap-codat-commerce-setup create-company --name NAME --platform P [--reuse] [--json]
    tap-codat-commerce-setup status --company ID [--json]
    tap-codat-commerce-setup refresh --company ID [--data-type T]
    tap-codat-commerce-setup wait --company ID [--timeout S]
    tap-codat-commerce-setup webhooks [--url URL] [--events-file F]
    tap-codat-commerce-setup receive --events-file F [--host H] [--port P]   (CODAT_WEBHOOK_SECRET)

Settings as the tap's: ``--config FILE`` (before or after the subcommand), then
``TAP_CODAT_COMMERCE_API_KEY`` / ``TAP_CODAT_COMMERCE_BASE_URL`` for what the file leaves out. In a
Meltano project it is the extractor's ``setup`` command, ``meltano invoke tap-codat-commerce:setup
status --company ID``: Meltano passes the extractor's settings as those variables.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from .codat.data_types import COMMERCE_DATA_TYPES, DataTypeStatus
from .codat.http import CodatClient, CodatError, RetryPolicy
from .codat.operations import (
    CONNECTION_STATES,
    SyncInProgressError,
    commerce_connections,
    data_status,
    refresh,
    wait_for_sync,
)
from .codat.paging import PageStream, records_of
from .settings import DEFAULT_BASE_URL, SettingsError, gather_settings, settings_errors

COMPANY_NAME = re.compile(r"^[A-Za-z0-9\s\-',&@.?!]+$")
# The settings the setup command reads (a subset of the tap's), typed for the environment.
SETUP_SETTINGS: dict[str, dict[str, Any]] = {
    "api_key": {"type": "string", "secret": True}, "base_url": {"type": "string"},
    "max_retries": {"type": "integer"}, "request_timeout": {"type": "number"},
}
# The setup command reads Meltano's settings only when Meltano runs it (as the extractor's command).
MISSING_KEY = ("api_key: not set; give --config FILE holding \"api_key\", or set TAP_CODAT_COMMERCE_API_KEY; in a "
               "Meltano project: meltano config set tap-codat-commerce api_key, then run this as "
               "meltano invoke tap-codat-commerce:setup COMMAND (Meltano passes the extractor's settings to it)")
ONE_TIME_LINK_LIFETIME = timedelta(days=1)
# How long `wait` lets a linked company show no queued sync at all before saying nothing is coming.
NEVER_QUEUED_GRACE_S = 60.0
ONE_TIME_LINKS = ("If your Codat client uses one-time links (since 2025; the link carries ?otp=…), it works once "
                  "and expires after a day: send it promptly.")


WEBHOOK_EVENTS = ("read.completed", "read.completed.initial")


class SetupError(CodatError):
    """A setup step that cannot go on; its message is the one line the user sees."""


# --- sync settings ----------------------------------------------------------------------------
@dataclass
class SettingChange:
    data_type: str
    before: dict[str, Any] | None
    after: dict[str, Any]


def enable_commerce_sync(client: CodatClient, *, schedule_hours: int = 24,
                         dry_run: bool = False) -> list[SettingChange]:
    """Fetch every commerce data type on first link and every ``schedule_hours``; others untouched."""
    if schedule_hours < 1:
        raise SetupError("--schedule-hours must be at least 1")
    profile = client.get_json("/profile/syncSettings")
    settings: list[dict[str, Any]] = profile.get("settings") or []
    by_type = {s.get("dataType"): s for s in settings}
    changes = []
    next_order = max((s.get("syncOrder") or 0 for s in settings), default=0) + 1
    for data_type in COMMERCE_DATA_TYPES:
        current = by_type.get(data_type)
        wanted = {**(current or {"dataType": data_type, "syncOrder": next_order, "isLocked": False}),
                  "fetchOnFirstLink": True, "syncSchedule": schedule_hours}
        if current is None:
            settings.append(wanted)
            next_order += 1
        elif current == wanted:
            continue
        else:
            settings[settings.index(current)] = wanted
        changes.append(SettingChange(data_type, current, wanted))
    if changes and not dry_run:
        body = {"clientId": profile.get("clientId"), "settings": settings,
                "overridesDefaults": profile.get("overridesDefaults", True)}
        client.send_json("POST", "/profile/syncSettings", body)
    return changes


# --- companies and connections ------------------------------------------------------------------
@dataclass
class Onboarded:
    company_id: str
    company_name: str
    connection_id: str
    platform: str
    link_url: str
    reused_company: bool = False
    reused_connection: bool = False
    status: str = "PendingAuth"  # the connection's: PendingAuth until the business opens link_url


def commerce_platforms(client: CodatClient) -> list[dict[str, Any]]:
    return [i for i in records_of(PageStream(client, "/integrations", page_size=500))
            if i.get("sourceType") == "Commerce" and i.get("enabled", True)]


def resolve_platform(client: CodatClient, wanted: str) -> dict[str, Any]:
    """A commerce integration by 4-letter key or by name (any case)."""
    platforms = commerce_platforms(client)
    for platform in platforms:
        if wanted.strip().lower() in (str(platform.get("key", "")).lower(), str(platform.get("name", "")).lower()):
            return platform
    known = ", ".join(f"{p['name']} ({p['key']})" for p in sorted(platforms, key=lambda p: p["name"]))
    raise SetupError(f"unknown commerce platform {wanted!r}; commerce platforms: {known}")


def check_company_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise SetupError("the company name is empty")
    if not COMPANY_NAME.match(name):
        bad = "".join(sorted({ch for ch in name if not COMPANY_NAME.match(ch)}))
        raise SetupError(f"the company name {name!r} has characters Codat does not accept: {bad!r} "
                         "(allowed: letters, digits, spaces and - ' , & @ . ? !)")
    return name


def find_company(client: CodatClient, name: str) -> dict[str, Any] | None:
    return next((c for c in records_of(PageStream(client, "/companies", page_size=500)) if c.get("name") == name),
                None)


def one_time_link_expired(connection: dict[str, Any], now: datetime | None = None) -> bool:
    """A one-time link (``?otp=``) is valid for a day after the connection was created."""
    if "otp=" not in str(connection.get("linkUrl") or ""):
        return False
    try:
        created = datetime.fromisoformat(str(connection.get("created")))
    except ValueError:
        return True  # no creation time to trust: a new connection gives a fresh link
    if created.tzinfo is None:
        created = created.replace(tzinfo=UTC)
    return (now or datetime.now(UTC)) - created > ONE_TIME_LINK_LIFETIME


def create_company(client: CodatClient, name: str, platform: str, *, reuse: bool = False,
                   description: str | None = None) -> Onboarded:
    """Create a company and a commerce connection whose linkUrl the customer opens. With ``reuse``, a
    company of the same name is used instead, and so is its connection to the same platform
    (Linked, or PendingAuth with a link still valid) if it has one: running it twice adds nothing."""
    name = check_company_name(name)
    integration = resolve_platform(client, platform)  # before anything is created
    company = find_company(client, name) if reuse else None
    reused = company is not None
    if company is not None:
        for existing in commerce_connections(client, company["id"]):
            if existing.get("integrationKey") == integration["key"] and (existing.get("status") == "Linked" or (
                    existing.get("status") == "PendingAuth" and not one_time_link_expired(existing))):
                return Onboarded(company["id"], company["name"], existing["id"], integration["name"],
                                 existing.get("linkUrl") or "", True, True, existing["status"])
    if company is None:
        body: dict[str, Any] = {"name": name}
        if description:
            body["description"] = description
        company = client.send_json("POST", "/companies", body)
    try:
        connection = client.send_json("POST", f"/companies/{company['id']}/connections",
                                      {"platformKey": integration["key"]})
    except CodatError as exc:
        if reused:
            raise SetupError(f"could not add a {integration['name']} connection to company {company['id']}: "
                             f"{exc}") from None
        try:
            client.request("DELETE", f"/companies/{company['id']}")
        except CodatError:
            raise SetupError(f"created company {company['id']} but not its connection ({exc}); "
                             "the company was NOT removed: delete it or rerun with --reuse") from None
        raise SetupError(f"could not create the {integration['name']} connection ({exc}); "
                         "the company just created was removed again") from None
    return Onboarded(company["id"], company["name"], connection["id"], integration["name"], connection["linkUrl"],
                     reused)


# --- command line ---------------------------------------------------------------------------------
def client_from(config_path: str | None, environ: Mapping[str, str] | None = None) -> CodatClient:
    """The tap's client from ``--config`` and, for what it leaves out, the TAP_CODAT_COMMERCE_*
    environment variables (the tap's own rule). Raises SetupError naming the file or setting."""
    try:
        config = gather_settings([config_path] if config_path else [], SETUP_SETTINGS,
                                 os.environ if environ is None else environ)
    except SettingsError as exc:
        raise SetupError(exc.lines[0]) from None
    api_key = config.get("api_key")
    if not str(api_key or "").strip():
        raise SetupError(MISSING_KEY)
    base_url = config.get("base_url") or DEFAULT_BASE_URL
    errors = [e for e in settings_errors({"api_key": api_key, "base_url": base_url}) if e.startswith("base_url")]
    if errors:
        raise SetupError(errors[0])
    return CodatClient(base_url, str(api_key), retry=RetryPolicy(max_tries=int(config.get("max_retries", 5))),
                       timeout=float(config.get("request_timeout", 60)), user_agent="tap-codat-commerce-setup")


def linked_connections(client: CodatClient, company_id: str) -> list[dict[str, Any]]:
    """The company's Linked commerce connections. Raises SetupError, in one line saying what the
    business has to do, when there is none (so nothing can sync: waiting would wait for nothing)."""
    connections = commerce_connections(client, company_id)
    linked = [c for c in connections if c.get("status") == "Linked"]
    if linked:
        return linked
    pending = [c for c in connections if c.get("status") == "PendingAuth"]
    if pending:
        first = pending[0]
        raise SetupError(f"company {company_id}: the business has not opened the link yet (connection {first['id']}, "
                         f"{first.get('platformName')}, PendingAuth), so nothing can sync; send them "
                         f"{first.get('linkUrl')}")
    if connections:
        first = connections[0]
        raise SetupError(f"company {company_id}: connection {first['id']} ({first.get('platformName')}) is "
                         f"{first.get('status')}, so nothing can sync; the business must link again "
                         f"(tap-codat-commerce-setup create-company --name NAME --platform P --reuse gives a new "
                         "link)")
    raise SetupError(f"company {company_id} has no commerce connection; add one with tap-codat-commerce-setup "
                     "create-company --name NAME --platform P --reuse")


class Progress:
    """One updating line on a terminal; a plain line per change otherwise."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self.last = ""

    def __call__(self, statuses: list[DataTypeStatus]) -> None:
        done = sum(s.done for s in statuses)
        busy = ", ".join(f"{s.data_type.removeprefix('commerce-')} {s.status}" for s in statuses if not s.done)
        line = f"{done}/{len(statuses)} data types done" + (f"; waiting on {busy}" if busy else "")
        if line == self.last:
            return
        self.last = line
        if self.tty:
            self.stream.write("\r\033[K" + line[:200])
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def finish(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")


def _print_table(rows: Iterable[tuple[str, ...]], out: TextIO) -> None:
    rows = list(rows)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() + "\n")


def parser() -> argparse.ArgumentParser:
    config_help = ("the tap's config JSON (api_key, base_url); what it leaves out is read from "
                   "TAP_CODAT_COMMERCE_API_KEY / TAP_CODAT_COMMERCE_BASE_URL")
    # --config before or after the subcommand: the subcommand's copy only sets it when given there.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help=config_help)
    p = argparse.ArgumentParser(prog="tap-codat-commerce-setup",
                                description="Prepare Codat for tap-codat-commerce: sync settings, companies, syncs.")
    p.add_argument("--config", help=config_help)
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sync-settings", parents=[common],
                       help="enable every commerce data type in the profile sync settings")
    s.add_argument("--schedule-hours", type=int, default=24, help="hours between automatic syncs (default 24)")
    s.add_argument("--dry-run", action="store_true", help="print what would change; change nothing")
    c = sub.add_parser("create-company", parents=[common],
                       help="create a company and a commerce connection; print its linkUrl")
    c.add_argument("--name", required=True)
    c.add_argument("--platform", required=True, help="a commerce platform name (WooCommerce) or key (ltpp)")
    c.add_argument("--description")
    c.add_argument("--reuse", action="store_true",
                   help="reuse a company of the same name, and its connection to the platform if it has one")
    c.add_argument("--json", action="store_true", help="print JSON for machines")
    st = sub.add_parser("status", parents=[common],
                        help="each commerce connection's state (and link), then each data type's sync status")
    st.add_argument("--company", required=True)
    st.add_argument("--json", action="store_true")
    r = sub.add_parser("refresh", parents=[common], help="queue a sync of one data type, or of every enabled one")
    r.add_argument("--company", required=True)
    r.add_argument("--data-type", help="e.g. commerce-orders, orders, commerce-info (company info)")
    r.add_argument("--connection", help="only this connection")
    w = sub.add_parser("wait", parents=[common],
                       help="wait until every enabled commerce data type has synced or failed")
    w.add_argument("--company", required=True)
    w.add_argument("--timeout", type=float, default=600, help="seconds (default 600)")
    w.add_argument("--interval", type=float, default=2, help="seconds between polls (default 2)")
    h = sub.add_parser("webhooks", help="what to configure so that runs read only what Codat re-synced "
                                        "(read.completed events); needs no API key")
    h.add_argument("--url", default="https://YOUR-RECEIVER.example/codat/read-completed",
                   help="the HTTPS endpoint where Codat reaches the receiver")
    h.add_argument("--events-file", default="/var/lib/tap-codat-commerce/events.jsonl",
                   help="where the receiver appends each event, one JSON object a line")
    rc = sub.add_parser("receive", help="serve Codat's signed read.completed webhooks, appending each event once "
                                        "to the events file (the signing secret in CODAT_WEBHOOK_SECRET; needs "
                                        "the webhooks extra)")
    rc.add_argument("--events-file", required=True, help="the tap's events_file")
    rc.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    rc.add_argument("--port", type=int, default=8787, help="port (default 8787; 0: any free one)")
    rc.add_argument("--max-body-bytes", type=int, default=1 << 20, help="largest body accepted (default 1 MiB)")
    return p


def webhook_instructions(url: str, events_file: str) -> str:
    """What to configure at Codat and in the tap for event-driven runs (printed by ``webhooks``)."""
    consumer = json.dumps({"url": url, "eventTypes": list(WEBHOOK_EVENTS)})
    return f"""Event-driven runs: Codat says which data types changed, the tap reads only those.

1. At Codat, create a webhook consumer for {" and ".join(WEBHOOK_EVENTS)}
   (Portal: Settings > Webhooks > Events, or the API):
     curl -X POST https://api.codat.io/webhooks \\
       -H "Authorization: $CODAT_AUTHORIZATION" -H "Content-Type: application/json" \\
       -d '{consumer}'
   ($CODAT_AUTHORIZATION: the "Basic …" value the Codat Portal shows with your API key.)
   read.completed says, per connection and data type, whether records were modified (recordsModified);
   read.completed.initial comes after each link. The legacy DataSyncCompleted / DatasetDataChanged
   events were retired in January 2025.
2. Run the receiver where {url} leads
   (TLS at your proxy or load balancer), with the consumer's signing secret (Portal: the
   consumer > Signing secret, whsec_...) in the environment, never on a command line:
     pip install 'tap-codat-commerce[webhooks]'
     CODAT_WEBHOOK_SECRET=whsec_... tap-codat-commerce-setup receive --host 127.0.0.1 --port 8787 \\
       --events-file {events_file}
   It verifies each delivery's Svix signature, and appends each event once, fsynced, to that file.
3. Run the tap with the same file; only the (company, connection, data type) triples its events
   list as changed are read, and companies they do not name are not visited:
     TAP_CODAT_COMMERCE_EVENTS_FILE={events_file} meltano run tap-codat-commerce target-postgres
   Each run claims the events there (an event arriving meanwhile waits for the next run); they are
   consumed once a run succeeds and its STATE is saved; a failed run leaves them to the next one.
   Do not move or rotate the file yourself. Codat replays missed webhook messages for two weeks.

Without webhooks, the tap still skips data types whose dataStatus shows no new successful sync since
its last read (skip_unchanged, on by default).
"""


def _link_lines(status: str, link_url: str) -> str:
    if status != "PendingAuth":
        return f"linkUrl {link_url}\nThe connection is {status}: {CONNECTION_STATES.get(status, status)}.\n"
    return (f"linkUrl {link_url}\n"
            "Send the linkUrl to the business: opening it authorises access and starts the first sync.\n"
            f"{ONE_TIME_LINKS}\n")


def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    if args.command == "webhooks":
        out.write(webhook_instructions(args.url, args.events_file))
        return 0
    if args.command == "receive":
        return receive(args)
    client = client_from(args.config)
    if args.command == "sync-settings":
        changes = enable_commerce_sync(client, schedule_hours=args.schedule_hours, dry_run=args.dry_run)
        verb = "would change" if args.dry_run else "changed"
        if not changes:
            out.write("commerce sync settings already enabled; nothing to change\n")
        for change in changes:
            before = "absent" if change.before is None else (
                f"fetchOnFirstLink={change.before.get('fetchOnFirstLink')} "
                f"syncSchedule={change.before.get('syncSchedule')}")
            out.write(f"{verb} {change.data_type}: {before} -> fetchOnFirstLink=True "
                      f"syncSchedule={change.after['syncSchedule']}\n")
        return 0
    if args.command == "create-company":
        onboarded = create_company(client, args.name, args.platform, reuse=args.reuse, description=args.description)
        if args.json:
            out.write(json.dumps(asdict(onboarded)) + "\n")
        else:
            action = "reused" if onboarded.reused_company else "created"
            connection_action = ", reused" if onboarded.reused_connection else ""
            out.write(f"company {onboarded.company_id} ({onboarded.company_name}, {action})\n"
                      f"connection {onboarded.connection_id} ({onboarded.platform}, {onboarded.status}"
                      f"{connection_action})\n" + _link_lines(onboarded.status, onboarded.link_url))
        return 0
    if args.command == "status":
        connections = commerce_connections(client, args.company)
        statuses = data_status(client, args.company)
        if args.json:
            out.write(json.dumps({"connections": [
                {"id": c["id"], "platform": c.get("platformName"), "status": c.get("status"),
                 "linkUrl": c.get("linkUrl"), "lastSync": c.get("lastSync")} for c in connections],
                "data_types": [asdict(s) for s in statuses]}) + "\n")
            return 0
        if connections:
            _print_table([("connection", "platform", "state", "meaning")] + [
                (c["id"], str(c.get("platformName")), str(c.get("status")),
                 CONNECTION_STATES.get(str(c.get("status")), "")) for c in connections], out)
        else:
            out.write("no commerce connection: add one with create-company --reuse\n")
        for c in connections:
            if c.get("status") == "PendingAuth":
                out.write(f"  send to the business: {c.get('linkUrl')}\n")
        if any(c.get("status") == "PendingAuth" for c in connections):
            out.write(f"  {ONE_TIME_LINKS}\n")
        out.write("\n")
        _print_table([("data type", "status", "last successful sync", "readable")] + [
            (s.data_type, s.status, s.last_successful_sync or "-", "yes" if s.readable else "no")
            for s in statuses], out)
        return 0
    if args.command == "refresh":
        linked_connections(client, args.company)  # nothing is queued on an unlinked connection
        try:
            queued = refresh(client, args.company, args.data_type, args.connection)
        except SyncInProgressError as exc:
            raise SetupError(f"{exc}; run `tap-codat-commerce-setup wait --company {args.company}` first, then "
                             "refresh") from None
        out.write(f"queued: {', '.join(queued)}\n")
        return 0
    linked_connections(client, args.company)  # waiting on a link nobody opened would only time out
    progress = Progress(err)
    result = wait_for_sync(client, args.company, timeout=args.timeout, interval=args.interval, on_progress=progress,
                           never_queued_grace=min(NEVER_QUEUED_GRACE_S, args.timeout))
    progress.finish()
    not_queued = result.not_queued
    if (result.never_queued or result.timed_out) and not_queued and len(not_queued) == len(result.pending):
        err.write(f"tap-codat-commerce-setup: error: no sync of {', '.join(not_queued)} was ever queued for company "
                  f"{args.company}, so there is nothing to wait for; enable them (tap-codat-commerce-setup "
                  f"sync-settings), then `tap-codat-commerce-setup refresh --company {args.company}`\n")
        return 1
    if result.timed_out:
        err.write(f"tap-codat-commerce-setup: error: timed out after {result.waited_s:.0f} s; still syncing: "
                  f"{', '.join(result.pending)} (Codat pauses and retries fetches on platform errors; run wait "
                  "again, or see status)\n")
        return 1
    if result.failed:
        err.write(f"tap-codat-commerce-setup: error: sync failed for {', '.join(result.failed)}\n")
        return 1
    out.write(f"every enabled commerce data type has synced ({result.waited_s:.0f} s)\n")
    return 0


def receive(args: argparse.Namespace) -> int:
    """``receive``: the webhook receiver (tap_codat_commerce/webhooks/receiver.py) until SIGTERM."""
    try:
        from .webhooks.receiver import ReceiverError, serve
    except ImportError:
        raise SetupError("the receiver needs the webhooks extra: pip install 'tap-codat-commerce[webhooks]'") from None
    try:
        return serve(args.host, args.port, args.events_file, max_body_bytes=args.max_body_bytes)
    except ReceiverError as exc:
        raise SetupError(str(exc)) from None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        code = run(args, sys.stdout, sys.stderr)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # the reader (`| head`) has all it wanted: stop quietly; Python must not flush into the pipe again
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except CodatError as exc:
        sys.stderr.write(f"tap-codat-commerce-setup: error: {exc}\n")
        return 1
    except KeyboardInterrupt:
        sys.stderr.write("tap-codat-commerce-setup: interrupted\n")
        return 130


if __name__ == "__main__":
    sys.exit(main())
