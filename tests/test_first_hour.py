"""A data engineer's first hour (issue 14): the console scripts run as a user types them, against
the sandbox over real HTTP. Settings from files and the environment, one-line configuration errors,
--test, the setup command on connections nobody authorised yet, --help, and the log's volume."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tap_codat_commerce.settings import company_id_list
from tests.conftest import Api, run_cli, tap_config, write_json

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NOT_MINE = "00000000-0000-4000-8000-000000000000"


def clean_env(**extra: str) -> dict[str, str]:
    """The test's environment without any TAP_CODAT_COMMERCE_* a developer may have exported."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("TAP_CODAT_COMMERCE_")}, **extra}


def sandbox_env(sandbox, **extra: str) -> dict[str, str]:
    return clean_env(TAP_CODAT_COMMERCE_API_KEY=sandbox.api_key, TAP_CODAT_COMMERCE_BASE_URL=sandbox.base_url,
                     **extra)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line]


def setup(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "tap-codat-commerce-setup"), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


def tap(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "tap-codat-commerce"), *args], capture_output=True, text=True, env=env,
                          timeout=timeout, check=False)


# --- 1. the README's steps as written: the key in the environment, other settings in a file -----------
@pytest.mark.slow
def test_key_in_the_environment_and_a_config_file_work_together(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=2, orders=20)
    config = write_json(tmp_path, "config.json", {"page_size": 7})
    result = tap(["--config", config], sandbox_env(sandbox))
    assert result.returncode == 0, result.stderr[-2000:]
    orders = [m for m in map(json.loads, result.stdout.splitlines()) if m.get("stream") == "orders"
              and m["type"] == "RECORD"]
    assert len(orders) == 40
    pages = [r for r in Api(sandbox).requests_log()["requests"] if r["path"].endswith("/commerce-orders")]
    assert pages and all(r["params"]["pageSize"] == "7" for r in pages)  # the file's page_size was used too
    # no --config at all: everything from the environment
    assert tap([], sandbox_env(sandbox)).returncode == 0


@pytest.mark.slow
def test_the_file_wins_over_the_environment_unless_config_env_says_otherwise(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1, orders=5)
    config = write_json(tmp_path, "config.json", tap_config(sandbox, max_retries=1))
    env = clean_env(TAP_CODAT_COMMERCE_BASE_URL="http://127.0.0.1:9")
    assert tap(["--config", config], env).returncode == 0  # the file's base_url
    overridden = tap(["--config", config, "--config", "ENV"], env)
    assert overridden.returncode == 1 and "127.0.0.1:9" in overridden.stderr


def test_a_missing_key_says_where_settings_come_from(tmp_path):
    config = write_json(tmp_path, "config.json", {"base_url": "http://127.0.0.1:9"})
    for args in (["--config", config], []):
        result = tap(args, clean_env())
        assert result.returncode == 1
        [line] = error_lines(result.stderr)
        assert "api_key: not set" in line and "TAP_CODAT_COMMERCE_API_KEY" in line and "--config" in line
        assert "Traceback" not in result.stderr


# --- 2. every configuration mistake: one line naming the setting, exit 1, no traceback ----------------
@pytest.mark.parametrize(("args", "env", "named"), [
    (["--config", "{good}"], {"TAP_CODAT_COMMERCE_PAGE_SIZE": "abc"}, "page_size: TAP_CODAT_COMMERCE_PAGE_SIZE='abc'"),
    (["--config", "{good}"], {"TAP_CODAT_COMMERCE_MAX_RETRIES": "1.5"}, "max_retries"),
    (["--config", "{good}"], {"TAP_CODAT_COMMERCE_CHECK_DATA_STATUS": "maybe"}, "check_data_status"),
    (["--config", "{good}"], {"TAP_CODAT_COMMERCE_STREAM_MAPS": "{not json"}, "stream_maps"),
    (["--config", "nosuch.json"], {}, "--config nosuch.json: cannot read it"),
    (["--config", "{malformed}"], {}, "not valid JSON (line 2"),
    (["--config", "{array}"], {}, "must hold a JSON object"),
    (["--config", "{good}"], {"TAP_CODAT_COMMERCE_COMPANY_IDS": "not-a-uuid, " + NOT_MINE},
     "company_ids: 'not-a-uuid'"),
    (["--config", "{typed}"], {}, "refresh_timeout"),
    (["--config", "{good}", "--test"], {"TAP_CODAT_COMMERCE_PAGE_SIZE": "0"}, "page_size: 0"),
])
@pytest.mark.slow
def test_configuration_mistakes_are_one_line(tmp_path, args, env, named):
    files = {"good": {"api_key": "k", "base_url": "http://127.0.0.1:9", "max_retries": 1},
             "typed": {"api_key": "k", "base_url": "http://127.0.0.1:9", "refresh_timeout": "soon"},
             "array": [1, 2]}
    paths = {name: write_json(tmp_path, f"{name}.json", content) for name, content in files.items()}
    (tmp_path / "malformed.json").write_text('{"api_key": "k",\n "base_url" "x"}')
    paths["malformed"] = str(tmp_path / "malformed.json")
    result = tap([a.format(**paths) for a in args], clean_env(**env), timeout=60)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and "Config validation failed" not in result.stderr
    [line] = error_lines(result.stderr)
    assert named in line, result.stderr


def test_a_malformed_key_is_named_but_never_shown(tmp_path):
    config = write_json(tmp_path, "config.json", {"api_key": 987654321987, "base_url": "http://127.0.0.1:9"})
    result = tap(["--config", config], clean_env())
    assert result.returncode == 1
    [line] = error_lines(result.stderr)
    assert line.split("| ")[-1].startswith("api_key: ") and "987654321987" not in result.stderr


def test_about_and_discover_need_no_good_settings():
    env = clean_env(TAP_CODAT_COMMERCE_PAGE_SIZE="abc")
    about = tap(["--about", "--config", "nosuch.json"], env)
    assert about.returncode == 0 and "log_metrics" in about.stdout
    assert tap(["--discover"], env).returncode == 0


def test_company_ids_accept_an_array_or_ids_separated_by_commas_or_spaces(start_sandbox):
    sandbox = start_sandbox(companies=3, orders=5)
    ids = [c["id"] for c in Api(sandbox).companies()]
    assert company_id_list(f"{ids[0]},{ids[1]}") == ids[:2]
    assert company_id_list(f" {ids[0]}, {ids[1]} ") == ids[:2]
    assert company_id_list(f"{ids[0]} {ids[1]}") == ids[:2]
    assert company_id_list(json.dumps(ids[:2])) == ids[:2]
    assert company_id_list(ids[:2]) == ids[:2]
    result = tap([], sandbox_env(sandbox, TAP_CODAT_COMMERCE_COMPANY_IDS=f"{ids[0]}, {ids[2]}"))
    assert result.returncode == 0, result.stderr[-2000:]
    companies = {m["record"]["id"] for m in map(json.loads, result.stdout.splitlines())
                 if m["type"] == "RECORD" and m["stream"] == "companies"}
    assert companies == {ids[0], ids[2]}


@pytest.mark.slow
def test_meltano_invoke_passes_company_ids_with_commas_and_spaces_through(start_sandbox):
    sandbox = start_sandbox(companies=3, orders=5)
    ids = [c["id"] for c in Api(sandbox).companies()]
    env = sandbox_env(sandbox, TAP_CODAT_COMMERCE_COMPANY_IDS=f"{ids[0]}, {ids[1]}")
    meltano = [str(BIN / "meltano"), "--log-level=warning"]
    subprocess.run([*meltano, "install", "extractor", "tap-codat-commerce"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=600)
    done = subprocess.run([*meltano, "invoke", "tap-codat-commerce"], cwd=ROOT, capture_output=True, text=True,
                          env=env, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    companies = {m["record"]["id"] for m in map(json.loads, done.stdout.splitlines())
                 if m["type"] == "RECORD" and m["stream"] == "companies"}
    assert companies == set(ids[:2])


# --- 3. --test says what it tested, and passes or fails plainly -----------------------------------------
def test_connection_test_passes_saying_what_it_checked(start_sandbox):
    sandbox = start_sandbox(companies=2, orders=10)
    result = tap(["--test"], sandbox_env(sandbox))
    assert result.returncode == 0, result.stderr
    assert "unhandled error" not in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""  # nothing for a target
    assert "API key accepted" in result.stderr and "2 linked commerce" in result.stderr
    assert "orders (10)" in result.stderr and result.stderr.strip().endswith("Connection test passed")


@pytest.mark.parametrize(("case", "expected"), [
    ("wrong key", "Codat refused the API key (401"),
    ("unreachable", "reaching 127.0.0.1:9"),
    ("server error", "GET /companies failed after"),
])
@pytest.mark.slow
def test_connection_test_fails_with_one_line_and_exit_1(start_sandbox, case, expected):
    sandbox = start_sandbox(companies=1, orders=5)
    env = sandbox_env(sandbox, TAP_CODAT_COMMERCE_MAX_RETRIES="2")
    if case == "wrong key":
        env["TAP_CODAT_COMMERCE_API_KEY"] = "wrong"
    elif case == "unreachable":
        env["TAP_CODAT_COMMERCE_BASE_URL"] = "http://127.0.0.1:9"
    else:
        Api(sandbox).faults(script={"status": 500, "count": 100, "path": "/companies"})
    result = tap(["--test"], env, timeout=60)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    failures = error_lines(result.stderr)
    assert len(failures) == 2 and expected in failures[0] and failures[1].endswith("Connection test failed")


def test_connection_test_on_an_account_nobody_linked_yet_says_so(start_sandbox):
    sandbox = start_sandbox(companies=0)
    created = setup(["create-company", "--name", "Not Yet", "--platform", "Shopify"], sandbox_env(sandbox))
    assert created.returncode == 0, created.stderr
    result = tap(["--test"], sandbox_env(sandbox))
    assert result.returncode == 0
    assert "1 waiting for the business to open their link (PendingAuth)" in result.stderr
    assert "nothing to read yet" in result.stderr


# --- 4. the setup command and connections nobody authorised ----------------------------------------------
@pytest.mark.slow
def test_status_wait_and_refresh_on_a_connection_never_authorised(start_sandbox):
    sandbox = start_sandbox(companies=0, sync_delay=0.3)
    env = sandbox_env(sandbox)
    assert setup(["sync-settings"], env).returncode == 0
    created = setup(["create-company", "--name", "Corner Shop", "--platform", "Shopify"], env)
    assert "one-time links" in created.stdout and "?otp=" in created.stdout  # said where the link is printed
    onboarded = json.loads(setup(["create-company", "--name", "Corner Shop", "--platform", "Shopify", "--reuse",
                                  "--json"], env).stdout)
    company, link = onboarded["company_id"], onboarded["link_url"]

    status = setup(["status", "--company", company], env)
    assert status.returncode == 0
    assert "PendingAuth" in status.stdout and link in status.stdout and "one-time links" in status.stdout
    as_json = json.loads(setup(["status", "--company", company, "--json"], env).stdout)
    assert [c["status"] for c in as_json["connections"]] == ["PendingAuth"]
    assert as_json["connections"][0]["linkUrl"] == link

    for command in (["wait", "--company", company, "--timeout", "1800"], ["refresh", "--company", company],
                    ["refresh", "--company", company, "--data-type", "orders"]):
        started = time.monotonic()
        result = setup(command, env)
        assert time.monotonic() - started < 20  # at once, not after the timeout
        assert result.returncode == 1 and result.stdout == ""
        [line] = result.stderr.splitlines()
        assert "has not opened the link yet" in line and link in line
    assert Api(sandbox).get(f"/companies/{company}/data/history").json()["results"] == []  # nothing queued

    requests.get(link, timeout=10)  # the business authorises
    assert setup(["wait", "--company", company, "--interval", "0.1"], env).returncode == 0
    assert "Linked" in setup(["status", "--company", company], env).stdout

    Api(sandbox).patch(f"/companies/{company}/connections/{onboarded['connection_id']}",
                       json={"status": "Unlinked"})
    unlinked = setup(["status", "--company", company], env)
    assert "Unlinked" in unlinked.stdout and "old data readable" in unlinked.stdout
    refused = setup(["refresh", "--company", company], env)
    assert refused.returncode == 1 and "is Unlinked" in refused.stderr


@pytest.mark.slow
def test_wait_on_a_linked_company_with_nothing_queued_says_so(start_sandbox):
    from tap_codat_commerce.codat.http import CodatClient
    from tap_codat_commerce.codat.operations import wait_for_sync

    sandbox = start_sandbox(companies=0)  # a fresh client: commerce data types are not enabled yet
    env = sandbox_env(sandbox)
    onboarded = json.loads(setup(["create-company", "--name", "Unready", "--platform", "Shopify", "--json"],
                                 env).stdout)
    requests.get(onboarded["link_url"], timeout=10)  # linked, but nothing is fetched on first link
    started = time.monotonic()
    result = wait_for_sync(CodatClient(sandbox.base_url, sandbox.api_key), onboarded["company_id"], timeout=600,
                           interval=0.1, never_queued_grace=0.5)
    assert result.never_queued and not result.ok and time.monotonic() - started < 10
    assert len(result.not_queued) == 11
    waited = setup(["wait", "--company", onboarded["company_id"], "--timeout", "2", "--interval", "0.2"], env)
    assert waited.returncode == 1
    last = waited.stderr.splitlines()[-1]
    assert "was ever queued" in last and "sync-settings" in last and "refresh --company" in last


def test_one_time_links_work_once_expire_after_a_day_and_reuse_replaces_an_expired_one(start_sandbox):
    from datetime import UTC, datetime, timedelta

    from tap_codat_commerce.sandbox.world import ApiError

    sandbox = start_sandbox(companies=0, one_time_links=True)
    env = sandbox_env(sandbox)
    first = json.loads(setup(["create-company", "--name", "Once", "--platform", "Shopify", "--json"], env).stdout)
    assert "?otp=" in first["link_url"]
    without_code = first["link_url"].split("?", 1)[0]
    assert requests.get(without_code, timeout=10).status_code == 410
    assert requests.get(first["link_url"], timeout=10).status_code == 200
    assert requests.get(first["link_url"], timeout=10).status_code == 410  # used

    second = json.loads(setup(["create-company", "--name", "Later", "--platform", "Shopify", "--json"], env).stdout)
    world = sandbox.app.world
    connection = world.connection(second["company_id"], second["connection_id"])
    with pytest.raises(ApiError, match="expired"):
        world.open_link(connection, second["link_url"].split("otp=", 1)[1], now=datetime.now(UTC) + timedelta(days=2))
    with world.lock:
        connection.created = (datetime.now(UTC) - timedelta(days=2)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    again = json.loads(setup(["create-company", "--name", "Later", "--platform", "Shopify", "--reuse", "--json"],
                             env).stdout)
    assert again["company_id"] == second["company_id"] and again["connection_id"] != second["connection_id"]
    assert not again["reused_connection"] and "?otp=" in again["link_url"]  # a fresh link to send


# --- 5. --config anywhere, | head, refresh during a sync, --reuse twice -----------------------------------
def test_config_before_or_after_the_subcommand(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=1)
    config = write_json(tmp_path, "config.json", tap_config(sandbox))
    company = Api(sandbox).companies()[0]["id"]
    for args in (["--config", config, "status", "--company", company],
                 ["status", "--company", company, "--config", config]):
        result = setup(args, clean_env())
        assert result.returncode == 0, result.stderr
        assert "Linked" in result.stdout


def test_status_into_a_closed_pipe_prints_no_traceback(start_sandbox):
    sandbox = start_sandbox(companies=1)
    company = Api(sandbox).companies()[0]["id"]
    process = subprocess.Popen([str(BIN / "tap-codat-commerce-setup"), "status", "--company", company],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=sandbox_env(sandbox))
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # as `| head` does once it has its lines: every write now breaks the pipe
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=60) == 0
    assert stderr == ""


def test_the_tap_into_a_closed_pipe_stops_with_one_line(start_sandbox):
    sandbox = start_sandbox(companies=2, orders=300)
    process = subprocess.Popen([str(BIN / "tap-codat-commerce")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env=sandbox_env(sandbox))
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # the target died
    stderr = process.stderr.read().decode()
    process.stderr.close()
    assert process.wait(timeout=120) == 1
    assert "Traceback" not in stderr and "Exception ignored" not in stderr
    [line] = error_lines(stderr)
    assert "closed it before the end" in line


def test_refresh_while_a_sync_runs_says_to_wait_first(start_sandbox):
    sandbox = start_sandbox(companies=0, sync_delay=30)
    env = sandbox_env(sandbox)
    setup(["sync-settings"], env)
    onboarded = json.loads(setup(["create-company", "--name", "Busy", "--platform", "Shopify", "--json"], env).stdout)
    requests.get(onboarded["link_url"], timeout=10)  # the first sync starts, and takes 30 s
    result = setup(["refresh", "--company", onboarded["company_id"], "--data-type", "orders"], env)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert "commerce-orders is still syncing" in line and "tap-codat-commerce-setup wait --company" in line


def test_create_company_with_reuse_twice_adds_no_second_connection(start_sandbox):
    sandbox = start_sandbox(companies=0)
    env = sandbox_env(sandbox)
    runs = [json.loads(setup(["create-company", "--name", "Twice", "--platform", "Shopify", "--reuse", "--json"],
                             env).stdout) for _ in range(2)]
    assert runs[0]["connection_id"] == runs[1]["connection_id"] and runs[1]["reused_connection"]
    [company] = Api(sandbox).companies()
    assert len(company["dataConnections"]) == 1
    other = json.loads(setup(["create-company", "--name", "Twice", "--platform", "Square", "--reuse", "--json"],
                             env).stdout)
    assert other["company_id"] == runs[0]["company_id"] and not other["reused_connection"]  # another platform


# --- 6. the host in connection errors; --help -----------------------------------------------------------
@pytest.mark.slow
def test_connection_errors_name_the_host(tmp_path):
    config = write_json(tmp_path, "down.json", {"api_key": "k", "base_url": "http://127.0.0.1:9", "max_retries": 2})
    for result in (tap(["--config", config], clean_env()), setup(["--config", config, "sync-settings"], clean_env())):
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert "reaching 127.0.0.1:9" in result.stderr.splitlines()[-1]


def test_help_names_the_environment_the_setup_command_and_the_sandbox():
    result = run_cli(["--help"])
    assert result.returncode == 0
    for text in ("--config ENV", "TAP_CODAT_COMMERCE_", "tap-codat-commerce-setup", "tap-codat-commerce-sandbox",
                 "--test"):
        assert text in result.stdout, text


# --- 7. the log: quiet by default, the SDK's metrics on request -------------------------------------------
@pytest.mark.slow
def test_default_log_is_a_line_per_company_and_a_summary_per_stream(start_sandbox):
    sandbox = start_sandbox(companies=3, orders=200)
    assert setup(["create-company", "--name", "Not Yet", "--platform", "Stripe"], sandbox_env(sandbox)).returncode == 0
    result = tap([], sandbox_env(sandbox))
    assert result.returncode == 0
    lines = result.stderr.splitlines()
    assert not [line for line in lines if "METRIC" in line or "Beginning sync" in line or "Skipping" in line
                or ("not linked yet" in line and "Synced" not in line)]
    assert len([line for line in lines if "Company " in line and "/4: " in line]) == 4
    assert any(line.endswith("Synced orders: 600 records from 3 connections") for line in lines)
    assert any(line.endswith("Synced connections: 5 records from 4 companies; not linked yet (PendingAuth) on "
                             "1 connection") for line in lines)
    assert any("Synced tax_components" in line and "not supported by the platform" in line for line in lines)
    assert len([line for line in lines if "| Synced " in line]) == 13
    assert len(lines) < 25, "\n".join(lines)

    verbose = tap([], sandbox_env(sandbox, TAP_CODAT_COMMERCE_LOG_METRICS="true"))
    assert verbose.returncode == 0
    metrics = [line for line in verbose.stderr.splitlines() if "METRIC" in line]
    assert any('"metric":"record_count"' in line and '"stream":"orders"' in line for line in metrics)


# --- 8. the sandbox keeps its world across restarts; a new world never matches an old state ------------
def sandbox_run(data_dir: Path, *flags: str):
    from tap_codat_commerce.sandbox.cli import sandbox_process

    return sandbox_process("--companies", "2", "--orders", "50", "--sync-delay", "0", "--data-dir", str(data_dir),
                           *flags)


def tap_messages(base_url: str, key: str, state: dict | None, tmp_path: Path) -> tuple[list[dict], dict]:
    args = []
    if state is not None:
        args = ["--state", write_json(tmp_path, "state.json", state)]
    result = tap(args, clean_env(TAP_CODAT_COMMERCE_API_KEY=key, TAP_CODAT_COMMERCE_BASE_URL=base_url))
    assert result.returncode == 0, result.stderr[-2000:]
    messages = [json.loads(line) for line in result.stdout.splitlines()]
    records = [m["record"] for m in messages if m["type"] == "RECORD"]
    return records, [m for m in messages if m["type"] == "STATE"][-1]["value"]


@pytest.mark.slow
def test_the_sandbox_world_survives_a_restart_and_state_stays_consistent(tmp_path):
    data = tmp_path / "world"
    with sandbox_run(data) as (base_url, key):
        api_env = clean_env(TAP_CODAT_COMMERCE_API_KEY=key, TAP_CODAT_COMMERCE_BASE_URL=base_url)
        assert setup(["sync-settings"], api_env).returncode == 0
        onboarded = json.loads(setup(["create-company", "--name", "Kept", "--platform", "Square", "--json"],
                                     api_env).stdout)
        requests.get(onboarded["link_url"], timeout=10)
        requests.post(base_url + "/_sandbox/advance", json={"seconds": 86_400}, timeout=30).raise_for_status()
        truth = requests.get(base_url + "/_sandbox/truth", timeout=30).json()
        first, state = tap_messages(base_url, key, None, tmp_path)
    assert sum(1 for r in first if r.get("connectionId") == onboarded["connection_id"]) > 0

    with sandbox_run(data) as (base_url, key):  # a new process, another port: the same world
        assert requests.get(base_url + "/_sandbox/truth", timeout=30).json() == truth
        api_env = clean_env(TAP_CODAT_COMMERCE_API_KEY=key, TAP_CODAT_COMMERCE_BASE_URL=base_url)
        status = json.loads(setup(["status", "--company", onboarded["company_id"], "--json"], api_env).stdout)
        assert status["connections"][0]["status"] == "Linked"
        assert status["connections"][0]["linkUrl"].startswith(base_url)  # links follow the new port
        again, _ = tap_messages(base_url, key, state, tmp_path)
        commerce_again = [r for r in again if "connectionId" in r]
        assert len(commerce_again) < len(first) / 10  # nothing re-synced: unchanged data types are not read
        requests.post(base_url + "/_sandbox/advance", json={"seconds": 86_400}, timeout=30).raise_for_status()
        changed, _ = tap_messages(base_url, key, state, tmp_path)
        assert len(changed) > len(again)  # the day's changes are read: never a silent zero

    with sandbox_run(data, "--reset") as (base_url, key):  # a new world: new ids, so the old state matches nothing
        fresh_with_old_state, _ = tap_messages(base_url, key, state, tmp_path)
        fresh, _ = tap_messages(base_url, key, None, tmp_path)
        assert not {r["companyId"] for r in fresh if "companyId" in r} & set(truth)
        assert len(fresh_with_old_state) == len(fresh) > 0  # read whole, as a first run


def _b64(key: str) -> str:
    import base64

    return base64.b64encode(key.encode()).decode()


def test_a_kept_world_is_only_reopened_with_the_flags_it_was_made_with(tmp_path):
    data = tmp_path / "world"
    with sandbox_run(data):
        pass
    done = subprocess.run([str(BIN / "tap-codat-commerce-sandbox"), "--port", "0", "--data-dir", str(data),
                           "--orders", "99"], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    [line] = done.stderr.splitlines()
    assert "--orders 50 (asked: 99)" in line and "--reset" in line


# --- 9. README: the sandbox's flags, Meltano 4 syntax ------------------------------------------------------
def test_the_readme_lists_every_sandbox_flag():
    from tap_codat_commerce.sandbox.cli import parser as sandbox_parser

    docs = (ROOT / "docs" / "sandbox.md").read_text()  # the README links to it
    readme = (ROOT / "README.md").read_text() + "".join(p.read_text() for p in (ROOT / "docs").glob("*.md"))
    table = docs.split("| flag | default | what it does |", 1)[1].split("\n\n", 1)[0]
    flags = {flag for action in sandbox_parser()._actions for flag in action.option_strings
             if flag.startswith("--") and flag != "--help"}
    missing = sorted(flag for flag in flags if f"`{flag}`" not in table)
    assert not missing, f"docs/sandbox.md's flag table lacks {missing}"
    assert "meltano config tap-codat-commerce list" not in readme


# --- the README's steps for a real account, followed literally against the sandbox ------------------------
def readme_commands(section: str) -> list[str]:
    """The shell lines of the README section's ```bash blocks, comments dropped."""
    text = (ROOT / "README.md").read_text().split(f"## {section}", 1)[1].split("\n## ", 1)[0]
    commands = []
    for block in text.split("```bash")[1:]:
        for line in block.split("```", 1)[0].splitlines():
            command = line.split("  #", 1)[0].strip()
            if command:
                commands.append(command)
    return commands


@pytest.mark.slow
def test_the_readme_steps_work_as_written_against_the_sandbox(start_sandbox, tmp_path):
    sandbox = start_sandbox(companies=0, orders=40, sync_delay=0.5)
    commands = readme_commands("Use it with a real Codat account")
    assert commands[0] == "export TAP_CODAT_COMMERCE_API_KEY='<your key>'"
    env = clean_env(TAP_CODAT_COMMERCE_BASE_URL=sandbox.base_url, PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}")
    company = ""
    for written in commands:
        if written.startswith("meltano"):
            continue  # the prod environment is a real Codat account and a real warehouse
        command = written.replace("<your key>", sandbox.api_key).replace("<company id>", company)
        if command.startswith("export "):
            name, value = command.removeprefix("export ").split("=", 1)
            env[name] = value.strip("'")
            continue
        done = subprocess.run(["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=120, check=False)
        assert "Traceback" not in done.stderr, command
        if "create-company" in command:
            company = done.stdout.split()[1]
            link = next(line.split()[1] for line in done.stdout.splitlines() if line.startswith("linkUrl "))
            premature = subprocess.run(["bash", "-c", f"tap-codat-commerce-setup wait --company {company}"],
                                       env=env, capture_output=True, text=True, timeout=60, check=False)
            assert premature.returncode == 1 and "has not opened the link yet" in premature.stderr
            requests.get(link, timeout=10)  # the business opens the link
        assert done.returncode == 0, f"{command}: {done.stderr[-1500:]}"
    records = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    orders = [m for m in records if m["type"] == "RECORD" and m["stream"] == "orders"]
    assert len(orders) == 40  # no silent zero
