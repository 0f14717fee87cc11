"""The wheel carries the schemas: built, installed into a fresh venv, discovery lists every stream."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STREAMS = {"companies", "connections", "company_info", "customers", "disputes", "locations", "orders", "payments",
           "payment_methods", "products", "product_categories", "tax_components", "transactions"}


def test_wheel_installs_and_discovers_every_stream(tmp_path):
    subprocess.run([sys.executable, "-m", "build", "--wheel", "--outdir", str(tmp_path / "dist"), str(ROOT)],
                   check=True, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("tap_codat_commerce-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"tap_codat_commerce/schemas/{s}.json" for s in STREAMS} <= set(names)
    assert not any(n.startswith("tests/") for n in names)

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(wheel)],
                   check=True, capture_output=True, timeout=600)
    discovered = subprocess.run([str(venv / "bin" / "tap-codat-commerce"), "--discover"], cwd=tmp_path,
                                capture_output=True, text=True, check=True, timeout=120)
    catalog = {s["tap_stream_id"]: s for s in json.loads(discovered.stdout)["streams"]}
    assert set(catalog) == STREAMS
    for name, stream in catalog.items():
        assert len(stream["schema"]["properties"]) >= 3, name
    assert catalog["orders"]["schema"]["properties"]["modifiedDate"]["format"] == "date-time"
    for script in ("tap-codat-commerce-setup", "tap-codat-commerce-sandbox"):
        assert subprocess.run([str(venv / "bin" / script), "--help"], capture_output=True, check=False,
                              timeout=60).returncode == 0
