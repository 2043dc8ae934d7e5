#!/usr/bin/env bash
# Does the px-per-slice range of the pretraining family decide how the PE model ranks the real
# Pixel 4 cells?  For each variant, a copy of calibration/rigs/domain-random.toml with another
# disparity_px_per_dioptre range (the shipped family: log-uniform 0.2..2 px/dioptre, 0.05..0.5 px
# per 1/4-dioptre slice), 80 dense stacks of the natural scene, a fine-tune from the shipped model
# (the recipe of scripts/soft_texture_experiment.sh), then benchmarks/realdp_ranking.py (needs
# HIL_AF_REALDP).  Output: benchmarks/results/disparity-range.log.  About 12 min per variant on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
LOG=benchmarks/results/disparity-range.log
mkdir -p data/profiles
: > "$LOG"
# variant name, px per dioptre lo, hi (x 0.25 for px per slice)
for v in "narrowdisp 0.08 0.8" "widedisp 0.8 4.0"; do
  set -- $v
  prof="data/profiles/domain-random-$1.toml"
  sed "s/^disparity_px_per_dioptre = .*/disparity_px_per_dioptre = { log = [$2, $3] }/" calibration/rigs/domain-random.toml > "$prof"
  OMP_NUM_THREADS=1 "$PY" -m hil_af.model.simdata --out "data/$1" --profile "$prof" --scene natural --seeds 0:40 --grid dense &
  OMP_NUM_THREADS=1 "$PY" -m hil_af.model.simdata --out "data/$1" --profile "$prof" --scene natural --seeds 40:80 --grid dense &
  wait
  "$PY" -m hil_af.cli train --init models --stacks "data/$1" --out "data/models/ft-$1" --epochs 3 --epochs2 1 \
    --samples-per-epoch 24000 --batch 256 --lr 2e-3 --val-frac 0.0625 --threads 2 --seed 0 --patience 3 \
    > "data/models/ft-$1.train.log" 2>&1
  {
    echo "## $1: disparity_px_per_dioptre log [$2, $3] ($(echo "$2 $3" | awk '{print $1/4 ".." $2/4}') px per slice)"
    echo "## fine-tune: $(tail -n 1 "data/models/ft-$1.train.log")"
    "$PY" benchmarks/realdp_ranking.py --model "data/models/ft-$1" --out "data/realdp-ranking-$1.png"
  } | tee -a "$LOG"
done
