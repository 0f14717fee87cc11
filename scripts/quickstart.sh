#!/usr/bin/env bash
# The main job on the embedded sandbox, from a fresh clone:
#   creates .venv, installs the tap and Meltano, starts the sandbox, runs the setup workflow
#   (sync settings, company, link, wait), runs `meltano run tap-codat-commerce target-jsonl`,
#   prints what was loaded per stream and stops the sandbox. Run it again for an incremental run.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
fi
echo "==> installing tap-codat-commerce and Meltano"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e . "meltano==4.4.1"
exec .venv/bin/python scripts/quickstart.py "$@"
