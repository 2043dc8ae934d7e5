"""A rig double for the controller's unit tests: a lens that goes where it is sent and a source
whose frames carry an ISP focus figure (metadata ``focus_fom``) given by a curve of the lens position.

Everything the controller reads from a device is set here, at the device boundary: the lens
position, the frame's views (flat 500 DN of a 1023 white level: a well exposed frame) and its
focus statistics (``controller.focus_stats.frame_contrast`` reads ``focus_fom``), so a focus
cycle's samples, moves and result follow from the curve by hand.
"""

from __future__ import annotations

import numpy as np

from hil_af.clock import SimClock
from hil_af.drivers.base import Rig
from hil_af.errors import DeviceError
from hil_af.frames import DualPixelFrame

HW = (32, 32)
WHITE = 1023.0


def views(value: float = 500.0, hw=HW) -> tuple[np.ndarray, np.ndarray]:
    return np.full(hw, value, np.float32), np.full(hw, value, np.float32)


class FakeLens:
    """Takes every target at once (``short``: stops that many codes below it, a stalled VCM)."""

    def __init__(self, lo: float = 0.0, hi: float = 960.0, position: float = 0.0, settle_time_s: float = 0.01,
                 settle_tau_s: float | None = None, short: float = 0.0):
        self.range = (lo, hi)
        self.position = float(position)
        self.settle_time_s = settle_time_s
        if settle_tau_s is not None:
            self.settle_tau_s = settle_tau_s
        self.short = short
        self.commands: list[float] = []
        self.fail: str | None = None

    def move_to(self, p: float) -> None:
        if self.fail:
            raise DeviceError(self.fail)
        self.commands.append(float(p))
        self.position = float(p) - self.short

    def close(self) -> None:
        pass


class CurveSource:
    """Frames exposed at the lens position, ``focus_fom`` (or ``focus_regions``) = ``curve(position)``.

    ``script``: per capture, in order, an exception to raise or a (left, right) pair of views to
    return instead of the flat ones; after it runs out, good frames."""

    sensor_hw = HW

    def __init__(self, lens: FakeLens, curve, script=()):
        self.lens, self.curve = lens, curve
        self.script = list(script)
        self.exposed_at: list[float] = []
        self.report = lambda p: p  # the lens position the frame reports (its metadata), native units

    def capture(self) -> DualPixelFrame:
        p = float(self.lens.position)
        self.exposed_at.append(p)
        left, right = views()
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, BaseException):
                raise item
            left, right = item
        v = self.curve(p)  # a number: focus_fom; a [rows, cols] grid: focus_regions over the view
        md = {"focus_regions": np.asarray(v, dtype=np.float64)} if np.ndim(v) == 2 else {"focus_fom": float(v)}
        return DualPixelFrame(left, right, lens_position=self.report(p), white_level=WHITE, metadata=md)

    def close(self) -> None:
        pass


class RoiCurveSource(CurveSource):
    """A CurveSource that can also decode RoIs alone (``capture_roi_frame``, as picamera2:// can);
    ``kinds`` records "roi" or "whole" per frame."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.kinds: list[str] = []

    def capture(self) -> DualPixelFrame:
        self.kinds.append("whole")
        return super().capture()

    def capture_roi_frame(self, rois):
        from hil_af.roiframe import RoiFrame

        self.kinds.append("roi")
        f = super().capture()
        return RoiFrame(lambda keys: (np.stack([f.left[y:y + h, x:x + w] for x, y, w, h in keys]),
                                      np.stack([f.right[y:y + h, x:x + w] for x, y, w, h in keys])),
                        rois, HW, lens_position=f.lens_position, white_level=f.white_level, metadata=f.metadata)


def rig(curve=lambda p: 1.0, n: int = 49, lo: float = 0.0, hi: float = 960.0, position: float = 0.0,
        script=(), profile=None, lens_map=None, roi_source: bool = False, **lens_kw) -> Rig:
    """A rig of FakeLens + CurveSource (RoiCurveSource with ``roi_source``) on a SimClock; ``n`` AF
    slices over [lo, hi]."""
    lens = FakeLens(lo, hi, position, **lens_kw)
    source = (RoiCurveSource if roi_source else CurveSource)(lens, curve, script)
    return Rig(source=source, lens=lens, clock=SimClock(), profile=profile or {},
               lens_map=lens_map, af_positions=np.linspace(lo, hi, n))


def gaussian(peak: float, sigma: float, floor: float = 0.0):
    """Contrast curve of the lens position: ``floor + exp(-(p - peak)^2 / (2 sigma^2))``."""
    return lambda p: floor + float(np.exp(-0.5 * ((p - peak) / sigma) ** 2))


N_SLICES = 49  # the shipped models' sweep (models/card.json n_slices)


def logits(k: int, c: float) -> np.ndarray:
    """Logits float32 [1, 49] whose softmax puts ``c`` at slice ``k`` and (1 - c) / 2 ten slices either
    side: decode's mean is ``k`` and its confidence (mass within +-1 slice) about ``c``."""
    p = np.full(N_SLICES, 1e-9)
    p[k] = c
    p[k - 10] += (1 - c) / 2
    p[k + 10] += (1 - c) / 2
    return np.log(p)[None].astype(np.float32)


def install_network(monkeypatch):
    """Answer the PE models at ``onnxruntime.InferenceSession.run``: per call, ``plan.pop(0)`` is
    (slice in focus, confidence); ``seen`` gets (model file name, lens slice read from the lens-PE
    channel 4 = k / (n - 1)) per call."""
    import os

    import onnxruntime as ort

    plan: list[tuple[int, float]] = []
    seen: list[tuple[str, int]] = []

    def run(self, output_names, feeds):
        x = next(iter(feeds.values()))
        seen.append((os.path.basename(str(self._model_path)), round(float(x[0, 4, 0, 0]) * (N_SLICES - 1))))
        return [logits(*plan.pop(0)).repeat(x.shape[0], 0)]

    monkeypatch.setattr(ort.InferenceSession, "run", run)
    return plan, seen
