"""The controller's RoI-only capture path: decode only what an AF step reads.

A source that can decode windows of a raw frame alone has
``capture_roi_frame(rois) -> hil_af.roiframe.RoiFrame`` (``picamera2://``);
``grab`` uses it whenever the cycle's RoIs are known, so an AF step costs
the RoIs' decode instead of the whole frame's (benchmarks/bench_decode.py
``--af-step``).  Sources without it (sim, replay, ...) give whole
``DualPixelFrame``s as before.  The estimators accept either frame and give
the same result on the same raw buffer (tests/test_controller_rois.py):

- PE: ``pe_predict`` runs ``PEPredictor.predict_patches`` on the patches of
  the windows the model reads (``PEPredictor.windows``: the RoI, grown about
  its centre where it is smaller than the model's input) with their
  full-plane positions (the RoI-PE planes of ``predict``);
- PDAF: ``PdafPredictor.predict`` reads patches through ``frame.patches``
  (its wider second look decodes those windows from the same buffer);
- contrast: ``contrast.roi_contrast`` per RoI through ``frame.crop``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ..frames import DualPixelFrame
from ..roiframe import RoiFrame


def grab(source: Any, rois: np.ndarray | None) -> DualPixelFrame | RoiFrame:
    """One frame of ``source``: a ``RoiFrame`` of ``rois`` (view pixels, int [P, 4]) where the
    source has ``capture_roi_frame`` and ``rois`` is given, else ``source.capture()``."""
    roi_capture = getattr(source, "capture_roi_frame", None) if rois is not None else None
    if roi_capture is not None:
        return roi_capture(rois)
    return source.capture()


def pe_predict(predictor: Any, frame: DualPixelFrame | RoiFrame, rois: np.ndarray, slice_index: int,
               n_slices: int) -> Any:
    """``predictor.predict(frame, rois, slice_index, n_slices)`` for either kind of frame: a
    ``RoiFrame``'s patches go through ``predict_patches`` with their full-plane RoIs (one batch
    per RoI size; a single batch, as ``predict``, when the RoIs are one size)."""
    if not isinstance(frame, RoiFrame):
        return predictor.predict(frame, rois, slice_index, n_slices)
    rois = np.asarray(rois, dtype=np.int64).reshape(-1, 4)
    rois = predictor.windows(rois, frame.shape)  # an RoI smaller than the model's input: the window it reads
    groups: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(rois):
        groups.setdefault((int(r[2]), int(r[3])), []).append(i)
    parts = []
    for idx in groups.values():
        L, R = frame.patches(rois[idx])
        parts.append((idx, predictor.predict_patches(L, R, rois[idx], frame.sensor_hw, slice_index, n_slices)))
    if len(parts) == 1:
        return parts[0][1]
    first = parts[0][1]
    merged = {}
    for name in first.__dataclass_fields__:
        a0 = np.asarray(getattr(first, name))
        out = np.empty((len(rois),) + a0.shape[1:], dtype=a0.dtype)
        for idx, pred in parts:
            out[idx] = getattr(pred, name)
        merged[name] = out
    return type(first)(**merged)
