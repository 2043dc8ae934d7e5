"""Controlled experiment: continue training the shipped PE model on a folder of stacks for a FIXED
number of epochs (no held-out split, so no early stop and no keep-the-init guard: every run is
changed by the same amount of training), then rank the real Pixel 4 cells with it
(benchmarks/realdp_ranking.py's cells and readout).  Used to compare training families (e.g. the
natural vs natural-soft scenes, several seeds each: scripts/soft_texture_experiment.sh).
Needs torch ([train]) and the captures (HIL_AF_REALDP).
``python benchmarks/finetune_realdp.py --stacks DIR --out MODEL_DIR [--seed 0] [--init models]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    from realdp_ranking import REALDP, model_ranking

    from hil_af.model import train as trainmod
    from hil_af.model.inference import PEPredictor

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--init", default=str(ROOT / "models"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args(argv)
    if not (REALDP / "001.npz").exists():
        raise SystemExit(f"needs the real captures at {REALDP} (HIL_AF_REALDP)")
    # all stacks train: no held-out split, hence no early stop and no keep-the-init guard
    trainmod.fine_tune_split = lambda ps, frac, seed: (ps, None, [])  # type: ignore[assignment]
    cfg = trainmod.TrainConfig(arch="mcunet-plain", epochs=3, epochs2=1, max_samples_per_epoch=24000, batch=256,
                               lr=2e-3, lr2=8e-4, seed=a.seed, threads=a.threads)
    trainmod.train(a.stacks, a.out, cfg, init=a.init)
    r = model_ranking(PEPredictor(a.out))
    print(f"{a.stacks} seed {a.seed}: real |Spearman| " + " / ".join(f"{v:.3f}" for v in r) + f", mean {np.mean(r):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
