"""A single-frame defocus estimate from the PE model: how many slices (and which way) each RoI is
from focus, without a sweep.

The step-1 model is asked as if the lens sat at slice ``k`` of an n-slice sweep; its expected
in-focus slice minus ``k`` is the RoI's signed defocus in model slices (``k`` given: a sweep says
where the lens is).

A frame without a lens position (the real Pixel 4 captures have no sweep) does not say ``k``.  Then
each RoI is read in two asks (``far_end_defocus``): at the middle slice the model says on which side
of the lens the RoI's focus lies (the sign of its expected defocus); then it is asked again as if
the lens sat at the END of the range on the other side (slice 0 when focus lies above, n-1 when
below), so that the whole range lies between the hypothetical lens and the focus and its answer is
truncated as little as possible.  The result is the signed distance in slices from that end slice
(not from the unknown lens): it ranks RoIs on the same side of focus by their defocus, which is
what tests/test_realdp.py and benchmarks/sim_ranking.py measure.  Measured before this rule was
adopted (the mid-slice rule ``ends`` of earlier releases picked one k per frame as the one leaving
the fewest predictions at a range end): mean |Spearman| on held-out sim frames 0.72 / 0.67 / 0.71
(sim-pixel / sim-catseye / sim-wide) against 0.65 / 0.49 / 0.58, and on the real Pixel 4 cells
0.66 against 0.43 (README, "Real captures").

An RoI larger than the model's input (the real captures' 112 px cells; the model crops the
central 64 px) is read through ``tile_windows``: 3 x 3 windows of the input size spread over the
RoI (corners, edge centres, centre), and the RoI's estimate is the mean of their estimates, so the
model sees the same pixels the classical estimator correlates.  An RoI at most the input size is
one window (unchanged).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..frames import DualPixelFrame, validate_rois
from .inference import PEPredictor


def _offsets(length: int, size: int) -> list[int]:
    """Window starts along one axis of an RoI of ``length`` px: 0, the middle and the end, or [0]."""
    if length <= size:
        return [0]
    return sorted({0, (length - size) // 2, length - size})


def tile_windows(rois: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """(windows int32 [T, 4] (x, y, w, h) in view px, owner int64 [T]: the RoI each window tiles).

    An RoI wider or taller than ``size`` px gets windows of ``size`` px at 3 offsets per such
    axis (module doc); an RoI of at most ``size`` px on an axis keeps its own extent on it."""
    wins, owner = [], []
    for i, (x, y, w, h) in enumerate(np.asarray(rois, dtype=np.int64).reshape(-1, 4)):
        ww, hh = min(int(w), size), min(int(h), size)
        for oy in _offsets(int(h), size):
            for ox in _offsets(int(w), size):
                wins.append((int(x) + ox, int(y) + oy, ww, hh))
                owner.append(i)
    return np.asarray(wins, dtype=np.int32).reshape(-1, 4), np.asarray(owner, dtype=np.int64)


def _per_roi(values: np.ndarray, owner: np.ndarray, p: int) -> np.ndarray:
    """Mean of ``values`` [T] per owner (0..p-1) -> float64 [p]."""
    s = np.bincount(owner, weights=np.asarray(values, dtype=np.float64), minlength=p)
    return s / np.bincount(owner, minlength=p)


def relative_defocus(predictor: PEPredictor, frame: DualPixelFrame, rois: Any, k: int | None = None,
                     n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(signed defocus in slices float64 [P], confidence [P]) of each RoI of one frame, both means
    over the RoI's windows: from lens slice ``k`` when given, else from the far end of the range
    (module doc)."""
    n = int(n or predictor.n_slices)
    rois = validate_rois(rois, frame.shape)
    if predictor.encoding.fit == "crop":
        wins, owner = tile_windows(rois, int(predictor.encoding.size))
    else:  # the model resamples the whole RoI: one window each
        wins, owner = rois, np.arange(len(rois))
    P = len(rois)

    def ask(kk: int) -> tuple[np.ndarray, np.ndarray]:
        pred = predictor.predict(frame, wins, kk, n)
        return _per_roi(pred.expected - kk, owner, P), _per_roi(pred.confidence, owner, P)

    if k is not None:
        return ask(int(k))
    return far_end_defocus(ask, n)


def far_end_defocus(ask: Callable[[int], tuple[np.ndarray, np.ndarray]], n: int) -> tuple[np.ndarray, np.ndarray]:
    """The two-ask rule of the module doc: ``ask(k)`` -> (expected defocus [P] from slice k, confidence
    [P]); the sign comes from k = (n - 1) // 2, the answer from k = 0 where it is >= 0, else k = n - 1."""
    mid, _ = ask((n - 1) // 2)
    low, c_low = ask(0)
    high, c_high = ask(n - 1)
    up = mid >= 0
    return np.where(up, low, high), np.where(up, c_low, c_high)
