"""The paper's protocol for the PE model alone, through onnxruntime (no torch).

For every stack, every RoI with gt and every start slice k of n:
``pe``  = step-1 prediction from the frame at k;
``pe2`` = step-2 prediction from the frame at the slice ``pe`` chose.
Scored against gt: fraction with error = 0, <= 1, <= 2, <= 4, MAE and RMSE (slices).
This is the model's own check (``hil-af eval`` runs the full
controller); usage: ``python -m hil_af.model.validate --stacks DIR [--model DIR] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

from .inference import PEPredictor


def score(err: np.ndarray) -> dict[str, float]:
    e = np.abs(np.asarray(err, dtype=np.float64))
    if e.size == 0:
        return {"exact": float("nan"), "le1": float("nan"), "le2": float("nan"), "le4": float("nan"),
                "mae": float("nan"), "rmse": float("nan"), "samples": 0}
    return {"exact": float((e == 0).mean()), "le1": float((e <= 1).mean()), "le2": float((e <= 2).mean()),
            "le4": float((e <= 4).mean()), "mae": float(e.mean()), "rmse": float(np.sqrt((e * e).mean())),
            "samples": int(e.size)}


def protocol(stacks: list[Path], model_dir: Path | None = None, threads: int = 1) -> dict[str, Any]:
    """Run pe / pe2 from every start slice of every RoI with gt; returns per-method scores."""
    from ..stacks import load_stack

    p1 = PEPredictor(model_dir, step=1, threads=threads)
    p2 = PEPredictor(model_dir, step=2, threads=threads)
    e1, e2, n_rois = [], [], 0
    for path in stacks:
        st = load_stack(path)
        keep = np.flatnonzero(np.asarray(st.gt_index) >= 0)
        if len(keep) == 0:
            continue
        rois = np.asarray(st.rois)[keep]
        gt = np.asarray(st.gt_index, dtype=np.int64)[keep]
        n_rois += len(keep)
        frames = [st.frame(k) for k in range(st.n)]
        first = np.stack([p1.predict(frames[k], rois, k, st.n).index for k in range(st.n)])  # [n, P]
        second = np.empty_like(first)
        for j in np.unique(first):
            mask = first == j
            pred = p2.predict(frames[int(j)], rois, int(j), st.n).index  # [P]
            second[mask] = np.broadcast_to(pred[None, :], first.shape)[mask]
        e1.append((first - gt[None, :]).ravel())
        e2.append((second - gt[None, :]).ravel())
    cat = (lambda xs: np.concatenate(xs) if xs else np.zeros(0))
    return {"stacks": len(stacks), "rois": n_rois, "results": {"pe": score(cat(e1)), "pe2": score(cat(e2))}}


def main(argv: list[str] | None = None) -> int:
    from .card import eval_table
    from .dataset import find_stacks

    ap = argparse.ArgumentParser(prog="python -m hil_af.model.validate", description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", required=True)
    ap.add_argument("--model", default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", default=None, metavar="PATH")
    a = ap.parse_args(argv)
    res = protocol(find_stacks(a.stacks), Path(a.model) if a.model else None, a.threads)
    print(eval_table(res["results"]))
    if a.json:
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
