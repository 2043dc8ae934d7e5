#!/usr/bin/env bash
# The real-capture ranking stage on a shipped model (README "Real captures", docs/model.md):
#   1. the Xin et al. (ICCV 2021) Pixel 4 release -> frame files (hil-af import-xin; the release is the
#      public repository cmu-ci-lab/dual_pixel_defocus_estimation_deblurring, folder DP_data_pixel_4;
#      the captures are the dataset's: they stay outside the repo, in $FRAMES);
#   2. hil-af train --init MODEL --epochs 0 --rank-scenes: step 1 tuned on scenes 005-017 minus the
#      validation scenes 009/011/016 (scenes 001-004 are the test captures: never trained or selected on),
#      then the paper's step 2 (T = 0.5) from it on the domain-random stacks (the fine-tuning recipe);
#   3. the real-capture figure (benchmarks/realdp_ranking.py) on the test scenes.
# Usage: scripts/realrank.sh DP_DATA_PIXEL_4 OUT [MODEL=models] [SEED=0]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SRC=$1; OUT=$2; MODEL=${3:-models}; SEED=${4:-0}
FRAMES=${FRAMES:-data/xin}
STACKS=${STACKS:-data/dr/train}   # scripts/make_domain_data.sh (N_TRAIN=32 is what the shipped run used)
"$PY" -m hil_af.cli import-xin "$SRC" --out "$FRAMES"
"$PY" -m hil_af.cli train --init "$MODEL" --stacks "$STACKS" --epochs 0 --rank-scenes "$FRAMES" --seed "$SEED" \
  --out "$OUT" --threads "${THREADS:-2}"
HIL_AF_REALDP=$FRAMES "$PY" benchmarks/realdp_ranking.py --model "$OUT" --out "$OUT/realdp-ranking.png"
