"""Figure for the README: how well the PE model's single-frame defocus and the classical disparity rank
the cells of the real Pixel 4 captures (Xin et al., ICCV 2021; HIL_AF_REALDP) by ground-truth defocus.

The cells, their filter and both estimates are those of tests/test_realdp.py: 112 px cells whose
ground truth is uniform (std <= 4), classical xcorr +-16 px with confidence >= 0.5; the model's
estimate is hil_af.model.defocus.relative_defocus (3 x 3 windows per cell; no lens slice: the side of
focus from the middle slice, the answer from the range end away from the focus).  Prints |Spearman| per scene and writes one scatter per scene and method.
``python benchmarks/realdp_ranking.py [--model models] [--out docs/img/realdp-ranking.png]``
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

REALDP = Path(os.environ.get("HIL_AF_REALDP") or ROOT.parent / "shared" / "realdp")  # as tests/_data.py
SCENES = ("001", "002", "003", "004")
CELL, MAX_SHIFT, MIN_CONF = 112, 16, 0.5  # as tests/test_realdp.py


def scene(s: str, pred) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(median gt per usable cell, classical disparity px, model defocus slices) of scene ``s``."""
    from hil_af.model.defocus import relative_defocus
    from hil_af.sim.realcheck import graded_cells
    from hil_af.stacks import load_frame

    fr = load_frame(REALDP / f"{s}.npz")
    gt = np.load(REALDP / f"{s}_gt.npz", allow_pickle=False)["defocus"].astype(np.float64)
    rois, res, g, keep = graded_cells(fr, gt, CELL, MAX_SHIFT, MIN_CONF)
    d, _ = relative_defocus(pred, fr, rois)
    return g[keep], res.disparity_px[keep], d[keep]


def model_ranking(pred) -> list[float]:
    """|Spearman| of the model's defocus against ground truth, one per scene (SCENES order)."""
    from hil_af.sim.realcheck import spearman

    out = []
    for s in SCENES:
        g, _, d = scene(s, pred)
        out.append(abs(spearman(d, g)))
    return out


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hil_af.model.inference import PEPredictor
    from hil_af.sim.realcheck import spearman

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models"))
    ap.add_argument("--out", default="docs/img/realdp-ranking.png")
    a = ap.parse_args(argv)
    if not (REALDP / "001.npz").exists():
        raise SystemExit(f"needs the real captures at {REALDP} (HIL_AF_REALDP)")
    pred = PEPredictor(a.model)
    fig, ax = plt.subplots(2, len(SCENES), figsize=(3.2 * len(SCENES), 6.0))
    for j, s in enumerate(SCENES):
        g, disp, d = scene(s, pred)
        rc, rm = abs(spearman(disp, g)), abs(spearman(d, g))
        print(f"scene {s}: {len(g)} cells, |Spearman| classical {rc:.3f}, model {rm:.3f}")
        ax[0, j].scatter(g, disp, s=9, c="tab:blue")
        ax[0, j].set_title(f"{s}: classical |rho| {rc:.2f}", fontsize=9)
        ax[1, j].scatter(g, d, s=9, c="tab:red")
        ax[1, j].set_title(f"{s}: PE model |rho| {rm:.2f}", fontsize=9)
        ax[1, j].set_xlabel("ground-truth defocus (rank scale)")
    ax[0, 0].set_ylabel("disparity (px), xcorr +-16")
    ax[1, 0].set_ylabel("model defocus (slices)")
    fig.suptitle("Real Pixel 4 cells: single-frame estimates vs ground-truth defocus", fontsize=10)
    fig.tight_layout()
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out, dpi=90)
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
