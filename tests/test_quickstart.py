"""The quick start's main job, twice: a full run, then an incremental one (meltano run to JSONL)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def quickstart(home: Path, suffix: str) -> str:
    env = {**os.environ, "QUICKSTART_HOME": str(home), "QUICKSTART_STATE_SUFFIX": suffix}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "quickstart.py")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done.stdout


def loaded(output: str) -> dict[str, int]:
    table = output.rsplit("==> loaded into", 1)[1]
    return {m[1]: int(m[2].replace(",", "")) for m in re.finditer(r"^\s+(\w+)\s+([\d,]+)$", table, re.M)}


def test_quickstart_runs_full_then_incremental(tmp_path):
    suffix = f"test{uuid.uuid4().hex[:8]}"
    first = quickstart(tmp_path, suffix)
    assert "full first run" in first
    full = loaded(first)
    assert full["orders"] == 2000 and full["transactions"] == 2500 and len(full) == 14  # 13 streams + total
    assert len(list((tmp_path / "output").glob("orders-*.jsonl"))) == 1
    # every echoed command can be pasted: arguments with spaces are quoted
    assert "$ tap-codat-commerce-setup create-company --name 'Quickstart Shop' --platform 'Commerce Sandbox'" in first
    second = quickstart(tmp_path, suffix)
    assert "incremental run, from the last run's state" in second
    assert "setup: done by an earlier run" in second and "create-company" not in second  # not repeated
    assert (tmp_path / ".codat-sandbox" / "world.json").exists()  # the sandbox's world was kept between runs
    incremental = loaded(second)
    assert 0 < incremental["orders"] < full["orders"] / 10
    assert incremental["total"] < full["total"] / 10
    meltano = str(Path(sys.executable).parent / "meltano")
    subprocess.run([meltano, "state", "clear", "--force", f"dev:tap-codat-commerce-to-target-jsonl:{suffix}"],
                   cwd=ROOT, capture_output=True, check=False)
