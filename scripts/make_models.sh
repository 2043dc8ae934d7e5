#!/usr/bin/env bash
# Regenerates the shipped PE models (models/) from scratch on a CPU:
#   1. simulated focal stacks with the project's own simulator (hil_af.model.simdata):
#      training: sim-default profile, seeds 0..N_TRAIN-1, dense 64 px RoIs;
#      evaluation: sim-wide profile (a lens NOT seen in training), seeds 1000.., standard 3x4 RoIs;
#   2. hil-af train (step 1 + step 2, ONNX export, weights.npz, card.json);
#   3. the two-step protocol (python -m hil_af.model.validate) on the sim-wide stacks and on
#      sim-default stacks of unseen scenes (seeds 2000..), written into card.json / MODEL_CARD.md.
# ABLATION=1 also trains the same model with --no-roi-pe into models/ablation-no-roi-pe.
# Measured on the shared 2-core dev box: 26 min 47 s with ABLATION=1 (stacks already rendered; rendering
# them took another ~7 min); see docs/model.md for the breakdown.
# Stacks go to data/pe (gitignored).  Needs the [train] extra (torch).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
N_TRAIN=${N_TRAIN:-100}
N_EVAL=${N_EVAL:-20}
EPOCHS=${EPOCHS:-5}
EPOCHS2=${EPOCHS2:-2}
SAMPLES=${SAMPLES:-32000}
THREADS=${THREADS:-2}
OUT=${OUT:-models}
DATA=${DATA:-data/pe}
start=$(date +%s)
"$PY" -m hil_af.model.simdata --out "$DATA/train-dense" --profile sim-default --seeds "0:$N_TRAIN" --grid dense
"$PY" -m hil_af.model.simdata --out "$DATA/eval-sim-wide" --profile sim-wide --seeds "1000:$((1000 + N_EVAL))" --grid 3x4
"$PY" -m hil_af.model.simdata --out "$DATA/eval-sim-default" --profile sim-default --seeds "2000:$((2000 + N_EVAL))" --grid 3x4
train() {  # $1 = out dir, rest = extra flags
  local out=$1; shift
  "$PY" -m hil_af.cli train --stacks "$DATA/train-dense" --out "$out" --epochs "$EPOCHS" --epochs2 "$EPOCHS2" \
    --samples-per-epoch "$SAMPLES" --threads "$THREADS" --seed 0 "$@"
  "$PY" -m hil_af.model.report --model "$out" --eval-stacks "$DATA/eval-sim-wide" --profile sim-wide
  "$PY" -m hil_af.model.report --model "$out" --eval-stacks "$DATA/eval-sim-default" --profile sim-default \
    --section eval_same_profile
}
train "$OUT"
if [ "${ABLATION:-0}" = 1 ]; then
  train "$OUT/ablation-no-roi-pe" --no-roi-pe
  "$PY" -m hil_af.model.report --model "$OUT" --ablation "$OUT/ablation-no-roi-pe"
  # ship the ablation's ONNX files + card only (< 2 MB); its weights stay with the data
  mv "$OUT/ablation-no-roi-pe/weights.npz" "$DATA/ablation-no-roi-pe-weights.npz"
fi
echo "make_models.sh: done in $(( $(date +%s) - start )) s"
