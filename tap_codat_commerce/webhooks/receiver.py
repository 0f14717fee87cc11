"""The webhook receiver: Codat's signed ``read.completed`` deliveries, appended once to the events file.

Run it as ``tap-codat-commerce-setup receive --host H --port P --events-file F`` with the consumer's
signing secret (``whsec_…``) in ``CODAT_WEBHOOK_SECRET``. It serves POSTs at ``/`` and at any other
path (so the consumer's URL may be ``https://host/codat/read-completed``) on uvicorn, and answers:

=====  ============================================================================================
200    ``{"written": true}``: a new event, appended and fsynced before this answer;
       ``{"duplicate": true}``: that ``svix-id`` was written before (Svix retried): nothing written;
       ``{"ignored": "<type>"}``: a signed event of a type the tap does not consume (logged once per
       type): nothing written, and Svix stops retrying it.
400    not a JSON object, or a ``read.completed`` event the tap could not read: nothing written.
401    signature headers missing, signature wrong (another secret, a changed body) or timestamp
       more than 5 minutes off (a replay): nothing written.
405    not a POST.   413  body over ``--max-body-bytes`` (default 1 MiB).
503    the events file could not be written: Svix retries later.
=====  ============================================================================================

Verification is Svix's own (``svix.webhooks.Webhook(secret).verify(raw_body, headers)``), over the
raw body bytes as received. The secret is never logged, echoed or accepted on the command line.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from svix.webhooks import Webhook, WebhookVerificationError

from ..codat.operations import EventsFileError, changed_triples
from .queue import EventQueue, EventQueueError

SECRET_VARIABLE = "CODAT_WEBHOOK_SECRET"
CONSUMED_EVENTS = ("read.completed", "read.completed.initial")
MAX_BODY_BYTES = 1 << 20
PRUNE_EVERY_S = 3600.0
logger = logging.getLogger("tap_codat_commerce.receiver")


class ReceiverError(Exception):
    """The receiver cannot start; the message is the one line the user sees (never the secret)."""


def check_secret(secret: str | None) -> str:
    """The secret if it is a Svix signing secret (``whsec_`` + base64 of at least 16 bytes), else
    ReceiverError saying what is wrong (without echoing it)."""
    if not secret or not secret.strip():
        raise ReceiverError(f"{SECRET_VARIABLE} is not set: set it to the consumer's signing secret (whsec_…), "
                            "shown in the Codat Portal under Settings > Webhooks > Events > the consumer")
    secret = secret.strip()
    encoded = secret.removeprefix("whsec_")
    try:
        key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not secret.startswith("whsec_") or len(key) < 16:
        raise ReceiverError(f"{SECRET_VARIABLE} (not shown) is not a Svix signing secret: it must be whsec_ "
                            "followed by base64, as the Codat Portal shows it")
    return secret


def _answer(status: int, **body: Any) -> JSONResponse:
    return JSONResponse(body, status_code=status)


def create_app(queue: EventQueue, secret: str, *, max_body_bytes: int = MAX_BODY_BYTES) -> Starlette:
    """The ASGI app (see the module's text for what it answers). ``secret``: a checked ``whsec_…``."""
    webhook = Webhook(check_secret(secret))
    ignored_types: set[str] = set()
    last_prune = [time.monotonic()]

    async def receive(request: Request) -> JSONResponse:
        if request.method != "POST":
            return _answer(405, error="POST Codat's webhook deliveries here")
        declared = request.headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > max_body_bytes):
            return _answer(413, error=f"body over {max_body_bytes} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > max_body_bytes:
                return _answer(413, error=f"body over {max_body_bytes} bytes")
        body = bytes(raw)
        message_id = request.headers.get("svix-id", "")
        try:
            webhook.verify(body, dict(request.headers))
        except (WebhookVerificationError, ValueError):  # ValueError: bad base64, no comma, not UTF-8
            logger.warning("refused a delivery (svix-id %r): signature or timestamp not valid",
                           message_id[:80])
            return _answer(401, error="signature or timestamp not valid")
        try:
            event = json.loads(body)
        except ValueError:
            return _answer(400, error="the body is not JSON")
        if not isinstance(event, dict) or not isinstance(event.get("eventType"), str):
            return _answer(400, error="the body is not a Codat event (no eventType)")
        kind = event["eventType"]
        if kind not in CONSUMED_EVENTS:
            if kind not in ignored_types:
                ignored_types.add(kind)
                logger.info("ignoring %r events (only %s are read); unsubscribe the consumer from them",
                            kind[:80], " and ".join(CONSUMED_EVENTS))
            return _answer(200, ignored=kind)
        line = json.dumps(event, separators=(",", ":"), ensure_ascii=False)
        try:
            changed_triples([line], "event")  # the tap must be able to read every line written
        except EventsFileError:
            return _answer(400, error=f"not a Codat {kind} event (payload.referenceCompany.id, dataTypes)")
        try:
            written = await run_in_threadpool(queue.append_once, message_id, line.encode())
            if time.monotonic() - last_prune[0] > PRUNE_EVERY_S:
                last_prune[0] = time.monotonic()
                await run_in_threadpool(queue.forget_old)
        except OSError as exc:
            logger.error("could not write to %s: %s; answering 503 so that Svix retries", queue.path,
                         exc.strerror or exc)
            return _answer(503, error="the event could not be stored; retry later")
        if written:
            logger.info("written %s (svix-id %s, company %s)", kind, message_id[:80],
                        str(event["payload"]["referenceCompany"]["id"])[:80])
            return _answer(200, written=True)
        return _answer(200, duplicate=True)

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return Starlette(routes=[Route("/", receive, methods=methods), Route("/{path:path}", receive, methods=methods)])


def serve(host: str, port: int, events_file: str, *, environ: Mapping[str, str] | None = None,
          max_body_bytes: int = MAX_BODY_BYTES) -> int:
    """Serve until SIGTERM/SIGINT; prints ``receiver listening on http://H:P/ (events_file F)`` once
    ready. Raises ReceiverError (one line) for a bad secret, events file or address."""
    secret = check_secret((os.environ if environ is None else environ).get(SECRET_VARIABLE))
    if max_body_bytes < 1024:
        raise ReceiverError(f"--max-body-bytes {max_body_bytes}: at least 1024 (a read.completed event is ~1 KB)")
    try:
        queue = EventQueue(events_file)
        queue.forget_old()
    except EventQueueError as exc:
        raise ReceiverError(str(exc)) from None
    except OSError as exc:
        raise ReceiverError(f"events_file {events_file}: {exc.strerror or exc}") from None
    app = create_app(queue, secret, max_body_bytes=max_body_bytes)
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)  # connections wait in the backlog until the server runs: ready once printed
    except (OSError, OverflowError) as exc:  # OverflowError: a port outside 0-65535
        raise ReceiverError(f"cannot listen on {host}:{port}: {getattr(exc, 'strerror', None) or exc}") from None
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s")
    bound = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"receiver listening on http://{shown}:{bound}/ (events_file {queue.path})", flush=True)
    # log_config=None: uvicorn's own lines (and its access log) go to the root logger, on stderr;
    # stdout holds only the banner.
    config = uvicorn.Config(app, log_config=None, log_level="info", access_log=True, timeout_graceful_shutdown=10)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


@contextlib.contextmanager
def receiver_process(events_file: str | os.PathLike[str], secret: str, *flags: str, port: int = 0,
                     log: str | os.PathLike[str] | None = None) -> Iterator[str]:
    """Run ``tap-codat-commerce-setup receive`` in its own process (tests, benchmarks): yields its
    URL once it listens, and stops it (SIGTERM) afterwards. Its stderr goes to ``log`` (appended)."""
    environ = {**os.environ, SECRET_VARIABLE: secret}
    with contextlib.ExitStack() as stack:
        err = stack.enter_context(open(log, "ab")) if log else subprocess.DEVNULL
        process = subprocess.Popen(
            [sys.executable, "-m", "tap_codat_commerce.onboarding", "receive", "--host", "127.0.0.1", "--port",
             str(port), "--events-file", str(events_file), *flags], stdout=subprocess.PIPE, stderr=err, env=environ,
            text=True)
        assert process.stdout is not None
        try:
            banner = process.stdout.readline()
            if not banner.startswith("receiver listening on "):
                raise RuntimeError(f"the receiver did not start (exit {process.wait(timeout=30)})")
            yield banner.split()[3]
        finally:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            process.stdout.close()
