#!/usr/bin/env bash
# The main job on the embedded sandbox, from a fresh clone:
#   creates .venv, installs the tap, Meltano and DuckDB, starts the sandbox, runs the setup
#   workflow (sync settings, company, link, wait), runs
#   `meltano run tap-codat-commerce target-duckdb dbt:build` into output/codat.duckdb, prints the
#   rows per table and a per-merchant summary from merchant_monthly, and stops the sandbox.
#   Run it again for an incremental run.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv -e . "meltano==4.4.1" "duckdb==1.2.2"
exec .venv/bin/python scripts/quickstart.py "$@"
