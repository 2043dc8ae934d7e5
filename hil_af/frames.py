"""The dual-pixel frame: the one data type every frame source produces.

Pixel values are float32 with the black level already subtracted (so 0 is
black; the white level minus black level is saturation).  Coordinates:
``left[y, x]`` is view pixel (y, x); that pixel sits at (y0 + y, x0 + x) on
the sensor's full view plane of size ``sensor_hw`` = (H_full, W_full),
where ``origin`` = (y0, x0).  Raw-buffer decoders live in ``hil_af.rawdecode``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import BadInput
from .pdaf import crop_patches


@dataclass
class DualPixelFrame:
    """One dual-pixel capture.

    left, right: float32 [H, W], black level subtracted (DN).
    lens_position: actuator position when the frame was exposed, native units
        (a VCM DAC code for VCM rigs).
    timestamp_s: capture time on the source's clock, seconds.
    sensor_hw: (H_full, W_full) of the full view plane, pixels.
    origin: (y0, x0) of view pixel (0, 0) on the full view plane, pixels.
    white_level: saturation value after black subtraction (DN), or None.
    metadata: free-form dict (exposure, gains, source name...).
    """

    left: np.ndarray
    right: np.ndarray
    lens_position: float = float("nan")
    timestamp_s: float = 0.0
    sensor_hw: tuple[int, int] | None = None
    origin: tuple[int, int] = (0, 0)
    white_level: float | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        left = np.asarray(self.left)
        right = np.asarray(self.right)
        if left.ndim != 2 or right.ndim != 2:
            raise BadInput(f"DualPixelFrame views must be 2-D, got left {left.shape} right {right.shape}")
        if left.shape != right.shape:
            raise BadInput(f"DualPixelFrame views differ in shape: left {left.shape} right {right.shape}")
        if left.shape[0] < 1 or left.shape[1] < 1:
            raise BadInput(f"DualPixelFrame views are empty: {left.shape}")
        self.left = left.astype(np.float32, copy=False)
        self.right = right.astype(np.float32, copy=False)
        if self.sensor_hw is None:
            self.sensor_hw = (int(left.shape[0]), int(left.shape[1]))
        self.sensor_hw = (int(self.sensor_hw[0]), int(self.sensor_hw[1]))
        self.origin = (int(self.origin[0]), int(self.origin[1]))
        y0, x0 = self.origin
        if y0 < 0 or x0 < 0 or y0 + left.shape[0] > self.sensor_hw[0] or x0 + left.shape[1] > self.sensor_hw[1]:
            raise BadInput(
                f"DualPixelFrame: origin {self.origin} + view size {left.shape} does not fit in sensor_hw {self.sensor_hw}"
            )

    @property
    def shape(self) -> tuple[int, int]:
        """(H, W) of each view, pixels."""
        return (int(self.left.shape[0]), int(self.left.shape[1]))

    def crop(self, roi: tuple[int, int, int, int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Left and right patches of ``roi`` = (x, y, w, h) in view pixels."""
        x, y, w, h = (int(v) for v in roi)
        H, W = self.shape
        if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > W or y + h > H:
            raise BadInput(f"RoI (x={x}, y={y}, w={w}, h={h}) is not inside the {W}x{H} view")
        return self.left[y : y + h, x : x + w], self.right[y : y + h, x : x + w]

    def patches(self, rois: Any) -> tuple[np.ndarray, np.ndarray]:
        """Left and right patches [P, h, w] of RoIs (x, y, w, h; view pixels) of one size
        (as ``hil_af.pdaf.crop_patches``; ``hil_af.roiframe.RoiFrame`` has the same method)."""
        return crop_patches(self.left, self.right, rois)


def validate_rois(rois: Any, view_hw: tuple[int, int], what: str = "rois") -> np.ndarray:
    """Return ``rois`` as int32 [P, 4] (x, y, w, h) or raise BadInput naming the bad one."""
    arr = np.asarray(rois)
    if arr.ndim == 1 and arr.size == 4:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise BadInput(f"{what}: expected shape [P, 4] (x, y, w, h), got {arr.shape}")
    if not np.all(np.isfinite(arr.astype(np.float64))):
        raise BadInput(f"{what}: non-finite values")
    arr = arr.astype(np.int64)
    H, W = view_hw
    x, y, w, h = arr.T
    outside = (w <= 0) | (h <= 0) | (x < 0) | (y < 0) | (x + w > W) | (y + h > H)
    if outside.any():  # the first one outside, as a loop over the RoIs would find it
        i = int(np.argmax(outside))
        x, y, w, h = arr[i]
        raise BadInput(f"{what}[{i}] = (x={x}, y={y}, w={w}, h={h}) is not inside the {W}x{H} view")
    return arr.astype(np.int32)


def centre_roi(view_hw: tuple[int, int], size: int = 64) -> np.ndarray:
    """The default AF window: a ``size`` x ``size`` RoI at the view centre, int32 [4]."""
    H, W = view_hw
    s = int(min(size, H, W))
    return np.array([(W - s) // 2, (H - s) // 2, s, s], dtype=np.int32)


def grid_rois(view_hw: tuple[int, int], rows: int, cols: int, size: int = 64) -> np.ndarray:
    """``rows`` x ``cols`` RoIs of ``size`` px, centred in equal cells of the view, int32 [R*C, 4]."""
    H, W = view_hw
    if rows < 1 or cols < 1:
        raise BadInput(f"grid must be at least 1x1, got {rows}x{cols}")
    ch, cw = H // rows, W // cols
    s = int(min(size, ch, cw))
    if s < 8:
        raise BadInput(f"grid {rows}x{cols} on a {W}x{H} view leaves cells smaller than 8 px")
    out = []
    for r in range(rows):
        for c in range(cols):
            out.append((c * cw + (cw - s) // 2, r * ch + (ch - s) // 2, s, s))
    return np.array(out, dtype=np.int32)
