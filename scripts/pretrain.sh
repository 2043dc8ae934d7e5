#!/usr/bin/env bash
# Pretrains one PE model on the domain-randomised stacks of scripts/make_domain_data.sh.
#   scripts/pretrain.sh OUT_DIR SEED [extra hil-af train flags, e.g. --no-roi-pe or --arch mcunet-plain]
# The recipe of the shipped models (docs/model.md): 3 step-1 epochs of 24000 samples, 2 step-2 epochs,
# batch 256, 10 of the 160 stacks held out for validation / best-epoch selection.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=$1; SEED=$2; shift 2
DATA=${DATA:-data/dr}
"$PY" -m hil_af.cli train --stacks "$DATA/train" --out "$OUT" --epochs "${EPOCHS:-3}" --epochs2 "${EPOCHS2:-2}" \
  --samples-per-epoch "${SAMPLES:-24000}" --val-frac 0.0625 --threads "${THREADS:-2}" --seed "$SEED" "$@"
