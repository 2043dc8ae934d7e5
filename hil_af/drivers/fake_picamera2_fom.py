"""A fake ``picamera2`` whose frames carry ISP focus statistics computed from the simulator's images.

Modelled on, from the real sources:

- ``picamera2/picamera2.py`` (raspberrypi/picamera2): ``Picamera2(camera_num)``,
  ``create_video_configuration``, ``configure``, ``start``/``stop``/``close``,
  ``camera_controls`` (name -> (min, max, default)), ``set_controls``,
  ``capture_metadata(wait=False)`` returning a job and ``wait(job, timeout)``
  its metadata dict, ``camera_configuration()["main"]["size"]`` (W, H);
- ``src/ipa/rpi/common/ipa_base.cpp`` (raspberrypi/libcamera): ``FocusFoM`` =
  integer mean of the central focus regions (rows/3 .. rows - rows/3,
  cols/4 .. cols - cols/4); ``StatsOutputEnable`` (false, true, false);
- ``src/ipa/rpi/controller/controller.cpp``: focus regions 4 x 3 on VC4
  ("bcm2835"), 8 x 8 on PiSP;
- VC4 (``src/ipa/rpi/vc4/vc4.cpp``, ``include/linux/bcm2835-isp.h``): region
  value = ``focus_stats[i].contrast_val[1][1] / 1000``; with
  ``StatsOutputEnable`` the metadata ``Bcm2835StatsOutput`` holds the
  ``struct bcm2835_isp_stats`` bytes (focus_stats at byte 10248, 12 x 48 bytes);
- PiSP (``src/ipa/rpi/pisp/pisp.cpp``, libpisp ``pisp_statistics.h``): region
  value = ``cdaf.foms[i] >> 20``, measured by the front end on the raw Bayer
  greens (Gr/Gb, ``cdaf.mode``), ``PispStatsOutput`` = ``pisp_statistics``
  bytes (cdaf.foms at byte 22656, 64 x u64);
- ``af.cpp``: ``LensPosition`` dioptres -> lens driver code through the tuning
  ``map`` (the lens limits are the map's domain).

The images are the simulator's (``sim://`` rig): the sensor pixel is the sum
of the two sub-aperture views, laid out as an RGGB mosaic of a grey scene.
VC4 statistics come from the processed image: green demosaiced bilinearly
(the luma of a grey scene), 16-bit pipeline scale, focus filter
``[-1, 0, 2, 0, -1]`` horizontally, squared and summed over pixels above a
threshold (the firmware's filter taps are not published: this is the model).
PiSP statistics come from the raw greens before demosaic: squared
difference of same-colour greens two pixels apart, noise-cored.  Nothing is
computed from the simulator's truth.
"""

from __future__ import annotations

import struct
import types
from typing import Any

import numpy as np

VC4_FOCUS_OFFSET = 8 + 2 * 3 * 128 * 4 + (192 + 16 + 16) * 32  # version, size, hist[2], awb, floating, agc
VC4_STATS_SIZE = VC4_FOCUS_OFFSET + 12 * 48
PISP_CDAF_OFFSET = (1024 + 4) * 16 + (512 + 1024) * 4 + 4 * 16  # awb (zones + floating), agc
PISP_STATS_SIZE = PISP_CDAF_OFFSET + (64 + 4) * 8
GRIDS = {"vc4": (3, 4), "pisp": (8, 8)}  # (rows, cols) of focus regions


def demosaic_green(img: np.ndarray) -> np.ndarray:
    """Bilinear green of an RGGB mosaic: green sites kept, R/B sites the mean of their 4 green neighbours."""
    g = img.astype(np.float64)
    mask = np.zeros_like(g, dtype=bool)
    mask[0::2, 1::2] = True  # Gr
    mask[1::2, 0::2] = True  # Gb
    p = np.pad(g, 1, mode="reflect")
    avg = (p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:]) / 4.0
    return np.where(mask, g, avg)


def region_sums(values: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Sum of ``values`` [H, W] over a rows x cols grid of equal cells (remainder pixels dropped)."""
    H, W = values.shape
    ch, cw = H // rows, W // cols
    return values[: ch * rows, : cw * cols].reshape(rows, ch, cols, cw).sum(axis=(1, 3))


def vc4_contrast(img_dn: np.ndarray, bits: int = 10, threshold: float = 64.0) -> np.ndarray:
    """contrast_val[1][1] per region [3, 4] (uint64): focus filter on the demosaiced luma at 16-bit scale."""
    y = demosaic_green(img_dn) * float(1 << (16 - bits))
    f = 2 * y[:, 2:-2] - y[:, :-4] - y[:, 4:]
    e = np.where(np.abs(f) > threshold, f * f, 0.0)
    return np.floor(region_sums(np.pad(e, ((0, 0), (2, 2))), *GRIDS["vc4"])).astype(np.uint64)


def pisp_foms(img_dn: np.ndarray, bits: int = 10, noise_constant: float = 64.0) -> np.ndarray:
    """cdaf.foms per region [8, 8] (uint64): raw Gr/Gb, squared same-colour difference, noise-cored."""
    raw = img_dn.astype(np.float64) * float(1 << (16 - bits))
    g = np.zeros_like(raw)
    for r0, c0 in ((0, 1), (1, 0)):  # Gr, Gb sites; the same-colour neighbour is 2 px to the right
        greens = raw[r0::2, c0::2]
        d = greens[:, 1:] - greens[:, :-1]
        g[r0::2, c0::2][:, :-1] = np.maximum(d * d - noise_constant ** 2, 0.0)
    return np.floor(region_sums(g, *GRIDS["pisp"])).astype(np.uint64)


def pack_vc4_stats(contrast11: np.ndarray) -> bytes:
    buf = bytearray(VC4_STATS_SIZE)
    struct.pack_into("<II", buf, 0, 1, VC4_STATS_SIZE)
    for i, v in enumerate(contrast11.reshape(-1)):
        off = VC4_FOCUS_OFFSET + i * 48
        struct.pack_into("<4Q4I", buf, off, 0, 0, 0, int(v), 0, 0, 1, 1)
    return bytes(buf)


def pack_pisp_stats(foms: np.ndarray) -> bytes:
    buf = bytearray(PISP_STATS_SIZE)
    struct.pack_into("<64Q", buf, PISP_CDAF_OFFSET, *(int(v) for v in foms.reshape(-1)))
    return bytes(buf)


def focus_fom(regions: np.ndarray) -> int:
    """ipa_base.cpp: the integer mean over rows/3 .. rows - rows/3 and cols/4 .. cols - cols/4."""
    rows, cols = regions.shape
    centre = regions[rows // 3: rows - rows // 3, cols // 4: cols - cols // 4]
    return int(int(centre.astype(np.uint64).sum()) // centre.size)


def fake_picamera2_fom_module(rig, *, platform: str = "vc4", stats_output: bool = True,
                              lens_map_dioptres: tuple[float, float] | None = None) -> types.ModuleType:
    """A ``picamera2`` module whose camera 0 is the simulated ``rig`` (a ``sim://`` Rig).

    ``platform``: vc4 (4 x 3 regions, Bcm2835StatsOutput) or pisp (8 x 8,
    PispStatsOutput); ``stats_output``: whether ``StatsOutputEnable`` is
    advertised (False: only ``FocusFoM`` is available).  ``lens_map_dioptres``:
    the LensPosition limits (default: the rig lens map's dioptre knots).
    Calls are recorded in ``module.calls``.
    """
    if platform not in GRIDS:
        raise ValueError(f"platform must be one of {', '.join(GRIDS)}")
    mod = types.ModuleType("picamera2")
    mod.calls = []  # type: ignore[attr-defined]
    lm = rig.lens_map
    d_lo, d_hi = lens_map_dioptres or (lm.dioptres[0], lm.dioptres[-1])
    H, W = rig.source.sensor_hw

    class Job:
        def __init__(self, result: Any):
            self.result = result

    class Picamera2:
        def __init__(self, camera_num: int = 0):
            mod.calls.append(("init", camera_num))
            if camera_num != 0:
                raise IndexError("list index out of range")  # what Picamera2 raises for a missing camera
            self.camera_controls: dict[str, tuple] = {"LensPosition": (float(d_lo), float(d_hi), 1.0),
                                                      "AfMode": (0, 2, 0), "ExposureTime": (1, 1000000, 10000)}
            if stats_output:
                self.camera_controls["StatsOutputEnable"] = (False, True, False)
            self.controls: dict[str, Any] = {}
            self.config: dict | None = None
            self.started = False
            self.frame = 0

        def create_video_configuration(self, **kw: Any) -> dict:
            return {"use": "video", "main": {"size": (W, H), "format": "XBGR8888"}, "controls": {}}

        def create_still_configuration(self, **kw: Any) -> dict:
            return {"use": "still", "main": {"size": (W, H), "format": "BGR888"}, "controls": {}}

        def configure(self, config: dict) -> None:
            mod.calls.append(("configure", config["use"]))
            if self.started:
                raise RuntimeError("Camera must be stopped before configuring")
            self.config = config

        def camera_configuration(self) -> dict:
            return dict(self.config or {})

        def start(self) -> None:
            mod.calls.append(("start",))
            if self.config is None:
                raise RuntimeError("Camera has not been configured")
            self.started = True

        def stop(self) -> None:
            self.started = False

        def close(self) -> None:
            mod.calls.append(("close",))

        def set_controls(self, controls: dict) -> None:
            mod.calls.append(("set_controls", dict(controls)))
            for k in controls:
                if k not in self.camera_controls:
                    raise RuntimeError(f"Control {k} is not advertised by libcamera")
            self.controls.update(controls)
            if "LensPosition" in controls:  # af.cpp: clamp to the map's domain, map.eval -> int code
                d = min(max(float(controls["LensPosition"]), d_lo), d_hi)
                rig.lens.move_to(float(int(lm.to_code(d))))

        def _metadata(self) -> dict:
            f = rig.source.capture()  # the sensor: one frame at the lens's actual position
            mosaic = f.left + f.right  # the whole pixel: both photodiodes
            self.frame += 1
            md: dict[str, Any] = {"SensorTimestamp": int(f.timestamp_s * 1e9), "ExposureTime": 10000,
                                  "AnalogueGain": 1.0, "FrameDuration": 33333}
            if platform == "vc4":
                raw_vals = vc4_contrast(mosaic)
                regions = raw_vals // 1000                      # vc4.cpp: contrast_val[1][1] / 1000
                blob = pack_vc4_stats(raw_vals)
                name = "Bcm2835StatsOutput"
            else:
                raw_vals = pisp_foms(mosaic)
                regions = raw_vals >> np.uint64(20)             # pisp.cpp: foms[i] >> 20
                blob = pack_pisp_stats(raw_vals)
                name = "PispStatsOutput"
            md["FocusFoM"] = focus_fom(regions)
            if self.controls.get("StatsOutputEnable"):
                md[name] = blob
            if "LensPosition" in self.controls:
                md["LensPosition"] = float(min(max(float(self.controls["LensPosition"]), d_lo), d_hi))
            else:  # af.cpp sets a default lens position at start and reports it from the first frame on
                md["LensPosition"] = float(min(max(float(lm.to_dioptres(rig.lens.position)), d_lo), d_hi))
            return md

        def capture_metadata(self, wait: Any = None, signal_function: Any = None) -> Any:
            if not self.started:
                raise RuntimeError("Camera is not running")
            md = self._metadata()
            return Job(md) if wait is False else md

        def wait(self, job: Job, timeout: float | None = None) -> Any:
            return job.result

    mod.Picamera2 = Picamera2  # type: ignore[attr-defined]
    return mod
