#!/usr/bin/env bash
# Renders the focal stacks of the domain-randomised pretraining and of the held-out cameras
# (hil_af.model.simdata; every stack is one lens sweep of 49 slices on a virtual clock):
#   data/dr/train      domain-random cameras, seeds 0..N_TRAIN-1 (one camera per seed), dense 64 px RoIs
#   data/dr/<P>-sweeps 8 calibration sweeps per held-out camera P (seeds 500..507), 3x4 RoIs
#   data/dr/<P>-test   N_TEST test stacks per held-out camera P (seeds 9000..), 3x4 RoIs
# Held-out cameras (never in pretraining): sim-pixel, sim-catseye, sim-wide; plus
# domain-random-test: unseen domain-random cameras (seeds 100000..).
# All scenes are "natural" (cards with occluders) except sim-wide's own default.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
N_TRAIN=${N_TRAIN:-160}
N_TEST=${N_TEST:-9}
DATA=${DATA:-data/dr}
"$PY" -m hil_af.model.simdata --out "$DATA/train" --profile domain-random --scene natural --seeds "0:$N_TRAIN" --grid dense
for P in sim-pixel sim-catseye sim-wide; do
  "$PY" -m hil_af.model.simdata --out "$DATA/$P-sweeps" --profile "$P" --scene natural --seeds 500:508 --grid 3x4
  "$PY" -m hil_af.model.simdata --out "$DATA/$P-test" --profile "$P" --scene natural --seeds "9000:$((9000 + N_TEST))" --grid 3x4
done
"$PY" -m hil_af.model.simdata --out "$DATA/domain-random-test" --profile domain-random --scene natural \
  --seeds "100000:$((100000 + N_TEST))" --grid 3x4
