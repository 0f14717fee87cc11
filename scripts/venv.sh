# Sourced by quickstart.sh and test.sh: create the virtual environment if missing and install into it.
# Usage: ensure_venv PIP_ARGS...   ($PYTHON: the interpreter, default python3; $VENV: the folder, default .venv)
ensure_venv() {
    local python="${PYTHON:-python3}" venv="${VENV:-.venv}"
    if [ ! -x "$venv/bin/python" ]; then
        echo "==> creating $venv ($("$python" --version))"
        "$python" -m venv "$venv"
    fi
    echo "==> installing $*"
    "$venv/bin/python" -m pip install --quiet --upgrade pip
    "$venv/bin/python" -m pip install --quiet "$@"
}
