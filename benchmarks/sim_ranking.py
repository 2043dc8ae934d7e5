"""Control for the real-capture ranking (benchmarks/realdp_ranking.py): the same single-frame readout
on HELD-OUT SIM frames, where the sim's ground truth is exact.

For each test stack of a held-out camera (DATA/<CAM>-test from scripts/make_domain_data.sh) and each
4th lens slice k, the frames whose RoIs all lie on one side of focus with at least 3 slices between
the nearest and the farthest (as in the real scenes: everything behind the focal plane) are ranked
twice: by the model's single-frame defocus (hil_af.model.defocus.relative_defocus, lens slice NOT
given: read as for the real captures; ``--lens-known`` gives it) and by the classical xcorr disparity (+-16 px); each
against the true |gt - k| in slices.  Prints the mean |Spearman| over those frames per camera.
``python benchmarks/sim_ranking.py [--model models] [--camera sim-pixel ...] [--data data/dr]``
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def camera(pred, files: list[Path], stride: int = 4, lens_known: bool = False) -> tuple[int, float, float]:
    """(frames used, mean |Spearman| of the model, of the classical disparity) over ``files``;
    ``lens_known``: the model is told the lens slice k (the real captures do not say it)."""
    from hil_af.model.defocus import relative_defocus
    from hil_af.pdaf import estimate_rois
    from hil_af.sim.realcheck import spearman
    from hil_af.stacks import load_stack

    rm, rc = [], []
    for f in files:
        st = load_stack(f)
        gt = np.asarray(st.gt_index, dtype=np.float64)
        for k in range(0, st.n, stride):
            true = gt - k
            if np.ptp(true) < 3 or np.sign(true).min() != np.sign(true).max() or np.any(true == 0):
                continue
            fr = st.frame(k)
            d, _ = relative_defocus(pred, fr, st.rois, k=k if lens_known else None)
            e = estimate_rois(fr.left, fr.right, st.rois, method="xcorr", max_shift=16, white_level=fr.white_level)
            rm.append(abs(spearman(d, np.abs(true))))
            rc.append(abs(spearman(e.disparity_px, np.abs(true))))
    return len(rm), float(np.mean(rm)) if rm else float("nan"), float(np.mean(rc)) if rc else float("nan")


def main(argv: list[str] | None = None) -> int:
    from hil_af.model.inference import PEPredictor
    from hil_af.stacks import stack_files

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models"))
    ap.add_argument("--data", default="data/dr")
    ap.add_argument("--camera", action="append")
    ap.add_argument("--lens-known", action="store_true", help="tell the model the lens slice (a sweep would)")
    a = ap.parse_args(argv)
    pred = PEPredictor(a.model)
    for cam in a.camera or ["sim-pixel", "sim-catseye", "sim-wide"]:
        files = stack_files(Path(a.data) / f"{cam}-test")
        n, m, c = camera(pred, files, lens_known=a.lens_known)
        print(f"{cam}: {n} one-sided frames, mean |Spearman| model {m:.3f}, classical {c:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
