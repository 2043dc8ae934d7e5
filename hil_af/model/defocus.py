"""A single-frame defocus estimate from the PE model: how many slices (and which way) each RoI is
from focus, without a sweep.

The step-1 model is asked as if the lens sat at slice ``k`` of an n-slice sweep (default the middle,
lens-PE 0.5, so that defocus either way fits); its expected in-focus slice minus ``k`` is the RoI's
signed defocus in model slices.  This is what ranks the cells of a real capture by defocus in
tests/test_realdp.py (the real Pixel 4 frames have no sweep).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..frames import DualPixelFrame
from .inference import PEPredictor


def relative_defocus(predictor: PEPredictor, frame: DualPixelFrame, rois: Any, k: int | None = None,
                     n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(signed defocus in slices float64 [P], confidence [P]) of each RoI of one frame."""
    n = int(n or predictor.n_slices)
    k = (n - 1) // 2 if k is None else int(k)
    pred = predictor.predict(frame, rois, k, n)
    return pred.expected - k, pred.confidence
