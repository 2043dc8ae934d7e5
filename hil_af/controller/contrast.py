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
from ..roiframe import RoiFrame

EPS = 1e-6


def roi_contrast(frame: DualPixelFrame | RoiFrame, rois: np.ndarray) -> np.ndarray:
    """Focus measure of each RoI (x, y, w, h) of ``frame``, float64 [P] (``capture.contrast_curve``);
    a ``RoiFrame`` is measured per RoI patch (the measure reads nothing outside the RoI)."""
    if isinstance(frame, DualPixelFrame):
        return contrast_curve((frame.left, frame.right), rois)[:, 0]
    rois = np.asarray(rois).reshape(-1, 4)
    frame.ensure(rois)  # one decode per RoI size for the windows not decoded yet
    return np.array([contrast_curve(frame.crop(r), [(0, 0, int(r[2]), int(r[3]))])[0, 0] for r in rois])


def parabolic_peak(y_minus: float, y0: float, y_plus: float) -> float:
    """Offset in [-0.5, 0.5] of the vertex of the parabola through three equally spaced samples."""
    denom = y_minus - 2 * y0 + y_plus
    if denom >= 0 or not np.isfinite(denom):
        return 0.0
    return float(np.clip(0.5 * (y_minus - y_plus) / denom, -0.5, 0.5))


def _peak_ratio(curve: dict[int, float]) -> float:
    values = np.array(list(curve.values()))
    r = max(values) / (float(np.median(values)) + EPS)
    return float(r) if np.isfinite(r) else 0.0


def contrast_search(session, rois: np.ndarray, weights: np.ndarray, coarse_step: int = 4,
                    fine_radius: int = 3, min_peak_ratio: float = 1.15, contrast=roi_contrast,
                    fallback_rois: np.ndarray | None = None) -> tuple[float, float, bool]:
    """Coarse-then-fine contrast search. Returns (target position, confidence in [0, 1], used_fallback).

    ``contrast(frame, rois) -> float64 [P]`` is the focus measure (``roi_contrast``).
    With ``fallback_rois`` (same count as ``rois``), each frame of the scan also
    measures them; if the RoIs' own curve has no peak after the coarse pass
    (a textureless RoI), the fine pass and the result follow the fallback
    windows instead: one scan serves both.

    Raises FocusFailed when the contrast curve is flat (no texture in the RoIs).
    """
    n = len(session.positions)
    curves: list[dict[int, float]] = [{}, {}]
    windows = [rois] if fallback_rois is None else [rois, fallback_rois]

    def measure(k: int) -> None:
        if k not in curves[0]:
            session.move_to_slice(k)
            frame = session.capture()
            with session.compute():
                for i, win in enumerate(windows):
                    curves[i][k] = float(np.dot(weights, contrast(frame, win)))

    coarse = list(range(0, n, coarse_step))
    if coarse[-1] != n - 1:
        coarse.append(n - 1)
    if session.nearest_slice() > n // 2:  # start from the nearer end: less travel
        coarse.reverse()
    for k in coarse:
        measure(k)
    use = 0
    if fallback_rois is not None and _peak_ratio(curves[0]) < min_peak_ratio <= _peak_ratio(curves[1]):
        use = 1
    measured = curves[use]
    best = max(measured, key=measured.__getitem__)
    lo, hi = max(0, best - fine_radius), min(n - 1, best + fine_radius)
    for k in sorted(range(lo, hi + 1), key=lambda k: abs(k - best)):
        measure(k)
    best = max(measured, key=measured.__getitem__)
    peak_ratio = _peak_ratio(measured)
    if peak_ratio < min_peak_ratio:
        raise FocusFailed(f"no contrast peak: peak/median contrast {peak_ratio:.3f} < {min_peak_ratio} (flat or dark RoI)")
    offset = 0.0
    if 0 < best < n - 1 and best - 1 in measured and best + 1 in measured:
        offset = parabolic_peak(measured[best - 1], measured[best], measured[best + 1])
    target = float(np.interp(best + offset, np.arange(n), session.positions))
    confidence = float(np.clip((peak_ratio - 1.0) / 2.0, 0.0, 1.0))
    return target, confidence, use == 1
