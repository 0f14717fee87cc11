"""The setup workflow as a user runs it, over real HTTP: settings → company → link → wait → sync."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys

import pytest
import requests

from tap_codat_commerce.codat.data_types import COMMERCE_DATA_TYPES
from tap_codat_commerce.codat.http import CodatClient
from tap_codat_commerce.codat.operations import data_status, wait_for_sync
from tap_codat_commerce.onboarding import SetupError, create_company, enable_commerce_sync, resolve_platform
from tests.conftest import STREAM_OF_DATA_TYPE, Api, run_tap, tap_config, write_json


def setup_cli(args: list[str], sandbox=None, *, env: dict[str, str] | None = None,
              timeout: float = 60) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, **(env or {})}
    if sandbox is not None:
        environment |= {"TAP_CODAT_COMMERCE_API_KEY": sandbox.api_key,
                        "TAP_CODAT_COMMERCE_BASE_URL": sandbox.base_url}
    return subprocess.run([sys.executable, "-m", "tap_codat_commerce.onboarding", *args], capture_output=True,
                          text=True, env=environment, timeout=timeout, check=False)


def linked_company(start_sandbox, name: str, platform: str, **settings):
    """A sandbox, a client, and a company whose commerce connection the business has just linked."""
    sandbox = start_sandbox(companies=0, **settings)
    client = CodatClient(sandbox.base_url, sandbox.api_key)
    enable_commerce_sync(client)
    onboarded = create_company(client, name, platform)
    requests.get(onboarded.link_url, timeout=10)
    return sandbox, client, onboarded


@pytest.mark.slow
def test_the_whole_workflow_as_a_user_runs_it(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=80, sync_delay=1.5)
    config = write_json(tmp_path, "config.json", tap_config(sandbox))

    dry = setup_cli(["--config", config, "sync-settings", "--dry-run"])
    assert dry.returncode == 0 and dry.stdout.count("would change commerce-") == 11
    assert not any(s["fetchOnFirstLink"] for s in Api(sandbox).get("/profile/syncSettings").json()["settings"]
                   if s["dataType"].startswith("commerce-"))
    applied = setup_cli(["--config", config, "sync-settings", "--schedule-hours", "12"])
    assert applied.returncode == 0 and applied.stdout.count("changed commerce-") == 11
    again = setup_cli(["--config", config, "sync-settings", "--schedule-hours", "12"])
    assert "nothing to change" in again.stdout

    created = setup_cli(["--config", config, "create-company", "--name", "Corner Shop", "--platform",
                         "Commerce Sandbox", "--json"])
    assert created.returncode == 0, created.stderr
    onboarded = json.loads(created.stdout)
    assert onboarded["platform"] == "Commerce Sandbox" and onboarded["link_url"].startswith(sandbox.base_url)

    before = setup_cli(["--config", config, "status", "--company", onboarded["company_id"], "--json"])
    assert {s["status"] for s in json.loads(before.stdout)["data_types"]} == {"NeverSynced"}
    assert [c["status"] for c in json.loads(before.stdout)["connections"]] == ["PendingAuth"]

    assert requests.get(onboarded["link_url"], timeout=10).status_code == 200  # the business authorises

    waited = setup_cli(["--config", config, "wait", "--company", onboarded["company_id"], "--interval", "0.2"])
    assert waited.returncode == 0, waited.stderr
    progress = waited.stderr.splitlines()
    assert progress and "waiting on" in progress[0] and progress[-1].startswith("11/11")  # plain lines, no tty

    status = json.loads(setup_cli(["--config", config, "status", "--company", onboarded["company_id"],
                                   "--json"]).stdout)["data_types"]
    assert all(s["status"] == "Complete" and s["readable"] for s in status)

    run = run_tap(tap_config(sandbox, company_ids=[onboarded["company_id"]]))
    truth = Api(sandbox).truth()[onboarded["company_id"]][onboarded["connection_id"]]
    assert set(truth) == set(COMMERCE_DATA_TYPES)
    for data_type, rows in truth.items():
        emitted = run.records[STREAM_OF_DATA_TYPE[data_type]]
        assert emitted, data_type
        if data_type != "commerce-companyInfo":
            assert sorted(r["id"] for r in emitted) == sorted(r["id"] for r in rows)


def test_platform_by_key_or_name_and_unknown_lists_the_commerce_platforms(start_sandbox):
    sandbox = start_sandbox(companies=0)
    client = CodatClient(sandbox.base_url, sandbox.api_key)
    assert resolve_platform(client, "ltpp")["name"] == "WooCommerce"
    assert resolve_platform(client, "woocommerce")["key"] == "ltpp"
    with pytest.raises(SetupError, match="unknown commerce platform 'Xero'") as error:
        resolve_platform(client, "Xero")  # an accounting platform is not a commerce one
    assert "Shopify (fztf)" in str(error.value) and "gbol" not in str(error.value)


def test_reuse_does_not_duplicate_a_company(start_sandbox):
    sandbox = start_sandbox(companies=0)
    client = CodatClient(sandbox.base_url, sandbox.api_key)
    first = create_company(client, "Twice Ltd", "Shopify")
    second = create_company(client, "Twice Ltd", "fztf", reuse=True)
    assert second.company_id == first.company_id and second.reused_company
    assert second.connection_id == first.connection_id and second.reused_connection  # same platform: same one
    third = create_company(client, "Twice Ltd", "Square", reuse=True)
    assert third.company_id == first.company_id and third.connection_id != first.connection_id
    assert [c["name"] for c in Api(sandbox).companies()] == ["Twice Ltd"]


def test_bad_names_and_platforms_create_nothing(start_sandbox):
    sandbox = start_sandbox(companies=0)
    bad_name = setup_cli(["create-company", "--name", "Acme (UK) #1", "--platform", "Shopify"], sandbox)
    assert bad_name.returncode == 1 and "characters Codat does not accept" in bad_name.stderr
    assert "#" in bad_name.stderr and "Traceback" not in bad_name.stderr
    bad_platform = setup_cli(["create-company", "--name", "Acme", "--platform", "Nope"], sandbox)
    assert bad_platform.returncode == 1 and "unknown commerce platform" in bad_platform.stderr
    assert Api(sandbox).companies() == []  # never a half-created company


def test_a_failed_connection_removes_the_company_it_created(start_sandbox):
    sandbox = start_sandbox(companies=0)
    Api(sandbox).faults(script={"status": 400, "count": 1, "path": "/connections",
                                "message": "Integration is disabled"})
    result = setup_cli(["create-company", "--name", "Half", "--platform", "Shopify"], sandbox)
    assert result.returncode == 1
    assert "Integration is disabled" in result.stderr and "was removed again" in result.stderr
    assert Api(sandbox).companies() == []


@pytest.mark.slow
def test_refresh_and_unknown_inputs(start_sandbox):
    sandbox = start_sandbox(companies=1)
    company = Api(sandbox).companies()[0]["id"]
    queued = setup_cli(["refresh", "--company", company, "--data-type", "commerce-info"], sandbox)
    assert queued.returncode == 0 and "commerce-companyInfo" in queued.stdout  # path mapped to the data type
    history = Api(sandbox).get(f"/companies/{company}/data/history").json()["results"]
    assert history[0]["dataType"] == "commerce-companyInfo"
    assert setup_cli(["refresh", "--company", company], sandbox).returncode == 0
    unknown_type = setup_cli(["refresh", "--company", company, "--data-type", "invoices"], sandbox)
    assert unknown_type.returncode == 1 and "unknown commerce data type" in unknown_type.stderr
    unknown_company = setup_cli(["status", "--company", "00000000-0000-4000-8000-000000000000"], sandbox)
    assert unknown_company.returncode == 1 and "no company with id" in unknown_company.stderr


@pytest.mark.slow
def test_wait_times_out_naming_what_is_still_syncing(start_sandbox):
    sandbox, _, onboarded = linked_company(start_sandbox, "Slowpoke", "Stripe", sync_delay=60)
    result = setup_cli(["wait", "--company", onboarded.company_id, "--timeout", "1", "--interval", "0.2"], sandbox)
    assert result.returncode == 1
    assert "timed out" in result.stderr and "commerce-payments" in result.stderr
    assert "commerce-orders" not in result.stderr.splitlines()[-1]  # Stripe has no orders: NotSupported is done


def test_missing_or_bad_key_and_network_down_are_one_line(start_sandbox, tmp_path):
    no_key = setup_cli(["status", "--company", "x"], env={"TAP_CODAT_COMMERCE_API_KEY": ""})
    assert no_key.returncode == 1 and "api_key" in no_key.stderr and len(no_key.stderr.splitlines()) == 1
    assert "meltano invoke tap-codat-commerce:setup" in no_key.stderr  # Meltano's settings reach it only so
    sandbox = start_sandbox(companies=1)
    wrong = setup_cli(["sync-settings"], env={"TAP_CODAT_COMMERCE_API_KEY": "wrong",
                                              "TAP_CODAT_COMMERCE_BASE_URL": sandbox.base_url})
    assert wrong.returncode == 1 and "refused the API key (401" in wrong.stderr
    config = write_json(tmp_path, "down.json", {"api_key": "k", "base_url": "http://127.0.0.1:9", "max_retries": 2})
    down = setup_cli(["--config", config, "sync-settings"])
    assert down.returncode == 1 and "failed after 2 tries" in down.stderr
    errors = [line for line in down.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in down.stderr  # retry notices, then one error line


def test_wait_for_sync_reports_progress_through_the_api(start_sandbox):
    _, client, onboarded = linked_company(start_sandbox, "Progressive", "Square", sync_delay=0.6)
    seen: list[set[str]] = []
    result = wait_for_sync(client, onboarded.company_id, timeout=10, interval=0.1,
                           on_progress=lambda statuses: seen.append({s.status for s in statuses}))
    assert result.ok and len(seen) > 2
    assert {"Complete", "NotSupported"} == {s.status for s in data_status(client, onboarded.company_id)}


def test_tap_skips_never_synced_types_without_asking(start_sandbox, caplog):
    sandbox = start_sandbox(companies=0, orders=30, sync_delay=0)
    api = Api(sandbox)
    client = CodatClient(sandbox.base_url, sandbox.api_key)
    profile = api.get("/profile/syncSettings").json()
    for setting in profile["settings"]:
        setting["fetchOnFirstLink"] = setting["dataType"] in ("commerce-orders", "commerce-payments")
    api.post("/profile/syncSettings", json=profile)
    onboarded = create_company(client, "Partial", "Shopify")
    requests.get(onboarded.link_url, timeout=10)
    api.reset_requests()
    with caplog.at_level(logging.WARNING):
        run = run_tap(tap_config(sandbox))
    asked = {r["path"].rsplit("/", 1)[-1] for r in api.requests_log()["requests"] if "/data/commerce-" in r["path"]}
    assert asked == {"commerce-orders", "commerce-payments"}  # no 409 round trips for the other nine
    assert len(run.records["orders"]) == 30
    skipped = [r.getMessage() for r in caplog.records if "never synced" in r.getMessage()]
    assert len(skipped) == 9 and all(onboarded.connection_id in m for m in skipped)


@pytest.mark.slow
def test_refresh_before_read_queues_and_waits(start_sandbox):
    sandbox = start_sandbox(companies=0, orders=30, sync_delay=0.5)
    api = Api(sandbox)
    client = CodatClient(sandbox.base_url, sandbox.api_key)
    onboarded = create_company(client, "Lazy", "Commerce Sandbox")
    requests.get(onboarded.link_url, timeout=10)  # nothing enabled yet: nothing synced
    assert run_tap(tap_config(sandbox)).records.get("orders") is None
    enable_commerce_sync(client)
    run = run_tap(tap_config(sandbox, refresh_before_read=True, refresh_timeout=20))
    assert len(run.records["orders"]) == 30 and len(run.records["company_info"]) == 1
    assert any(r["path"].endswith("/data/all") for r in api.requests_log()["requests"])


def test_progress_is_one_updating_line_on_a_terminal():
    import io

    from tap_codat_commerce.codat.data_types import DataTypeStatus
    from tap_codat_commerce.onboarding import Progress

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    progress = Progress(screen)
    progress([DataTypeStatus("commerce-orders", "Fetching", None, False),
              DataTypeStatus("commerce-payments", "Complete", "2026-01-01T00:00:00Z", True)])
    progress([DataTypeStatus("commerce-orders", "Complete", "2026-01-01T00:00:00Z", True),
              DataTypeStatus("commerce-payments", "Complete", "2026-01-01T00:00:00Z", True)])
    progress.finish()
    assert screen.getvalue() == ("\r\x1b[K1/2 data types done; waiting on orders Fetching"
                                 "\r\x1b[K2/2 data types done\n")
