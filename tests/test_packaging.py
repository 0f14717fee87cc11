"""Installable without this repository: the wheel and sdist build (``python -m build``), the wheel
carries the schemas and the LICENSE, installs into a fresh venv and syncs from the sandbox; the
version is set once (pyproject.toml) and the package claims the Pythons CI runs."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import Api

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
STREAMS = {"companies", "connections", "company_info", "customers", "disputes", "locations", "orders", "payments",
           "payment_methods", "products", "product_categories", "tax_components", "transactions"}


def claimed_pythons() -> list[str]:
    return [c.rsplit("::", 1)[1].strip() for c in PROJECT["classifiers"]
            if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)]


def test_the_version_is_set_once_and_the_changelog_names_it():
    assert "version" not in PROJECT.get("dynamic", [])
    released = re.findall(r"^## \[(\d+\.\d+\.\d+)\]", (ROOT / "CHANGELOG.md").read_text(), re.M)
    assert released and released[0] == PROJECT["version"]  # the newest release is the package's version
    assert not re.search(r"__version__\s*=", (ROOT / "tap_codat_commerce" / "__init__.py").read_text())


def test_ci_runs_the_oldest_and_the_newest_python_claimed():
    ci = (ROOT / ".ci" / "run").read_text()
    claimed = claimed_pythons()
    assert f"OLDEST={claimed[0]}" in ci and f"NEWEST={claimed[-1]}" in ci
    assert PROJECT["requires-python"] == f">={claimed[0]}"
    assert "-m build" in ci


@pytest.mark.slow
def test_wheel_and_sdist_build_and_the_wheel_installs_and_syncs(start_sandbox, tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("tap_codat_commerce-*.whl"))
    sdist = next((tmp_path / "dist").glob("tap_codat_commerce-*.tar.gz"))
    assert wheel.name.startswith(f"tap_codat_commerce-{PROJECT['version']}-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert {f"tap_codat_commerce/schemas/{s}.json" for s in STREAMS} <= set(names)
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)
    with tarfile.open(sdist) as archive:
        members = {m.split("/", 1)[1] for m in archive.getnames() if "/" in m}
    assert {"LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "schemas/orders.json",
            "hub/extractors/tap-codat-commerce.yml"} <= members

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                   check=True, capture_output=True, timeout=600)
    tap = str(venv / "bin" / "tap-codat-commerce")
    about = json.loads(subprocess.run([tap, "--about", "--format", "json"], cwd=tmp_path, capture_output=True,
                                      text=True, check=True, timeout=120).stdout)
    assert about["version"] == PROJECT["version"]
    assert about["supported_python_versions"] == claimed_pythons()
    discovered = subprocess.run([tap, "--discover"], cwd=tmp_path, capture_output=True, text=True, check=True,
                                timeout=120)
    catalog = {s["tap_stream_id"]: s for s in json.loads(discovered.stdout)["streams"]}
    assert set(catalog) == STREAMS
    assert catalog["orders"]["schema"]["properties"]["modifiedDate"]["format"] == "date-time"

    sandbox = start_sandbox(companies=1, orders=12, accounting_every=0)
    env = {"PATH": "/usr/bin:/bin", "TAP_CODAT_COMMERCE_API_KEY": sandbox.api_key,
           "TAP_CODAT_COMMERCE_BASE_URL": sandbox.base_url}
    synced = subprocess.run([tap], cwd=tmp_path, env=env, capture_output=True, text=True, check=False, timeout=120)
    assert synced.returncode == 0, synced.stderr[-2000:]
    orders = [m for m in map(json.loads, synced.stdout.splitlines())
              if m["type"] == "RECORD" and m["stream"] == "orders"]
    assert len(orders) == Api(sandbox).rows_per_stream()["orders"] > 0
    for script in ("tap-codat-commerce-setup", "tap-codat-commerce-sandbox"):
        assert subprocess.run([str(venv / "bin" / script), "--help"], capture_output=True, check=False,
                              timeout=60).returncode == 0
