"""A fake ``picamera2`` module for tests: the Picamera2 calls hil-af makes, at the library boundary.

Install it with ``mocker.patch.dict(sys.modules, {"picamera2": fake_picamera2_module(...)})``.
Raw frames are packed with hil_af.rawdecode's packers exactly as a Pi's
unicam/PiSP front end lays them out (CSI-2 packed rows padded to a 32-byte
stride, or 16-bit little-endian containers).
"""

from __future__ import annotations

import types
from typing import Any, Callable

import numpy as np


def fake_picamera2_module(*, raw_size: tuple[int, int] = (64, 32), fmt: str = "SRGGB10_CSI2P",
                          black16: int = 4096, stall: int = 0, lens_range: tuple[float, float, float] | None = (0.0, 15.0, 1.0),
                          image: Callable[[float, int], np.ndarray] | None = None) -> types.ModuleType:
    """A ``picamera2`` module whose ``Picamera2`` makes raw frames of ``raw_size`` (W, H).

    ``image(lens_dioptres, frame_no)`` -> uint16 [H, W] raw values (default: a
    ramp that shifts with the frame number); packed per ``fmt`` with
    hil_af.rawdecode's packers.  ``stall``: this many captures time out first
    (``wait`` raises TimeoutError).  ``lens_range``: the LensPosition control
    (min, max, default) or None for a fixed-focus module.  Every call is
    recorded in ``module.calls``.
    """
    from ..rawdecode import pack_raw10, pack_raw12

    mod = types.ModuleType("picamera2")
    mod.calls = []          # type: ignore[attr-defined]
    mod.instances = []      # type: ignore[attr-defined]
    mod.stall = stall       # type: ignore[attr-defined]
    bits = int("".join(c for c in fmt.split("_")[0] if c.isdigit()) or 16)

    def default_image(d: float, n: int) -> np.ndarray:
        W, H = raw_size
        base = (np.arange(W)[None, :] * 7 + np.arange(H)[:, None] * 3 + n) % (2 ** bits - 64)
        return (base + 64).astype(np.uint16)

    make_image = image or default_image

    class Job:
        def __init__(self, result: Any, stalled: bool):
            self.result, self.stalled = result, stalled

    class Request:
        def __init__(self, cam: "Picamera2", arr: np.ndarray, md: dict):
            self.cam, self.arr, self.md, self.released = cam, arr, md, False

        def make_array(self, name: str) -> np.ndarray:
            mod.calls.append(("make_array", name))
            if name != "raw":
                raise KeyError(name)
            return self.arr

        def get_metadata(self) -> dict:
            return dict(self.md)

        def release(self) -> None:
            self.released = True
            self.cam.outstanding -= 1

    class Picamera2:
        def __init__(self, camera_num: int = 0):
            mod.calls.append(("init", camera_num))
            mod.instances.append(self)
            self.camera_num = camera_num
            self.camera_controls = {"ExposureTime": (1, 1000000, 10000), "AnalogueGain": (1.0, 16.0, 1.0)}
            if lens_range is not None:
                self.camera_controls["LensPosition"] = lens_range
            self.controls: dict[str, Any] = {}
            self.config: dict[str, Any] | None = None
            self.started = False
            self.closed = False
            self.frame = 0
            self.outstanding = 0

        def create_still_configuration(self, raw: dict | None = None, buffer_count: int = 1, queue: bool = True,
                                       controls: dict | None = None):
            return {"use": "still", "raw": dict(raw or {}), "buffer_count": buffer_count, "queue": queue,
                    "controls": dict(controls or {})}

        def create_video_configuration(self, **kw: Any):
            return {"use": "video", "raw": {}, "controls": {}}

        def configure(self, config: dict) -> None:
            mod.calls.append(("configure", config["use"]))
            if self.started:
                raise RuntimeError("Camera must be stopped before configuring")
            self.config = config
            self.controls.update(config.get("controls", {}))

        def camera_configuration(self) -> dict:
            raw = dict(self.config["raw"]) if self.config else {}
            raw.setdefault("format", fmt)
            raw["size"] = tuple(raw.get("size", raw_size))
            w = raw["size"][0]
            f = raw["format"]
            if f.endswith("_CSI2P"):
                b = int("".join(c for c in f if c.isdigit()))
                row = (w + 3) // 4 * 5 if b == 10 else (w + 1) // 2 * 3
            else:
                row = 2 * w
            raw["stride"] = (row + 31) // 32 * 32
            return {"raw": raw}

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

        def set_controls(self, controls: dict) -> None:
            mod.calls.append(("set_controls", dict(controls)))
            if "LensPosition" in controls and "LensPosition" not in self.camera_controls:
                raise RuntimeError("Control LensPosition is not advertised by libcamera")
            self.controls.update(controls)

        def _metadata(self) -> dict:
            md = {"SensorTimestamp": 1_000_000_000 + self.frame * 33_333_333, "ExposureTime": 10000,
                  "AnalogueGain": 1.0, "SensorBlackLevels": [black16] * 4}
            if "LensPosition" in self.camera_controls:
                md["LensPosition"] = float(self.controls.get("LensPosition", self.camera_controls["LensPosition"][2]))
            return md

        def capture_request(self, wait: Any = None, flush: Any = None) -> Any:
            mod.calls.append(("capture_request", flush))
            if not self.started:
                raise RuntimeError("Camera is not running")
            if mod.stall > 0:  # type: ignore[attr-defined]
                mod.stall -= 1  # type: ignore[attr-defined]
                return Job(None, True)
            cfg = self.camera_configuration()["raw"]
            md = self._metadata()
            img = make_image(md.get("LensPosition", float("nan")), self.frame)
            f = cfg["format"]
            if f.endswith("_CSI2P"):
                packer = pack_raw10 if "10" in f else pack_raw12
                arr = packer(img, stride=cfg["stride"])
            else:
                rows = np.zeros((img.shape[0], cfg["stride"] // 2), dtype="<u2")
                rows[:, : img.shape[1]] = img
                arr = rows.view(np.uint8)
            self.frame += 1
            self.outstanding += 1
            req = Request(self, arr, md)
            return Job(req, False) if wait is False else req

        def capture_metadata(self, wait: Any = None) -> Any:
            if not self.started:
                raise RuntimeError("Camera is not running")
            self.frame += 1
            md = self._metadata()
            return Job(md, False) if wait is False else md

        def wait(self, job: Job, timeout: float | None = None) -> Any:
            if job.stalled:
                raise TimeoutError("fake: frame never arrived")
            return job.result

        def cancel_all_and_flush(self) -> None:
            mod.calls.append(("cancel_all_and_flush",))

    mod.Picamera2 = Picamera2  # type: ignore[attr-defined]
    return mod
