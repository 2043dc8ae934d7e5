"""The PDAF controller's confidence threshold and stopping rule, calibrated from the sweeps.

Hand-set thresholds (``MethodConfig.pdaf_min_confidence`` 0.2, ``pdaf_stop_slices``
0.5) suit the optics they were set on; on sensors with small, noisy disparities
they reject usable measurements (Failed: low confidence) or chase noise near
focus (no convergence).  ``fit_calibration`` therefore derives both from the
calibration sweeps themselves and stores them in CAL.json as ``controller``:

- ``min_confidence``: the lowest confidence c (of a grid 0.02..0.5) such that
  among the sweep measurements with confidence >= c and within the fitted
  near-focus range, at most ``OUTLIER_FRACTION`` predict the in-focus
  position more than ``OUTLIER_SLICES`` slices wrong (through the fitted
  per-cell lines); where no c reaches that, the c with the fewest outliers
  if it removes at least a fifth of them, else 0.02 (the errors are not ones
  that confidence predicts);
- ``stop_slices``: 1.5 x the robust spread (1.4826 x median |error|, slices) of
  those predictions within 3 slices of focus, clipped to [0.5, 3]: a predicted move
  smaller than that is noise, so the loop stops there.

``run_pdaf`` uses them when the calibration has them (else the MethodConfig values).
"""

from __future__ import annotations

from typing import Any

import numpy as np

OUTLIER_SLICES = 4.0
OUTLIER_FRACTION = 0.10
MIN_KEPT = 0.2  # the threshold must keep at least this fraction of the measurements
GRID = np.round(np.arange(0.02, 0.501, 0.02), 2)


def choose_min_confidence(err_slices: np.ndarray, confidence: np.ndarray) -> tuple[float, float]:
    """(threshold, outlier fraction at it) from per-prediction |error| (slices) and confidence: the
    lowest c of ``GRID`` that keeps at least ``MIN_KEPT`` of the predictions (and 10) with at most
    ``OUTLIER_FRACTION`` of them off by more than ``OUTLIER_SLICES``; where none does, the c with the
    fewest outliers if it removes at least a fifth of them, else the grid's lowest (module doc).
    The fraction is nan when there are too few predictions to judge."""
    err = np.asarray(err_slices, np.float64)
    conf = np.asarray(confidence, np.float64)
    fracs: list[tuple[float, float]] = []
    for c in GRID:
        keep = conf >= c
        if keep.sum() < max(10, MIN_KEPT * len(conf)):
            break
        fracs.append((float(c), float(np.mean(err[keep] > OUTLIER_SLICES))))
    chosen, frac = (float(GRID[0]), float("nan"))
    if fracs:
        meets = [cf for cf in fracs if cf[1] <= OUTLIER_FRACTION]
        # else: the threshold that removes the most outliers, if it removes a fifth of them at least
        # (errors that confidence does not predict, e.g. a global fit's position bias, keep it lowest)
        best = meets[0] if meets else min(fracs, key=lambda cf: (cf[1], cf[0]))
        chosen, frac = best if (meets or best[1] <= 0.8 * fracs[0][1]) else fracs[0]
    return chosen, frac


def controller_thresholds(defocus: np.ndarray, predicted: np.ndarray, confidence: np.ndarray, near: np.ndarray,
                          slice_spacing: float) -> dict[str, Any]:
    """The ``controller`` block from per-measurement true defocus, predicted defocus (native units),
    confidence, and ``near`` (bool: within the fitted near-focus range)."""
    err = np.abs(np.asarray(predicted, np.float64) - np.asarray(defocus, np.float64)) / float(slice_spacing)
    conf = np.asarray(confidence, np.float64)
    ok = np.asarray(near, bool) & np.isfinite(err) & np.isfinite(conf)
    err, conf = err[ok], conf[ok]
    chosen, frac = choose_min_confidence(err, conf)
    close = (conf >= chosen) & (np.abs(np.asarray(defocus, np.float64)[ok]) <= 3 * slice_spacing)
    spread = float(1.4826 * np.median(err[close])) if close.sum() >= 5 else 0.0  # |error| is centred on the truth
    stop = float(np.clip(1.5 * spread, 0.5, 3.0))
    return {"min_confidence": chosen, "stop_slices": round(stop, 3),
            "outlier_fraction": None if np.isnan(frac) else round(frac, 4),
            "near_focus_spread_slices": round(spread, 4), "measurements": int(len(conf)),
            "rule": f"min_confidence: lowest c with <= {OUTLIER_FRACTION:.0%} of predictions off by > {OUTLIER_SLICES:g} slices; "
                    "stop_slices: 1.5 x near-focus spread, clipped to [0.5, 3] (hil_af/calibration/thresholds.py)"}
