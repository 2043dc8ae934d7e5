"""A fake ``picamera2`` module for tests: the Picamera2 calls hil-af makes, at the library boundary.

Install it with ``mocker.patch.dict(sys.modules, {"picamera2": fake_picamera2_module(...)})``.
It behaves as the real stack does where hil-af depends on it, each fact
checked in the named source:

* **Properties** (picamera2 ``picamera2.py`` ``camera_properties``; libcamera
  ``src/libcamera/property_ids_draft.yaml``): ``Model`` (e.g. "imx708") and
  ``ColorFilterArrangement`` (0 RGGB, 1 GRBG, 2 GBRG, 3 BGGR, 5 MONO).
* **Raw stream** (libcamera ``src/libcamera/pipeline/rpi/pisp/pisp.cpp``
  ``platformValidate``): the raw size is forced to the sensor mode's size;
  on a Pi 5 (``platform="pisp"``) a CSI-2 packed request becomes
  ``<ORDER>_PISP_COMP1`` and an unpacked request of fewer than 16 bits
  becomes ``S<ORDER>16``.  The Bayer order is the sensor's.  16-bit PiSP
  raw holds the sensor's bits MSB-aligned; a Pi 4's unpacked ``SRGGB10``
  holds them LSB-aligned in 16-bit words (CSI-2 packed rows padded to a
  32-byte stride).
* **Controls** (picamera2 ``controls.py``): setting a control that
  ``camera_controls`` does not list raises ``RuntimeError("Control X is not
  advertised by libcamera")``.
* **Lens** (libcamera ``src/ipa/rpi/common/ipa_base.cpp`` and
  ``src/ipa/rpi/controller/rpi/af.cpp``, tuning
  ``src/ipa/rpi/pisp/data/imx708.json``): with a lens, the Af* controls
  (``AfMode`` ...) and ``LensPosition`` are advertised (``afmode_advertised=False`` models an older
  stack that did not); with an ``rpi.af`` algorithm (``af=True``) the
  LensPosition range is the tuning map's (0..15 dioptres for the IMX708) and
  in Manual mode a LensPosition request moves the IPA's target; the reported
  position ``fsmooth`` moves towards it by at most ``max_slew`` dioptres per
  frame (``updateLensPosition``, once when the control arrives and once per
  frame), and the metadata's ``LensPosition`` is that smoothed value.
  Without an AF algorithm (``af=False``: IMX519, IMX219/OV5647 + AD5398)
  the control is advertised as 0..32 but ignored ("no AF algorithm") and the
  metadata carries no ``LensPosition``.
* **Buffers** (picamera2 ``request.py`` and ``allocators/``; the model is
  ``fake_picamera2_buffers``): the camera owns ``buffer_count`` buffers (a
  still configuration's, 6 for a video one) and writes each frame into one
  that no request holds (DMA: no CPU time, so a buffer that already holds
  the very same ``image`` array is not rewritten); with every buffer held by
  the application no frame completes (the capture times out).
  ``MappedArray`` is a view of the buffer valid only in its context and only
  while the request is held; ``make_array``/``make_buffer`` copy it whole.
"""

from __future__ import annotations

import types
from typing import Any, Callable

import numpy as np

ORDERS = ("RGGB", "GRBG", "GBRG", "BGGR")   # ColorFilterArrangement 0..3
MONO = 5


def _bits(fmt: str) -> int:
    digits = "".join(c for c in fmt.split("_")[0] if c.isdigit())
    return int(digits or 16)


def fake_picamera2_module(*, raw_size: tuple[int, int] = (64, 32), fmt: str = "SRGGB10_CSI2P",
                          black16: int = 4096, stall: int = 0, lens_range: tuple[float, float, float] | None = (0.0, 15.0, 1.0),
                          image: Callable[[float, int], np.ndarray] | None = None, model: str = "imx708",
                          cfa: int = 0, platform: str = "vc4", modes: list[tuple[int, int]] | None = None,
                          af: bool = True, afmode_advertised: bool = True, max_slew: float | None = None,
                          frame_us: int = 33_333, allocator: str = "dma") -> types.ModuleType:
    """A ``picamera2`` module whose ``Picamera2`` makes raw frames of the sensor mode's size.

    ``raw_size`` (W, H): the sensor mode (``modes``: several; the smallest
    that covers a requested size is chosen, else the largest).  ``fmt``: the
    sensor's native raw format (bit depth).  ``image(lens_dioptres,
    frame_no)`` -> uint16 [H, W] values at the sensor's bit depth.
    ``stall``: this many captures time out first.  ``lens_range``: the
    LensPosition (min, max, default) with an AF algorithm, or None for a
    fixed-focus module.  ``max_slew``: dioptres per frame (None: unlimited).
    ``allocator``: ``"dma"`` (picamera2's default DmaAllocator) or ``"legacy"``
    (LibcameraAllocator's per-access mmap: a view kept past its context raises).
    Every call is recorded in ``module.calls``.
    """
    from ..rawdecode import pack_raw10, pack_raw12
    from .fake_picamera2_buffers import buffer_classes

    mod = types.ModuleType("picamera2")
    mod.calls = []          # type: ignore[attr-defined]
    mod.instances = []      # type: ignore[attr-defined]
    mod.stall = stall       # type: ignore[attr-defined]
    sensor_bits = _bits(fmt)
    order = ORDERS[cfa] if cfa < 4 else "R"
    sensor_modes = list(modes or [raw_size])
    bufs = buffer_classes(mod.calls, allocator)  # type: ignore[attr-defined]
    Buffer, Request, MappedArray = bufs.Buffer, bufs.Request, bufs.MappedArray

    def default_image(d: float, n: int, W: int, H: int) -> np.ndarray:
        base = (np.arange(W)[None, :] * 7 + np.arange(H)[:, None] * 3 + n) % (2 ** sensor_bits - 64)
        return (base + 64).astype(np.uint16)

    def make_image(d: float, n: int, W: int, H: int) -> np.ndarray:
        return image(d, n) if image is not None else default_image(d, n, W, H)

    def pick_mode(size: tuple[int, int] | None) -> tuple[int, int]:
        if size is None:
            return max(sensor_modes, key=lambda s: s[0] * s[1])
        fits = [m for m in sensor_modes if m[0] >= size[0] and m[1] >= size[1]]
        return min(fits, key=lambda s: s[0] * s[1]) if fits else max(sensor_modes, key=lambda s: s[0] * s[1])

    def validate_format(requested: str | None) -> str:
        """pisp.cpp platformValidate: what the raw stream's format becomes."""
        req = requested or fmt
        packed = req.endswith("_CSI2P")
        bits = _bits(req)
        prefix = "R" if order == "R" else "S" + order
        if platform == "pisp":
            if packed:
                return ("MONO" if order == "R" else order) + "_PISP_COMP1"
            return f"{prefix}16"
        return f"{prefix}{bits}" + ("_CSI2P" if packed else "")

    class Job:
        def __init__(self, result: Any, stalled: bool):
            self.result, self.stalled = result, stalled

    class Picamera2:
        def __init__(self, camera_num: int = 0):
            mod.calls.append(("init", camera_num))
            mod.instances.append(self)
            self.camera_num = camera_num
            self.camera_properties = {"Model": model, "ColorFilterArrangement": cfa,
                                      "PixelArraySize": max(sensor_modes, key=lambda s: s[0] * s[1])}
            self.camera_controls: dict[str, Any] = {"ExposureTime": (1, 1000000, 10000),
                                                    "AnalogueGain": (1.0, 16.0, 1.0)}
            if lens_range is not None:
                if afmode_advertised:
                    self.camera_controls["AfMode"] = (0, 2, 0)
                self.camera_controls["LensPosition"] = lens_range if af else (0.0, 32.0, 1.0)
            self.controls: dict[str, Any] = {}
            self.af_mode = 0                      # af.cpp: mode_ starts Manual
            self.ftarget = self.fsmooth = float(lens_range[2]) if lens_range else float("nan")
            self.config: dict[str, Any] | None = None
            self.started = False
            self.closed = False
            self.frame = 0
            self.outstanding = 0
            self.buffers: list[Any] = []  # bufs.Buffer (a class made per fake module)

        def create_still_configuration(self, raw: dict | None = None, buffer_count: int = 1, queue: bool = True,
                                       controls: dict | None = None):
            return {"use": "still", "raw": dict(raw or {}), "buffer_count": buffer_count, "queue": queue,
                    "controls": dict(controls or {})}

        def create_video_configuration(self, buffer_count: int = 6, **kw: Any):
            return {"use": "video", "raw": {}, "controls": {}, "buffer_count": buffer_count}

        def configure(self, config: dict) -> None:
            mod.calls.append(("configure", config["use"]))
            if self.started:
                raise RuntimeError("Camera must be stopped before configuring")
            self.config = config
            self.set_controls(config.get("controls", {}))
            raw = self.camera_configuration()["raw"]  # DmaAllocator.allocate: buffer_count buffers, mapped
            for b in self.buffers:
                b.close()
            self.buffers = [Buffer(raw["stride"] * raw["size"][1]) for _ in range(config.get("buffer_count", 1))]

        def camera_configuration(self) -> dict:
            req = dict(self.config["raw"]) if self.config else {}
            f = validate_format(req.get("format"))
            w, h = pick_mode(tuple(req["size"]) if "size" in req else None)
            if f.endswith("_CSI2P"):
                row = (w + 3) // 4 * 5 if _bits(f) == 10 else (w + 1) // 2 * 3
            else:
                row = 2 * w                         # 16-bit words (and PiSP compressed: 8 bits a pixel x 2)
            return {"raw": {"format": f, "size": (w, h), "stride": (row + 31) // 32 * 32}}

        def start(self) -> None:
            mod.calls.append(("start",))
            if self.config is None:
                raise RuntimeError("Camera has not been configured")
            self.started = True

        def stop(self) -> None:
            mod.calls.append(("stop",))
            self.started = False

        def close(self) -> None:
            mod.calls.append(("close",))
            self.closed = True
            for b in self.buffers:
                b.close()
            self.buffers = []

        def set_controls(self, controls: dict) -> None:
            mod.calls.append(("set_controls", dict(controls)))
            for name in controls:
                if name not in self.camera_controls:
                    raise RuntimeError(f"Control {name} is not advertised by libcamera")
            self.controls.update(controls)
            if not af:
                return                              # ipa_base.cpp: "no AF algorithm": ignored
            if "AfMode" in controls:
                self.af_mode = int(controls["AfMode"])
            if "LensPosition" in controls and self.af_mode == 0:
                lo, hi = self.camera_controls["LensPosition"][:2]
                self.ftarget = min(max(float(controls["LensPosition"]), lo), hi)
                self._slew()

        def _slew(self) -> None:
            """af.cpp updateLensPosition: fsmooth moves at most max_slew towards ftarget."""
            if max_slew is None:
                self.fsmooth = self.ftarget
            else:
                self.fsmooth = min(max(self.ftarget, self.fsmooth - max_slew), self.fsmooth + max_slew)

        def _next_frame_metadata(self) -> dict:
            if af and lens_range is not None:
                self._slew()                        # af.cpp prepare(): once per frame
            md = {"SensorTimestamp": 1_000_000_000 + self.frame * frame_us * 1000, "ExposureTime": 10000,
                  "AnalogueGain": 1.0, "SensorBlackLevels": [black16] * 4, "FrameDuration": frame_us}
            if af and lens_range is not None:
                md["LensPosition"] = float(self.fsmooth)
            self.frame += 1
            return md

        def capture_request(self, wait: Any = None, flush: Any = None) -> Any:
            mod.calls.append(("capture_request", flush))
            if not self.started:
                raise RuntimeError("Camera is not running")
            if mod.stall > 0:  # type: ignore[attr-defined]
                mod.stall -= 1  # type: ignore[attr-defined]
                return Job(None, True)
            free = [b for b in self.buffers if not b.held]
            if not free:  # every buffer held by the application: no request can complete
                return Job(None, True)
            cfg = self.camera_configuration()["raw"]
            (w, h), f = cfg["size"], cfg["format"]
            md = self._next_frame_metadata()
            lens = self.fsmooth if (af and lens_range is not None) else float("nan")
            img = make_image(lens, self.frame - 1, w, h)
            buf = free[0]
            self.buffers.remove(buf)
            self.buffers.append(buf)        # the camera cycles through its queued buffers in order
            if buf.image is not img:        # the frame lands in the buffer (DMA: no CPU time on a Pi)
                buf.data[:] = self._raw_bytes(img, f, cfg).reshape(-1)
                buf.image = img
            buf.held = True
            self.outstanding += 1
            req = Request(self, buf, cfg, md)
            return Job(req, False) if wait is False else req

        def _raw_bytes(self, img: np.ndarray, f: str, cfg: dict) -> np.ndarray:
            (w, h), stride = cfg["size"], cfg["stride"]
            if f.endswith("_CSI2P"):
                return (pack_raw10 if _bits(f) == 10 else pack_raw12)(img, stride=stride)
            if "PISP_COMP" in f:
                return np.zeros((h, stride), np.uint8)  # compressed: hil-af must never decode it
            rows = np.zeros((h, stride // 2), dtype="<u2")
            rows[:, :w] = img << (16 - sensor_bits) if platform == "pisp" else img
            return rows.view(np.uint8)

        def capture_metadata(self, wait: Any = None) -> Any:
            if not self.started:
                raise RuntimeError("Camera is not running")
            md = self._next_frame_metadata()
            return Job(md, False) if wait is False else md

        def wait(self, job: Job, timeout: float | None = None) -> Any:
            if job.stalled:
                raise TimeoutError("fake: frame never arrived")
            return job.result

        def cancel_all_and_flush(self) -> None:
            mod.calls.append(("cancel_all_and_flush",))

    mod.Picamera2 = Picamera2  # type: ignore[attr-defined]
    mod.MappedArray = MappedArray  # type: ignore[attr-defined]
    mod.CompletedRequest = Request  # type: ignore[attr-defined]
    return mod
