"""A single-frame defocus estimate from the PE model: how many slices (and which way) each RoI is
from focus, without a sweep.

The step-1 model is asked as if the lens sat at slice ``k`` of an n-slice sweep; its expected
in-focus slice minus ``k`` is the RoI's signed defocus in model slices.  A frame without a lens
position (the real Pixel 4 captures have no sweep) does not say ``k``; then ``k`` is chosen from a
coarse grid (every 4th slice) as the one whose predictions leave the fewest RoIs at either end of
the range (a prediction at an end only says "at least this far", which ranks nothing), ties
broken towards the middle.  This is what ranks the cells of a real capture by defocus in
tests/test_realdp.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..frames import DualPixelFrame
from .inference import PEPredictor


def relative_defocus(predictor: PEPredictor, frame: DualPixelFrame, rois: Any, k: int | None = None,
                     n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(signed defocus in slices float64 [P], confidence [P]) of each RoI of one frame (module doc)."""
    n = int(n or predictor.n_slices)
    if k is not None:
        pred = predictor.predict(frame, rois, int(k), n)
        return pred.expected - int(k), pred.confidence
    best = None
    for kk in range(0, n, 4):
        pred = predictor.predict(frame, rois, kk, n)
        ends = int(np.sum((pred.argmax == 0) | (pred.argmax == n - 1)))  # the mode at an end: saturated
        key = (ends, abs(kk - (n - 1) / 2))
        if best is None or key < best[0]:
            best = (key, kk, pred)
    assert best is not None
    _, kk, pred = best
    return pred.expected - kk, pred.confidence
