"""Experiment driver for hil_af.model.realrank: tune a shipped model's step 1 to rank real Pixel 4
cells (Xin et al. scenes 005-017, imported with `hil-af import-xin`), select on held-out real scenes,
report the test scenes 001-004 once.

``python benchmarks/realrank_experiment.py --frames DIR [--model models] [--sim data/dr/train]
[--train 005,...] [--val 009,011,016] [--steps 300] [--lr 1e-4] ... [--out DIR]``
Prints the per-scene |Spearman| before and after on train, val and test scenes.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TEST = "001,002,003,004"


def main(argv: list[str] | None = None) -> int:
    import torch

    from hil_af.model import realrank as rr
    from hil_af.model.dataset import find_stacks, load_patchset
    from hil_af.model.encoding import EncodingConfig
    from hil_af.model.inference import read_card
    from hil_af.model.nets import build
    from hil_af.model.train import TrainConfig, load_weights

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", required=True)
    ap.add_argument("--model", default=str(ROOT / "models"))
    ap.add_argument("--sim", default=str(ROOT / "data/dr/train"))
    ap.add_argument("--sim-stacks", type=int, default=16)
    ap.add_argument("--train", default=TrainConfig.rank_train)  # hil-af train's --rank-train / --rank-val defaults
    ap.add_argument("--val", default=TrainConfig.rank_val)
    ap.add_argument("--test", default=TEST)
    ap.add_argument("--out", default=None, help="write weights npz + json log here")
    for f, v in vars(rr.RankConfig()).items():
        ap.add_argument("--" + f.replace("_", "-"), type=type(v) if not isinstance(v, bool) else int, default=v)
    a = ap.parse_args(argv)
    torch.set_num_threads(2)
    rc = rr.RankConfig(**{f: (bool(getattr(a, f)) if isinstance(v, bool) else getattr(a, f))
                          for f, v in vars(rr.RankConfig()).items()})
    card = read_card(Path(a.model))
    cfg, n = EncodingConfig.from_dict(card["encoding"]), int(card["n_slices"])
    model = build(card["arch"], n)
    load_weights(model, Path(a.model) / "weights.npz", "step1")
    sc = {k: rr.load_rank_scenes(a.frames, getattr(a, k).split(",")) for k in ("train", "val", "test")}
    for k, v in sc.items():
        print(k, [(s.name, len(s.rois)) for s in v])
    before = {k: rr.ranking(model, v, n, cfg) for k, v in sc.items()}
    print("before", {k: (round(float(np.mean(v)), 3), [round(x, 3) for x in v]) for k, v in before.items()})
    sim = None
    if rc.sim_weight > 0:
        ps = load_patchset(find_stacks(a.sim)[: a.sim_stacks], cfg, n_bins=n)
        pairs = ps.all_pairs()

        def sim(rng):
            return ps.batch(pairs[rng.integers(0, len(pairs), rc.sim_batch)], rng, 0.1, 8)
    res = rr.rank_finetune(model, sc["train"], sc["val"], n, cfg, rc, sim)
    after = {k: rr.ranking(model, v, n, cfg) for k, v in sc.items()}
    print("after", {k: (round(float(np.mean(v)), 3), [round(x, 3) for x in v]) for k, v in after.items()})
    if a.out:
        from hil_af.model.train import save_weights

        out = Path(a.out)
        out.mkdir(parents=True, exist_ok=True)
        save_weights(out / "step1_rank.npz", {"step1": model})
        (out / "realrank.json").write_text(json.dumps({"config": vars(rc), "before": before, "after": after, **res}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
