"""Write the held-out-camera results (benchmarks/heldout_eval.py JSON) into a model's card.json as
``eval`` (sim-pixel, the Pixel-class camera) and ``eval_heldout`` (every camera), keeping the
file hashes.  ``python scripts/card_heldout.py MODEL_DIR RESULTS.json NAME``"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hil_af.model.card import write_card  # noqa: E402
from hil_af.model.inference import read_card  # noqa: E402


def main(argv: list[str]) -> int:
    model_dir, results, name = Path(argv[0]), json.loads(Path(argv[1]).read_text()), argv[2]
    card = read_card(model_dir)
    held = {}
    for cam, block in results.items():
        held[cam] = {k.split(":", 2)[-1] if k.startswith(f"pe2:{name}:") else k: v for k, v in block.items()
                     if k.startswith(f"pe2:{name}:") or not k.startswith("pe2:")}
    card["eval_heldout"] = {"protocol": "every RoI x every start slice of 9 test stacks per camera (benchmarks/heldout_eval.py); "
                                        "fine-tuned = hil-af train --init MODEL --stacks <8 calibration sweeps> --out DIR",
                            "cameras": held}
    card["eval"] = {"profile": "sim-pixel", "results": held.get("sim-pixel", {})}
    write_card(model_dir, card)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
