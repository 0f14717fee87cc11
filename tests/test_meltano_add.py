"""A data engineer's own Meltano project: a fresh one in a temporary folder adds the extractor from
hub/extractors/tap-codat-commerce.yml (installed from this working tree), sets settings with
``meltano config set``, runs it into target-jsonl against the sandbox, shows the tap's one-line
error at ``--log-level=warning``, and runs the setup command with the key set through Meltano."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.conftest import ROOT, Api

BIN = Path(sys.executable).parent
TARGET_JSONL = {"name": "target-jsonl", "namespace": "target_jsonl", "pip_url": "target-jsonl==0.1.4",
                "executable": "target-jsonl",
                "settings": [{"name": "destination_path", "kind": "string"},
                             {"name": "do_timestamp_file", "kind": "boolean"}]}


def meltano_in(project: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``meltano ARGS`` in ``project``, with no TAP_CODAT_COMMERCE_* variable of this process: every
    setting comes from the project."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_CODAT_COMMERCE_", "MELTANO_"))}
    env["PATH"] = f"{BIN}{os.pathsep}{env['PATH']}"
    done = subprocess.run([str(BIN / "meltano"), *args], cwd=project, env=env, capture_output=True, text=True,
                          timeout=600, check=False)
    if check:
        assert done.returncode == 0, f"meltano {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.slow
def test_meltano_add_from_the_plugin_file_gives_a_working_extractor(start_sandbox, tmp_path):
    started = time.monotonic()
    sandbox = start_sandbox(companies=2, orders=25, accounting_every=0)
    ref = tmp_path / "tap-codat-commerce.yml"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "hub_definition.py"), "--pip-url", str(ROOT),
                    "--output", str(ref)], check=True, timeout=60)
    (tmp_path / "target-jsonl.yml").write_text(yaml.safe_dump(TARGET_JSONL))
    meltano_in(tmp_path, "init", "--no-usage-stats", "project")
    project = tmp_path / "project"

    meltano_in(project, "add", "extractor", "tap-codat-commerce", "--from-ref", str(ref))
    meltano_in(project, "add", "loader", "target-jsonl", "--from-ref", str(tmp_path / "target-jsonl.yml"))
    setters = {"api_key": sandbox.api_key, "base_url": sandbox.base_url,
               "skip_unchanged": "false",      # a boolean (stored as a string before: the tap stopped)
               "check_data_status": "false",   # a boolean with a visible effect: no dataStatus request
               "page_size": "7",               # an integer with a visible effect: pageSize=7
               "reread_after_hours": "12.5"}   # a decimal: must reach the tap as a number
    for name, value in setters.items():
        done = meltano_in(project, "config", "set", "tap-codat-commerce", name, value)
        assert "nknown setting" not in done.stdout + done.stderr, name
    listed = meltano_in(project, "config", "list", "tap-codat-commerce")
    assert "nknown" not in listed.stdout and "custom" not in listed.stdout.lower(), listed.stdout
    for name in ("destination_path", "do_timestamp_file"):
        meltano_in(project, "config", "set", "target-jsonl", name, str(tmp_path / "out") if name == "destination_path"
                   else "false")
    (tmp_path / "out").mkdir()

    api = Api(sandbox)
    api.reset_requests()
    meltano_in(project, "--log-level=warning", "run", "tap-codat-commerce", "target-jsonl")
    orders = api.rows_per_stream()["orders"]
    assert orders > 7 and len((tmp_path / "out" / "orders.jsonl").read_text().splitlines()) == orders
    log = api.requests_log()["requests"]
    assert log and not any(r["path"].endswith("/dataStatus") for r in log)
    page_sizes = {str(r["params"]["pageSize"]) for r in log
                  if "/data/" in r["path"] and "pageSize" in (r["params"] or {})}
    assert page_sizes == {"7"}, page_sizes

    company = api.companies()[0]["id"]
    status = meltano_in(project, "invoke", "tap-codat-commerce:setup", "status", "--company", company)
    assert "commerce-orders" in status.stdout and "Linked" in status.stdout

    meltano_in(project, "config", "set", "tap-codat-commerce", "api_key", "wrong-key")
    failed = meltano_in(project, "--log-level=warning", "run", "tap-codat-commerce", "target-jsonl", check=False)
    assert failed.returncode != 0
    shown = failed.stdout + failed.stderr
    assert "Codat refused the API key (401" in shown, shown[-3000:]  # the tap's line, not only "Extractor failed"
    assert time.monotonic() - started < 180
