"""Contrast from the ISP's focus statistics: RoI windows mapped onto statistics regions.

A frame from a statistics source (``picamera2-fom://``) carries in its
``metadata``:

- ``focus_regions``: float64 [rows, cols], the per-region focus figure of
  merit libcamera's IPA keeps (``FocusRegions`` in
  ``src/ipa/rpi/controller/statistics.h``: 4 x 3 regions on VC4, 8 x 8 on
  PiSP, ``hardwareConfigMap`` in ``src/ipa/rpi/controller/controller.cpp``),
  when the platform exposes them;
- ``focus_fom``: the ``FocusFoM`` control, the mean of the central regions
  (``IpaBase::reportMetadata`` in ``src/ipa/rpi/common/ipa_base.cpp``);
- ``stats_region``: (x, y, w, h) of the view the regions tile, view pixels.

``region_weights`` is libcamera's ``Af::computeWeights`` (``af.cpp``): each
window adds, to every region it overlaps, the overlapping area as a
fraction of the region's area; no overlap falls back to libcamera's default
window (middle half width, middle third height).
"""

from __future__ import annotations

import numpy as np

from .contrast import roi_contrast


def region_weights(roi, rows: int, cols: int, stats_region: tuple[int, int, int, int]) -> np.ndarray:
    """Weights float64 [rows, cols] of one RoI (x, y, w, h, view pixels) over the statistics regions."""
    sx, sy, sw, sh = (int(v) for v in stats_region)
    cell_h, cell_w = sh // rows, sw // cols
    x, y, w, h = (int(v) for v in roi)
    wts = np.zeros((rows, cols))
    for r in range(rows):
        y0, y1 = max(sy + cell_h * r, y), min(sy + cell_h * (r + 1), y + h)
        if y0 >= y1:
            continue
        for c in range(cols):
            x0, x1 = max(sx + cell_w * c, x), min(sx + cell_w * (c + 1), x + w)
            if x0 < x1:
                wts[r, c] = (y1 - y0) * (x1 - x0) / float(cell_h * cell_w)
    if wts.sum() <= 0:
        wts[rows // 3: rows - rows // 3, cols // 4: cols - cols // 4] = 1.0
    return wts


def frame_contrast(frame, rois: np.ndarray, view_hw: tuple[int, int]) -> np.ndarray:
    """Focus measure per RoI, float64 [P]: from the ISP's statistics if the frame has them, else the views."""
    md = getattr(frame, "metadata", None) or {}
    regions = md.get("focus_regions")
    if regions is not None:
        grid = np.asarray(regions, dtype=np.float64)
        area = md.get("stats_region") or (0, 0, view_hw[1], view_hw[0])
        out = []
        for roi in rois:
            wts = region_weights(roi, grid.shape[0], grid.shape[1], area)
            out.append(float((wts * grid).sum() / wts.sum()))
        return np.asarray(out)
    if "focus_fom" in md:  # one number for the whole frame: every window gets it
        return np.full(len(rois), float(md["focus_fom"]))
    return roi_contrast(frame, rois)
