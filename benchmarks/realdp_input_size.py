"""Does the PE model rank the real Pixel 4 cells better when it reads more of each cell at once?

The shipped network is fully convolutional up to a global average pool (hil_af/model/nets.py), so
its torch weights (weights.npz, step 1) run on any input side S: here each 112 px cell is read
through the readout of hil_af/model/defocus.py with windows of S px (S >= 112: the whole cell in one
window, grown about its centre) instead of the ONNX model's 64 px.  Prints mean |Spearman| against
ground-truth defocus per S (S = 64 reproduces benchmarks/realdp_ranking.py).  Needs torch
([train]) and the captures (HIL_AF_REALDP).
``python benchmarks/realdp_input_size.py [--model models] [--sizes 48,56,64,72,80,96,112]``
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def torch_predictor(model_dir: str, size: int):
    """A PEPredictor whose logits come from the step-1 torch network run at ``size`` px."""
    import torch

    from hil_af.model.inference import PEPredictor
    from hil_af.model.nets import build
    from hil_af.model.train import WEIGHTS, load_weights

    class TorchAt(PEPredictor):
        def __init__(self) -> None:
            super().__init__(model_dir)
            self.net = build(self.card["arch"], self.n_slices)
            load_weights(self.net, Path(model_dir) / WEIGHTS, "step1")
            self.net.eval()
            self.encoding = dataclasses.replace(self.encoding, size=size)

        def run(self, x: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return self.net(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

    return TorchAt()


def main(argv: list[str] | None = None) -> int:
    import torch

    from realdp_ranking import REALDP, model_ranking

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models"))
    ap.add_argument("--sizes", default="48,56,64,72,80,96,112")
    a = ap.parse_args(argv)
    if not (REALDP / "001.npz").exists():
        raise SystemExit(f"needs the real captures at {REALDP} (HIL_AF_REALDP)")
    torch.set_num_threads(1)
    for size in (int(s) for s in a.sizes.split(",")):
        r = model_ranking(torch_predictor(a.model, size))
        print(f"input {size} px: |Spearman| " + " / ".join(f"{v:.3f}" for v in r) + f", mean {np.mean(r):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
