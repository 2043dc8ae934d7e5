#!/usr/bin/env bash
# Second stage of the shipped models' pretraining: continues a scripts/pretrain.sh model on the same
# domain-random stacks (same seed, so the same 10 validation stacks) for 12 step-1 and 4 step-2 epochs
# of 24000 samples at a lower peak learning rate, early-stopped on the held-out two-step MAE
# (patience 4; the init model is kept if it is not beaten):
#   scripts/continue_pretrain.sh IN_DIR OUT_DIR      e.g. data/models/dr-s0 data/models/dr-s0-c
# ~42 min on the shared 2-core box (2546 s for the shipped model, 1575 s step 1 + 665 s step 2).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
IN=$1; OUT=$2; shift 2
DATA=${DATA:-data/dr}
"$PY" -m hil_af.cli train --init "$IN" --stacks "$DATA/train" --out "$OUT" --epochs 12 --epochs2 4 \
  --samples-per-epoch 24000 --batch 256 --lr 3e-3 --lr2 1e-3 --val-frac 0.0625 --patience 4 \
  --threads "${THREADS:-2}" --seed 0 "$@"
