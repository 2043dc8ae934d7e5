#!/usr/bin/env bash
# Installs hil-af into .venv and runs one autofocus cycle on the simulated rig.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3.11}
command -v "$PY" >/dev/null 2>&1 || PY=python3
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q -e .
exec .venv/bin/hil-af focus "${1:-sim://?seed=1}" --json
