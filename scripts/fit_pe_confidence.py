"""Fit (or refit) a trained model's pe / pe2 confidence floor on its own held-out stacks, as training
does (hil_af.model.recipe.confidence_thresholds), and write it into its card.json ``controller``.

For a model trained before the floor existed (the floor is then the held-out stacks' named in the
card's ``data.val_stacks``, looked up under STACKS_DIR):

    python scripts/fit_pe_confidence.py MODEL_DIR STACKS_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hil_af.model import recipe  # noqa: E402
from hil_af.model.card import write_card  # noqa: E402
from hil_af.model.dataset import find_stacks, load_patchset  # noqa: E402
from hil_af.model.encoding import EncodingConfig  # noqa: E402
from hil_af.model.nets import build  # noqa: E402
from hil_af.model.train import WEIGHTS, load_weights  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    model_dir, stacks_dir = Path(argv[0]), Path(argv[1])
    card = json.loads((model_dir / "card.json").read_text())
    names = set(card["data"]["val_stacks"])
    paths = [p for p in find_stacks(stacks_dir) if p.name in names]
    if len(paths) != len(names):
        print(f"found {len(paths)} of the card's {len(names)} held-out stacks under {stacks_dir}", file=sys.stderr)
        return 2
    ps = load_patchset(paths, EncodingConfig.from_dict(card["encoding"]), n_bins=int(card["n_slices"]))
    m1, m2 = build(card["arch"], ps.n), build(card["arch"], ps.n)
    load_weights(m1, model_dir / WEIGHTS, "step1")
    load_weights(m2, model_dir / WEIGHTS, "step2")
    pairs = ps.all_pairs()
    cap = int(card["data"].get("val_pairs") or len(pairs))
    if len(pairs) > cap:  # the same bound as training's max_val_pairs (a seeded subset)
        import numpy as np

        pairs = pairs[np.sort(np.random.default_rng(0).choice(len(pairs), cap, replace=False))]
    card["controller"] = recipe.confidence_thresholds(m1, m2, ps, pairs)
    write_card(model_dir, card)
    print(json.dumps(card["controller"]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
