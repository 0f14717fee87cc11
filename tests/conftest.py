"""Shared fixtures: sandboxes on free loopback ports, an HTTP helper, and tap runs."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from tap_codat_commerce.codat.http import auth_header
from tap_codat_commerce.sandbox import Sandbox, Settings
from tap_codat_commerce.tap import TapCodatCommerce

# Stream name ↔ Codat data type, as the tap declares them.
STREAM_OF_DATA_TYPE = {
    "commerce-companyInfo": "company_info",
    "commerce-customers": "customers",
    "commerce-disputes": "disputes",
    "commerce-locations": "locations",
    "commerce-orders": "orders",
    "commerce-paymentMethods": "payment_methods",
    "commerce-payments": "payments",
    "commerce-productCategories": "product_categories",
    "commerce-products": "products",
    "commerce-taxComponents": "tax_components",
    "commerce-transactions": "transactions",
}


class Api:
    """A thin authenticated HTTP helper for one sandbox (tests only)."""

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox
        self.base = sandbox.base_url
        self.session = requests.Session()
        self.session.headers["Authorization"] = auth_header(sandbox.api_key)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.get(self.base + path, timeout=30, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.post(self.base + path, timeout=30, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.patch(self.base + path, timeout=30, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> requests.Response:
        return self.session.delete(self.base + path, timeout=30, **kwargs)

    def companies(self) -> list[dict[str, Any]]:
        return self.get("/companies", params={"pageSize": 5000}).json()["results"]

    def commerce_connections(self) -> list[tuple[str, dict[str, Any]]]:
        return [(c["id"], k) for c in self.companies() for k in c["dataConnections"]
                if k["sourceType"] == "Commerce"]

    def advance(self, **body: Any) -> dict[str, Any]:
        response = requests.post(self.base + "/_sandbox/advance", json=body, timeout=60)
        response.raise_for_status()
        return response.json()

    def truth(self) -> dict[str, Any]:
        return requests.get(self.base + "/_sandbox/truth", timeout=60).json()

    def rows_per_stream(self) -> dict[str, int]:
        """How many records each commerce stream should hold: the sandbox's truth, counted."""
        counts = dict.fromkeys(STREAM_OF_DATA_TYPE.values(), 0)
        for connections in self.truth().values():
            for data_types in connections.values():
                for data_type, rows in data_types.items():
                    counts[STREAM_OF_DATA_TYPE[data_type]] += len(rows)
        return counts

    def faults(self, **body: Any) -> dict[str, Any]:
        response = requests.post(self.base + "/_sandbox/faults", json=body, timeout=10)
        response.raise_for_status()
        return response.json()

    def set_records(self, company_id: str, connection_id: str, data_type: str, records: list[dict[str, Any]],
                    *, ordered: bool = True) -> None:
        """Serve exactly ``records`` for one data type of one connection (see LiteralCollection)."""
        response = requests.post(self.base + "/_sandbox/records", timeout=10, json={
            "companyId": company_id, "connectionId": connection_id, "dataType": data_type,
            "records": records, "ordered": ordered})
        response.raise_for_status()

    def set_records_text(self, company_id: str, connection_id: str, data_type: str, records_json: str) -> None:
        """Like :meth:`set_records`, with the records as JSON text: exact number literals
        (``1234567890123456.78``) and escapes (``"\\ud83d"``) reach the sandbox as written."""
        body = (f'{{"companyId": "{company_id}", "connectionId": "{connection_id}", "dataType": "{data_type}", '
                f'"ordered": true, "records": {records_json}}}')
        response = requests.post(self.base + "/_sandbox/records", timeout=10, data=body.encode(),
                                 headers={"Content-Type": "application/json"})
        response.raise_for_status()

    def wait_for_syncs(self, timeout: float = 30) -> None:
        """Until no commerce data type of any company is Queued, Fetching or Mapping (fails after
        ``timeout`` seconds): a wait on the condition, never a sleep that may be too short."""
        deadline = time.monotonic() + timeout
        while True:
            running = [(c["id"], t) for c in self.companies()
                       for t, s in self.get(f"/companies/{c['id']}/dataStatus").json().items()
                       if isinstance(s, dict) and s.get("currentStatus") in ("Queued", "Fetching", "Mapping")]
            if not running:
                return
            assert time.monotonic() < deadline, f"syncs still running after {timeout} s: {running[:3]}"
            time.sleep(0.05)

    def requests_log(self) -> dict[str, Any]:
        return requests.get(self.base + "/_sandbox/requests", timeout=10).json()

    def reset_requests(self) -> None:
        requests.delete(self.base + "/_sandbox/requests", timeout=10)


@pytest.fixture(scope="session")
def codat_spec() -> Path:
    """Codat's OpenAPI specs, read from the shared reference beside the repository (never copied in).

    CI always has them; a clone without them skips the few tests that read the spec.
    """
    from oas_convert import SPEC_DIR

    if not (SPEC_DIR / "Codat-Commerce.yaml").exists():
        message = f"Codat's OpenAPI spec not found in {SPEC_DIR} (set CODAT_OAS_DIR)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return SPEC_DIR


@pytest.fixture
def start_sandbox() -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes in-process on free ports; all are stopped at teardown."""
    started: list[Sandbox] = []

    def start(**settings: Any) -> Sandbox:
        settings.setdefault("sync_delay", 0)
        sandbox = Sandbox(Settings(**settings)).start()
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


ROOT = Path(__file__).resolve().parents[1]
MELTANO = str(Path(sys.executable).parent / "meltano")


def meltano(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``meltano --log-level=warning ARGS`` in the project; fails the test with its output if it fails."""
    done = subprocess.run([MELTANO, "--log-level=warning", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def meltano_env(sandbox: Sandbox, **variables: str) -> dict[str, str]:
    """The environment for Meltano commands on ``sandbox``, with these further variables."""
    return {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
            "TAP_CODAT_COMMERCE_API_KEY": sandbox.api_key, "TAP_CODAT_COMMERCE_BASE_URL": sandbox.base_url,
            **variables}


def tap_config(sandbox: Sandbox, **extra: Any) -> dict[str, Any]:
    return {"api_key": sandbox.api_key, "base_url": sandbox.base_url, "max_retry_after": 30,
            "max_requests_per_minute": 0, "quota_reserve": 0, **extra}


@dataclass
class TapRun:
    messages: list[dict[str, Any]]
    records: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    states: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for message in self.messages:
            if message["type"] == "RECORD":
                self.records[message["stream"]].append(message["record"])
            elif message["type"] == "STATE":
                self.states.append(message["value"])

    @property
    def final_state(self) -> dict[str, Any]:
        return self.states[-1]

    def ids_by_connection(self, stream: str) -> dict[tuple[str, str], list[str | None]]:
        found: dict[tuple[str, str], list[str | None]] = defaultdict(list)
        for record in self.records.get(stream, []):
            found[(record["companyId"], record["connectionId"])].append(record.get("id"))
        return found

    def counts(self) -> Counter[str]:
        return Counter({stream: len(rows) for stream, rows in self.records.items()})


def parse_messages(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def run_tap(config: dict[str, Any], state: dict[str, Any] | None = None,
            catalog: dict[str, Any] | None = None) -> TapRun:
    """Run a full sync in-process and collect its Singer messages."""
    buffer = io.StringIO()
    tap = TapCodatCommerce(config=config, state=copy.deepcopy(state),  # the SDK updates state in place
                           catalog=copy.deepcopy(catalog))
    with contextlib.redirect_stdout(buffer):
        tap.sync_all()
    return TapRun(parse_messages(buffer.getvalue()))


@dataclass
class CliRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[dict[str, Any]]:
        return parse_messages(self.stdout)


def run_cli(args: list[str], *, timeout: float = 120, env: dict[str, str] | None = None) -> CliRun:
    """Run the tap's console entry point in a subprocess (real exit codes and stderr)."""
    done = subprocess.run([sys.executable, "-m", "tap_codat_commerce", *args], capture_output=True,
                          text=True, timeout=timeout, env=env, check=False)
    return CliRun(done.returncode, done.stdout, done.stderr)


def write_json(tmp_path: Any, name: str, data: Any) -> str:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return str(path)
