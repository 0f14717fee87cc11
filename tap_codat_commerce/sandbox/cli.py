"""``tap-codat-commerce-sandbox``: start the local Codat-compatible server."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from . import Sandbox
from .store import WorldStore, WorldStoreError
from .world import Settings

DEFAULT_DATA_DIR = ".codat-sandbox"


def _rate(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be between 0 and 1")
    return value


def _non_negative(kind: type[int] | type[float]) -> Callable[[str], float]:
    def check(text: str) -> float | int:
        value = kind(text)
        if value < 0:
            raise argparse.ArgumentTypeError("must not be negative")
        return value
    return check


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tap-codat-commerce-sandbox",
                                description="A local Codat-compatible API (Platform + Commerce) on loopback.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=4010, help="port (default 4010; 0 picks a free one)")
    p.add_argument("--seed", type=int, default=42, help="seed for all generated data and faults (default 42)")
    p.add_argument("--api-key", help="the API key clients must send (default: derived from the seed)")
    world = p.add_argument_group("the world kept across restarts (clock, changes, companies, connections, settings)")
    world.add_argument("--data-dir", default=DEFAULT_DATA_DIR,
                       help=f"where the world is kept (default ./{DEFAULT_DATA_DIR}); a new directory starts a "
                            "new world with ids of its own")
    world.add_argument("--reset", action="store_true", help="forget the world kept in --data-dir and start over")
    world.add_argument("--in-memory", action="store_true",
                       help="keep nothing: a fresh world that is forgotten on stop (tests, benchmarks)")
    size = p.add_argument_group("size")
    size.add_argument("--companies", type=_non_negative(int), default=3,
                      help="pre-seeded companies, each with a linked commerce connection (default 3)")
    size.add_argument("--orders", type=_non_negative(int), default=500,
                      help="orders per connection; other data types scale with it (default 500)")
    size.add_argument("--accounting-every", type=_non_negative(int), default=3,
                      help="every Nth pre-seeded company also has a linked accounting connection (0: none)")
    size.add_argument("--sync-delay", type=_non_negative(float), default=1.0,
                      help="seconds a queued sync takes to reach Complete (default 1; 0 = instant)")
    size.add_argument("--change-every", type=_non_negative(float), default=0.0,
                      help="advance the clock every S seconds: update and add records (default off)")
    faults = p.add_argument_group("limits and faults (all off by default, deterministic per seed)")
    faults.add_argument("--latency-ms", type=_non_negative(float), default=0.0, help="added to every API response")
    faults.add_argument("--error-rate", type=_rate, default=0.0, help="share of requests answered 500/503")
    faults.add_argument("--drop-rate", type=_rate, default=0.0, help="share of connections dropped unanswered")
    faults.add_argument("--truncate-rate", type=_rate, default=0.0, help="share of 200 bodies cut in half")
    faults.add_argument("--concurrency-limit", type=_non_negative(int), default=0,
                        help="requests in flight per company before 429 (Codat's is 10; 0 = off)")
    faults.add_argument("--rate-limit", dest="rate_limit_per_minute", type=_non_negative(int), default=0,
                        help="requests per minute before 429 with Retry-After (0 = off)")
    faults.add_argument("--daily-quota", type=_non_negative(int), default=0,
                        help="requests per day before 429 with Retry-After until midnight UTC (0 = off)")
    faults.add_argument("--ip-limit", dest="ip_limit_per_minute", type=_non_negative(int), default=1000,
                        help="Codat's IP protection: requests per minute per client IP before 429, and "
                             "sustained traffic over it blocks the IP (default 1000, as Codat; 0 = off)")
    faults.add_argument("--ip-block-after", type=_non_negative(int), default=200,
                        help="refused requests within a minute that block the IP (default 200)")
    faults.add_argument("--ip-block-seconds", type=_non_negative(float), default=120.0,
                        help="how long a blocked IP gets 403 or a closed connection (default 120)")
    faults.add_argument("--company-daily-quota", type=_non_negative(int), default=0,
                        help="requests per company per day before 429 until midnight UTC (Codat's is 1000; "
                             "0 = off)")
    size.add_argument("--one-time-links", action="store_true",
                      help="new links carry ?otp=…, work once and expire a day after creation (Codat's "
                           "opt-in since 2025)")
    faults.add_argument("--drift", action="store_true",
                        help="schema drift: unknown fields, numbers as strings, nulls where required")
    size.add_argument("--webhook-url",
                      help="POST Codat's read.completed event here each time a sync completes (the clock "
                           "advancing counts as syncs of the data types it changes)")
    size.add_argument("--webhook-secret",
                      help="sign each delivery as Svix does with this whsec_… secret (svix-id, svix-timestamp, "
                           "svix-signature); default: unsigned. A test secret: a real one belongs in the receiver's "
                           "CODAT_WEBHOOK_SECRET, never on a command line")
    size.add_argument("--webhook-retry-speedup", type=_positive_float, default=1.0,
                      help="retry a delivery not answered 2xx on Svix's schedule (5 s, 5 min, 30 min, 2 h, 5 h, "
                           "10 h, 10 h) divided by this (default 1)")
    faults.add_argument("--page-size-cap", type=_non_negative(int), default=0,
                        help="answer at most N records a page whatever pageSize asks (0 = off; Codat's "
                             "response schema says 2000)")
    faults.add_argument("--nulls-first", action="store_true",
                        help="orderBy lists null values first (SQL Server's order); default last")
    faults.add_argument("--restamp-every", type=_non_negative(int), default=0,
                        help="after every Nth commerce data page, give its first records a new, later "
                             "modifiedDate, as a Codat sync completing mid-read does (0 = off)")
    faults.add_argument("--restamp-count", type=_non_negative(int), default=1,
                        help="records re-stamped each time (default 1)")
    faults.add_argument("--retry-after", type=_non_negative(float), default=1.0,
                        help="Retry-After seconds sent with concurrency 429s (default 1)")
    return p


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not above 0")
    return value


@contextmanager
def sandbox_process(*flags: str) -> Iterator[tuple[str, str]]:
    """Run the sandbox in its own process (``flags`` as on the command line; a free port unless
    ``--port`` is given; in memory unless ``--data-dir`` is given); yields its (base_url, api_key)
    and stops it afterwards."""
    port = () if "--port" in flags else ("--port", "0")
    memory = () if {"--data-dir", "--in-memory"} & set(flags) else ("--in-memory",)
    process = subprocess.Popen([sys.executable, "-m", "tap_codat_commerce.sandbox", *port, *memory, *flags],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    try:
        lines: list[str] = []
        for line in process.stdout:  # the banner ends with its world= line (or the process ends)
            lines.append(line.strip())
            if line.startswith("world="):
                break
        banner = dict(line.split("=", 1) for line in lines if "=" in line)
        if "api_key" not in banner:
            raise RuntimeError(f"the sandbox did not start (flags {' '.join(flags)})")
        yield banner["base_url"], banner["api_key"]
    finally:
        process.terminate()
        code = process.wait(timeout=120)
        process.stdout.close()
    if code != 0:
        raise RuntimeError(f"the sandbox did not stop cleanly (exit {code})")


def main(argv: list[str] | None = None) -> int:
    args = vars(parser().parse_args(argv))
    host, port = args.pop("host"), args.pop("port")
    reset, in_memory = args.pop("reset"), args.pop("in_memory")
    data_dir = None if in_memory else str(Path(args.pop("data_dir")).resolve())
    args.pop("data_dir", None)
    if reset and data_dir:
        WorldStore(data_dir).reset()
    try:
        sandbox = Sandbox(Settings(**args, data_dir=data_dir), host, port)
    except OSError as exc:
        print(f"tap-codat-commerce-sandbox: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    except WorldStoreError as exc:
        print(f"tap-codat-commerce-sandbox: {exc}", file=sys.stderr)
        return 1
    except ValueError:  # only the webhook secret is parsed here; it is not echoed
        print("tap-codat-commerce-sandbox: --webhook-secret is not a Svix secret (whsec_ followed by base64)",
              file=sys.stderr)
        return 1
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    sandbox.start()
    print(f"Codat sandbox listening on {sandbox.base_url}", flush=True)
    print(f"base_url={sandbox.base_url}", flush=True)
    print(f"api_key={sandbox.api_key}", flush=True)
    store = sandbox.app.store
    if store is None:
        print("world=in memory (forgotten on stop)", flush=True)
    else:
        print(f"world={'resumed' if store.resumed else 'new'} (kept in {store.dir}; --reset starts over)", flush=True)
    stop.wait()
    sandbox.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
