#!/usr/bin/env bash
# The README's evaluation tables: captures N seeded test stacks per sim profile (seeds 9000+,
# disjoint from training 0..999 and calibration 7/3) and runs `hil-af eval` on every method.
# Usage: scripts/eval_sim.sh [N_STACKS=6]   -> data/eval/<profile>.json and printed tables
set -euo pipefail
cd "$(dirname "$0")/.."
HIL=${HIL:-.venv/bin/hil-af}
N=${1:-6}
for prof in sim-default sim-wide; do
  dir=data/eval-stacks/$prof
  mkdir -p "$dir"
  for i in $(seq 0 $((N - 1))); do
    f="$dir/stack_$i.npz"
    [ -f "$f" ] || $HIL capture-stack "sim://?seed=$((9000 + i))&profile=$prof" --out "$f" --clock sim --no-progress >/dev/null
  done
  cal=calibration/examples/$prof
  methods="--method cdaf --method pdaf --method pdaf-global --method pdaf-loop --method zncc2"
  [ -f models/step1.onnx ] && methods="--method pe --method pe2 $methods --method hybrid"
  echo "== $prof ($N stacks)"
  [ "${STACKS_ONLY:-0}" = 1 ] && continue
  $HIL eval --stacks "$dir" $methods --calibration "$cal/cal.json" --global-calibration "$cal/cal-global.json" \
      --zncc-calibration "$cal/cal-zncc.json" \
      --json "data/eval/$prof.json" --no-progress
done
