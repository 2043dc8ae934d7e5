"""Statistics that put the simulator next to real dual-pixel captures (docs/sim.md, "Real optics").

- ``lr_ratio_columns``: the left/right brightness ratio of a white target per column band
  (per-view vignetting), and ``fit_lr_gain``: the ``view_gain_imbalance`` and ``vignette_lr``
  that reproduce it (least squares on log ratios over the field x of each band).
- ``disparity_peak_cells``: per RoI, the PDAF disparity (xcorr, px) and its normalised
  correlation peak (how alike the two half-aperture images are) for confident RoIs; binned
  by |disparity| in ``peak_by_bin``.  Real: the Pixel 4 cells of Xin et al. (ICCV 2021) the tests use; sim: cameras of a
  profile at several lens positions.
"""

from __future__ import annotations

import numpy as np

from ..frames import DualPixelFrame, grid_rois
from ..pdaf import estimate_rois

BINS = ((0.0, 2.0), (2.0, 4.0), (4.0, 6.0), (6.0, 8.0), (8.0, 12.0))


def lr_ratio_columns(white: DualPixelFrame, bands: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """(field x of each column band on the full sensor in [-1, 1], mean(left)/mean(right) per band)."""
    L = white.left.astype(np.float64)
    R = white.right.astype(np.float64)
    H, W = white.shape
    Hf, Wf = white.sensor_hw or white.shape
    x0 = white.origin[1]
    edges = np.linspace(0, W, bands + 1).astype(int)
    xs, rs = [], []
    for a, b in zip(edges[:-1], edges[1:]):
        xs.append(2.0 * (x0 + 0.5 * (a + b)) / Wf - 1.0)
        rs.append(L[:, a:b].mean() / R[:, a:b].mean())
    return np.array(xs), np.array(rs)


def fit_lr_gain(x: np.ndarray, ratio: np.ndarray) -> tuple[float, float]:
    """(view_gain_imbalance o, vignette_lr v) with ratio ~ (1-o)(1-v x) / ((1+o)(1+v x)):
    log ratio = log((1-o)/(1+o)) + log((1-v x)/(1+v x)), fitted by a grid + refinement."""
    lr = np.log(np.asarray(ratio, np.float64))
    best = (np.inf, 0.0, 0.0)
    for v in np.linspace(-0.6, 0.6, 1201):
        t = np.log((1 - v * x) / (1 + v * x))
        a = float(np.mean(lr - t))  # log((1-o)/(1+o))
        e = float(np.sum((lr - t - a) ** 2))
        if e < best[0]:
            best = (e, a, float(v))
    _, a, v = best
    g = np.exp(a)
    return float((1 - g) / (1 + g)), v


def disparity_peak_cells(frame: DualPixelFrame, roi_size: int = 64, max_shift: float = 16.0,
                         min_confidence: float = 0.5) -> np.ndarray:
    """float64 [N, 2]: (disparity px, correlation peak) of the confident RoIs of a size x size grid."""
    H, W = frame.shape
    rois = grid_rois((H, W), H // roi_size, W // roi_size, size=roi_size)
    res = estimate_rois(frame.left, frame.right, rois, method="xcorr", max_shift=max_shift,
                        white_level=frame.white_level)
    keep = res.confidence >= min_confidence
    return np.stack([res.disparity_px[keep], res.peak[keep]], axis=1)


def peak_by_bin(cells: np.ndarray) -> dict[tuple[float, float], np.ndarray]:
    """Correlation peaks of the cells in each |disparity| bin of BINS."""
    d = np.abs(cells[:, 0])
    return {b: cells[(d >= b[0]) & (d < b[1]), 1] for b in BINS}


def sim_cells(profile: str, cameras: range, codes=(100, 250, 400, 550, 700, 850), scene: str = "natural") -> np.ndarray:
    """Cells (disparity, peak) of ``cameras`` (seeds) of a sim profile at several lens codes."""
    from ..clock import SimClock
    from ..drivers.registry import open_rig

    out = []
    for s in cameras:
        with open_rig(f"sim://?profile={profile}&seed={s}&scene={scene}", clock=SimClock()) as rig:
            for c in codes:
                rig.lens.move_to(float(c))
                rig.clock.sleep(0.3)
                out.append(disparity_peak_cells(rig.source.capture()))
    return np.concatenate(out) if out else np.zeros((0, 2))


def graded_cells(frame: DualPixelFrame, gt_defocus: np.ndarray, cell: int = 112, max_shift: float = 16.0,
                 min_confidence: float = 0.5):
    """Cells of a real capture with a ground-truth defocus map (the Xin et al. captures): a grid of
    ``cell`` px RoIs, the classical xcorr estimate of each, the median ground truth per cell, and the
    usable cells (ground truth uniform within the cell: std <= 4 of its 0..255 scale, non-zero, and
    PDAF confidence >= ``min_confidence``).  Returns (rois int32 [P, 4], estimate, median gt [P], keep [P])."""
    H, W = frame.shape
    rois = grid_rois((H, W), H // cell, W // cell, size=cell)
    res = estimate_rois(frame.left, frame.right, rois, method="xcorr", max_shift=max_shift, white_level=frame.white_level)
    g = np.array([np.median(gt_defocus[y:y + h, x:x + w]) for x, y, w, h in rois])
    gs = np.array([gt_defocus[y:y + h, x:x + w].std() for x, y, w, h in rois])
    keep = (gs <= 4) & (g > 0) & (res.confidence >= min_confidence)
    return rois, res, g, keep


def rankdata(a: np.ndarray) -> np.ndarray:
    """Ranks (0-based) with ties averaged, numpy only."""
    a = np.asarray(a, dtype=np.float64)
    order = np.argsort(a, kind="stable")
    ranks = np.empty(a.size)
    ranks[order] = np.arange(a.size)
    _, inv, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.zeros(counts.size)
    np.add.at(sums, inv, ranks)
    return (sums / counts)[inv]


def spearman(a: np.ndarray, b: np.ndarray) -> float:
    """Spearman rank correlation of a and b (ties averaged)."""
    ra, rb = rankdata(a), rankdata(b)
    ra -= ra.mean()
    rb -= rb.mean()
    return float((ra * rb).sum() / np.sqrt((ra * ra).sum() * (rb * rb).sum()))
