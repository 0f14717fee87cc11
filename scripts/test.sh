#!/usr/bin/env bash
# The whole test suite, from a fresh clone: creates .venv, installs the project and its
# test tools, makes sure a PostgreSQL server is there, then runs pytest.
# Usage: bash scripts/test.sh [pytest args]      e.g. -m "not slow" (the fast subset)
#   $PYTHON picks the interpreter and $VENV the environment (default .venv), as .ci/run does per Python.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
ensure_venv -e ".[dev]"

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
exec "${VENV:-.venv}/bin/python" -m pytest "$@"
