# Sourced by quickstart.sh and test.sh: create .venv if missing and install into it.
# Usage: ensure_venv PIP_ARGS...
ensure_venv() {
    local python="${PYTHON:-python3}"
    if [ ! -x .venv/bin/python ]; then
        echo "==> creating .venv"
        "$python" -m venv .venv
    fi
    echo "==> installing $*"
    .venv/bin/python -m pip install --quiet --upgrade pip
    .venv/bin/python -m pip install --quiet "$@"
}
