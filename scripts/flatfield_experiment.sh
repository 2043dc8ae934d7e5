#!/usr/bin/env bash
# Does the flat field (SPC) help the PE model on the sim?  Trains the same small model twice on the same
# 40 dense sim-default stacks (3+1 epochs, 16k samples/epoch, seed 0): once on raw views, once with
# --flatfield calibration/examples/sim-default/flat.npz; then runs `hil-af eval --method pe2` on the eval
# stacks of scripts/eval_sim.sh, the flat-field model on each lens with that lens's own flat field.
# Needs data/pe/train-dense (scripts/make_models.sh) and data/eval-stacks (scripts/eval_sim.sh). ~10 min.
set -euo pipefail
cd "$(dirname "$0")/.."
HIL=${HIL:-.venv/bin/hil-af}
D=data/ffexp
mkdir -p $D/train
ls data/pe/train-dense | head -40 | while read -r f; do ln -sf "$PWD/data/pe/train-dense/$f" "$D/train/$f"; done
for v in plain flat; do
  extra=(); [ $v = flat ] && extra=(--flatfield calibration/examples/sim-default/flat.npz)
  $HIL train --stacks $D/train --out $D/m-$v --epochs 3 --epochs2 1 --samples-per-epoch 16000 --threads 2 --seed 0 "${extra[@]}"
done
for v in plain flat; do
  for prof in sim-default sim-wide; do
    ff=(); [ $v = flat ] && ff=(--flatfield calibration/examples/$prof/flat.npz)
    echo "== $v model on $prof"
    $HIL eval --stacks data/eval-stacks/$prof --model $D/m-$v --method pe2 "${ff[@]}" --no-progress --json $D/eval-$v-$prof.json
  done
done
