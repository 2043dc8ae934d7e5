#!/usr/bin/env bash
# Installs everything the tests need into .venv (Python 3.11) and runs the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -e '.[dev,train]'
exec .venv/bin/python -m pytest -q "$@"
