"""Why the PE model ranks real Pixel 4 cells poorly: its response to a KNOWN disparity on real texture.

Takes the left view of a real capture (HIL_AF_REALDP, scene 001 by default), makes a synthetic
dual-pixel pair from it -- the same image shifted by -s/2 and +s/2 px (Fourier phase ramp, an
optional Gaussian blur of ``--blur`` px sigma on both) -- and asks the step-1 model, lens at the
middle slice, for the relative defocus of the first 12 usable cells (tests/test_realdp.py's cells).
Prints, per shift: the mean and the spread (std across cells) of the estimate in slices, and the
mean confidence.  A camera-agnostic estimator would grow with |s|; the spread at a fixed shift is
how much the estimate depends on the texture, not on the disparity.
``python benchmarks/realdp_probe.py [--model models] [--scene 001] [--blur 0]``
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
SHIFTS = (-8, -4, -2, -1, 0, 1, 2, 4, 8)


def shifted_pair(img: np.ndarray, s: float, blur: float) -> tuple[np.ndarray, np.ndarray]:
    """(left, right): ``img`` shifted by -s/2 and +s/2 px in x (right minus left = s), blurred by a
    Gaussian of ``blur`` px sigma."""
    H, W = img.shape
    fy = np.fft.fftfreq(H)[:, None]
    fx = np.fft.rfftfreq(W)[None, :]
    F = np.fft.rfft2(img) * np.exp(-2.0 * (np.pi * blur) ** 2 * (fx ** 2 + fy ** 2))

    def sh(d: float) -> np.ndarray:
        return np.fft.irfft2(F * np.exp(-2j * np.pi * fx * d), s=img.shape)

    return sh(-s / 2.0), sh(s / 2.0)


def main(argv: list[str] | None = None) -> int:
    from hil_af.frames import DualPixelFrame
    from hil_af.model.inference import PEPredictor
    from hil_af.sim.realcheck import graded_cells
    from hil_af.stacks import load_frame

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models"))
    ap.add_argument("--scene", default="001")
    ap.add_argument("--blur", type=float, default=0.0, help="Gaussian blur sigma on both views, px")
    a = ap.parse_args(argv)
    if not (REALDP / f"{a.scene}.npz").exists():
        raise SystemExit(f"needs the real captures at {REALDP} (HIL_AF_REALDP)")
    fr = load_frame(REALDP / f"{a.scene}.npz")
    gt = np.load(REALDP / f"{a.scene}_gt.npz", allow_pickle=False)["defocus"].astype(np.float64)
    rois, _, _, keep = graded_cells(fr, gt, 112, 16, 0.5)
    cells = rois[keep][:12]
    pred = PEPredictor(a.model)
    k, n = (pred.n_slices - 1) // 2, pred.n_slices
    print(f"model {a.model}, scene {a.scene}, {len(cells)} cells, lens at slice {k} of {n}, blur {a.blur} px")
    for s in SHIFTS:
        left, right = shifted_pair(fr.left.astype(np.float64), s, a.blur)
        f2 = DualPixelFrame(left, right, sensor_hw=fr.sensor_hw, origin=fr.origin, white_level=fr.white_level)
        p = pred.predict(f2, cells, k, n)
        d = p.expected - k
        print(f"shift {s:+3d} px: defocus {np.mean(d):+6.1f} slices (std over cells {np.std(d):4.1f}), "
              f"confidence {np.mean(p.confidence):.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
