"""Contrast (sharpness) of RoIs and the contrast-search (CDAF) method.

The focus measure is ``hil_af.capture.contrast_curve``: the Tenengrad energy
of the summed view L+R divided by its squared mean level, so exposure or
vignetting changes do not look like focus changes.  The search follows
libcamera's scan: a coarse pass over the AF slices, then a fine pass around
the best coarse slice, and a parabola through the best fine sample and its
neighbours for the sub-slice peak.
"""

from __future__ import annotations

import numpy as np

from ..capture import contrast_curve
from ..errors import FocusFailed
from ..frames import DualPixelFrame

EPS = 1e-6


def roi_contrast(frame: DualPixelFrame, rois: np.ndarray) -> np.ndarray:
    """Focus measure of each RoI (x, y, w, h) of ``frame``, float64 [P] (``capture.contrast_curve``)."""
    return contrast_curve((frame.left, frame.right), rois)[:, 0]


def parabolic_peak(y_minus: float, y0: float, y_plus: float) -> float:
    """Offset in [-0.5, 0.5] of the vertex of the parabola through three equally spaced samples."""
    denom = y_minus - 2 * y0 + y_plus
    if denom >= 0 or not np.isfinite(denom):
        return 0.0
    return float(np.clip(0.5 * (y_minus - y_plus) / denom, -0.5, 0.5))


def contrast_search(session, rois: np.ndarray, weights: np.ndarray, coarse_step: int = 4,
                    fine_radius: int = 3, min_peak_ratio: float = 1.15, contrast=roi_contrast) -> tuple[float, float]:
    """Coarse-then-fine contrast search. Returns (target position, confidence in [0, 1]).

    ``contrast(frame, rois) -> float64 [P]`` is the focus measure (``roi_contrast``).

    Raises FocusFailed when the contrast curve is flat (no texture in the RoIs).
    """
    n = len(session.positions)
    measured: dict[int, float] = {}

    def measure(k: int) -> float:
        if k not in measured:
            session.move_to_slice(k)
            frame = session.capture()
            with session.compute():
                measured[k] = float(np.dot(weights, contrast(frame, rois)))
        return measured[k]

    coarse = list(range(0, n, coarse_step))
    if coarse[-1] != n - 1:
        coarse.append(n - 1)
    if session.nearest_slice() > n // 2:  # start from the nearer end: less travel
        coarse.reverse()
    for k in coarse:
        measure(k)
    best = max(measured, key=measured.__getitem__)
    lo, hi = max(0, best - fine_radius), min(n - 1, best + fine_radius)
    order = sorted(range(lo, hi + 1), key=lambda k: abs(k - best))
    for k in order:
        measure(k)
    best = max(measured, key=measured.__getitem__)
    values = np.array(list(measured.values()))
    peak_ratio = measured[best] / (float(np.median(values)) + EPS)
    if not np.isfinite(peak_ratio) or peak_ratio < min_peak_ratio:
        raise FocusFailed(f"no contrast peak: peak/median contrast {peak_ratio:.3f} < {min_peak_ratio} (flat or dark RoI)")
    offset = 0.0
    if 0 < best < n - 1 and best - 1 in measured and best + 1 in measured:
        offset = parabolic_peak(measured[best - 1], measured[best], measured[best + 1])
    k_float = best + offset
    target = float(np.interp(k_float, np.arange(n), session.positions))
    confidence = float(np.clip((peak_ratio - 1.0) / 2.0, 0.0, 1.0))
    return target, confidence
