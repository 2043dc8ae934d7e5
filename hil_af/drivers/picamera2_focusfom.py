"""Contrast statistics from the Raspberry Pi ISP through Picamera2: ``picamera2-fom://``.

URL grammar::

    picamera2-fom://N[?timeout_ms=T][&regions=auto|fom]

    N           camera index (Picamera2(N))
    timeout_ms  wait for one frame's metadata (default 1000 ms)
    regions     auto (default): per-region focus statistics when the platform
                exposes them (``StatsOutputEnable`` -> ``Bcm2835StatsOutput`` on
                VC4, ``PispStatsOutput`` on Pi 5), else the single ``FocusFoM``;
                fom: ``FocusFoM`` only

No raw stream: the camera runs Picamera2's default (processed) video
configuration at full frame rate and each ``capture()`` reads one frame's
metadata (``capture_metadata``).  The frame's views are the focus-region
grid (float64 [rows, cols]; [1, 1] with FocusFoM only), and its
``metadata`` holds ``focus_fom`` (libcamera's ``FocusFoM``: integer mean of
the central regions, ``src/ipa/rpi/common/ipa_base.cpp``),
``focus_regions`` (per-region figure of merit: VC4
``contrast_val[1][1] / 1000`` over 4 x 3 regions, ``src/ipa/rpi/vc4/vc4.cpp``;
PiSP ``cdaf.foms >> 20`` over 8 x 8, ``src/ipa/rpi/pisp/pisp.cpp``) and
``stats_region`` (the view the regions tile, view pixels: the output
stream's full size).  ``hil_af.controller.focus_stats`` maps AF windows
(view pixels of the output stream) onto the regions as libcamera's
``Af::computeWeights`` does.  Only the contrast methods (cdaf, cdaf-fast,
cdaf-libcamera) can use it: ``statistics_only`` is True.

The lens is ``libcamera-lens://N`` (the same shared Picamera2); frames'
``lens_position`` is the ``LensPosition`` metadata in that lens's units.
"""

from __future__ import annotations

import math
import struct
from typing import Any

import numpy as np

from ..errors import BadInput, DeviceError, DeviceTimeout
from ..frames import DualPixelFrame
from .base import ContextMixin
from .picamera2_shared import camera_index, release_camera, shared_camera
from .registry import DriverURL, register

VC4_FOCUS_OFFSET = 10248   # offsetof(struct bcm2835_isp_stats, focus_stats), include/linux/bcm2835-isp.h
VC4_FOCUS_ENTRY = 48       # struct bcm2835_isp_stats_focus: u64 contrast_val[2][2], u32 contrast_val_num[2][2]
PISP_CDAF_OFFSET = 22656   # offsetof(pisp_statistics, cdaf.foms), libpisp src/libpisp/frontend/pisp_statistics.h


def vc4_regions(blob: bytes) -> np.ndarray:
    """float64 [3, 4]: contrast_val[1][1] / 1000 of the 12 focus regions of a bcm2835_isp_stats blob."""
    need = VC4_FOCUS_OFFSET + 12 * VC4_FOCUS_ENTRY
    if len(blob) < need:
        raise DeviceError(f"Bcm2835StatsOutput is {len(blob)} bytes, expected at least {need}")
    vals = [struct.unpack_from("<Q", blob, VC4_FOCUS_OFFSET + i * VC4_FOCUS_ENTRY + 24)[0] // 1000 for i in range(12)]
    return np.asarray(vals, dtype=np.float64).reshape(3, 4)


def pisp_regions(blob: bytes) -> np.ndarray:
    """float64 [8, 8]: cdaf.foms >> 20 of a pisp_statistics blob."""
    need = PISP_CDAF_OFFSET + 64 * 8
    if len(blob) < need:
        raise DeviceError(f"PispStatsOutput is {len(blob)} bytes, expected at least {need}")
    vals = struct.unpack_from("<64Q", blob, PISP_CDAF_OFFSET)
    return np.asarray([v >> 20 for v in vals], dtype=np.float64).reshape(8, 8)


class FocusFomSource(ContextMixin):
    """Frames of ISP focus statistics (see the module header); ``sensor_hw`` = output stream (H, W)."""

    statistics_only = True

    def __init__(self, index: int = 0, *, timeout_s: float = 1.0, regions: str = "auto"):
        self.shared = shared_camera(index)
        self.timeout_s = float(timeout_s)
        try:
            self.shared.ensure_started()
            cam = self.shared.cam
            cfg = cam.camera_configuration() or {}
            W, H = cfg.get("main", {}).get("size", (0, 0))
            if not (W > 0 and H > 0):
                raise DeviceError(f"picamera2-fom://{index}: the camera reports no main stream size")
            self._hw = (int(H), int(W))
            self.per_region = regions == "auto" and "StatsOutputEnable" in cam.camera_controls
            if self.per_region:
                cam.set_controls({"StatsOutputEnable": True})
        except Exception:
            release_camera(self.shared)
            raise
        self._closed = False

    @property
    def sensor_hw(self) -> tuple[int, int]:
        """(H, W) of the processed output stream, pixels: AF windows are in these pixels."""
        return self._hw

    def capture(self) -> DualPixelFrame:
        """The next frame's focus statistics (blocking up to ``timeout_s``)."""
        if self._closed:
            raise DeviceError("picamera2-fom: source is closed")
        cam = self.shared.cam
        try:
            md = cam.wait(cam.capture_metadata(wait=False), timeout=self.timeout_s)
        except TimeoutError as e:
            raise DeviceTimeout(f"picamera2-fom://{self.shared.index}: no frame metadata within {self.timeout_s} s ({e})") from None
        self.shared.note_metadata(md)
        if "FocusFoM" not in md:
            raise DeviceError(f"picamera2-fom://{self.shared.index}: the frame metadata has no FocusFoM "
                              f"(a libcamera without the Raspberry Pi IPA's focus statistics)")
        grid = None
        if self.per_region:
            if "Bcm2835StatsOutput" in md:
                grid = vc4_regions(bytes(md["Bcm2835StatsOutput"]))
            elif "PispStatsOutput" in md:
                grid = pisp_regions(bytes(md["PispStatsOutput"]))
        meta: dict[str, Any] = {"source": "picamera2-fom", "focus_fom": int(md["FocusFoM"]),
                                "stats_region": (0, 0, self._hw[1], self._hw[0])}
        if grid is not None:
            meta["focus_regions"] = grid
        view = grid if grid is not None else np.full((1, 1), float(md["FocusFoM"]))
        lp = md.get("LensPosition")
        native = self.shared.lens_to_native
        lens = float("nan") if lp is None else float(native(lp) if native else lp)
        ts = float(md.get("SensorTimestamp", 0)) / 1e9
        return DualPixelFrame(view, view, lens_position=lens, timestamp_s=ts, sensor_hw=self._hw, metadata=meta)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            release_camera(self.shared)


@register("picamera2-fom", "source",
          "Raspberry Pi ISP focus statistics (libcamera FocusFoM, per-region where exposed) via Picamera2: contrast AF without raw")
def open_focusfom(url: DriverURL, ctx: dict[str, Any]) -> FocusFomSource:
    url.unknown_keys({"timeout_ms", "regions"})
    index = camera_index(url)
    timeout_ms = url.get("timeout_ms", 1000.0, float)
    if not (math.isfinite(timeout_ms) and timeout_ms > 0):
        raise BadInput(f"{url.raw}: timeout_ms must be > 0, got {timeout_ms}")
    regions = url.get("regions", "auto")
    if regions not in ("auto", "fom"):
        raise BadInput(f"{url.raw}: regions must be auto or fom, got {regions!r}")
    return FocusFomSource(index, timeout_s=timeout_ms / 1e3, regions=regions)
