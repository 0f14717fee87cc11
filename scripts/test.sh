#!/usr/bin/env bash
# The whole test suite, from a fresh clone: creates .venv, installs the project and its
# test tools, makes sure a PostgreSQL 15 server binary is there, then runs pytest.
# Usage: bash scripts/test.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "==> creating .venv"
    "$PYTHON" -m venv .venv
fi
echo "==> installing tap-codat-commerce with its test tools"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[dev]"

# The warehouse test runs a private PostgreSQL server (initdb + pg_ctl); install it if missing.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null; then
        echo "==> installing PostgreSQL from Debian's packages"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
    else
        echo "==> PostgreSQL server binaries not found: the warehouse test will be skipped" >&2
    fi
fi

echo "==> running the tests"
exec .venv/bin/python -m pytest "$@"
