#!/usr/bin/env bash
# Regenerates the example sim calibrations in calibration/examples/<profile>/ from scratch:
# a flat field (white target), 8 lens sweeps over seeded card scenes, a per-position fit
# (3x4 cells, on flat-fielded frames) and a global fit.  ~1 min per profile on one core.
set -euo pipefail
cd "$(dirname "$0")/.."
HIL=${HIL:-.venv/bin/hil-af}
for prof in sim-default sim-wide; do
  out=calibration/examples/$prof
  sweeps=data/calib-sweeps/$prof
  mkdir -p "$out"
  $HIL calibrate flatfield "sim://?seed=3&profile=$prof" --out "$out/flat.npz" --clock sim
  $HIL calibrate capture "sim://?seed=7&profile=$prof" --out "$sweeps" --scenes 8 --clock sim --resume --no-progress
  $HIL calibrate fit --stacks "$sweeps" --out "$out/cal.json" --flatfield "$out/flat.npz"
  $HIL calibrate fit --stacks "$sweeps" --out "$out/cal-global.json" --global --flatfield "$out/flat.npz"
done
