#!/usr/bin/env bash
# Regenerates the example sim calibrations in calibration/examples/<profile>/ from scratch:
# a flat field (white target), 8 lens sweeps over seeded card scenes, a per-position fit
# (3x4 cells, on flat-fielded frames), a global fit, and the ZNCC reference fit of method zncc2
# (plain ZNCC +-6 px, parabolic subpixel, per position).  ~1 min per profile on one core.
# ONLY=zncc refits just the ZNCC reference (the other files stay as they are).
set -euo pipefail
cd "$(dirname "$0")/.."
HIL=${HIL:-.venv/bin/hil-af}
for prof in sim-default sim-wide; do
  out=calibration/examples/$prof
  sweeps=data/calib-sweeps/$prof
  mkdir -p "$out"
  [ "${ONLY:-}" = zncc ] || $HIL calibrate flatfield "sim://?seed=3&profile=$prof" --out "$out/flat.npz" --clock sim
  $HIL calibrate capture "sim://?seed=7&profile=$prof" --out "$sweeps" --scenes 8 --clock sim --resume --no-progress
  if [ "${ONLY:-}" != zncc ]; then
    $HIL calibrate fit --stacks "$sweeps" --out "$out/cal.json" --flatfield "$out/flat.npz"
    $HIL calibrate fit --stacks "$sweeps" --out "$out/cal-global.json" --global --flatfield "$out/flat.npz"
  fi
  $HIL calibrate fit --stacks "$sweeps" --out "$out/cal-zncc.json" --method zncc --max-shift 6 --refine parabola
done
