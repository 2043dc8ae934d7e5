"""The AF controller: methods plugged into one state machine.

States are Picamera2's (Idle, Scanning, Focused, Failed).  Modes: ``manual``
(moves only on request), ``single`` (a focus cycle on request) and
``continuous`` (``continuous_step`` watches the RoIs' contrast and re-runs a
cycle when it changes beyond ``retrigger_change`` for ``retrigger_frames``
frames in a row, like libcamera's retrigger).  The controller owns time
through the rig's clock, so on the simulator it runs faster than real time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..drivers.base import Rig, checked_position
from ..errors import BadInput, FocusFailed
from ..frames import centre_roi, validate_rois
from .base import AFState, FocusResult, Limits
from .focus_stats import frame_contrast
from .methods import RUNNERS, SESSION_SETTLE, MethodConfig, check_method
from .request import request_options
from .roi_path import grab
from .session import FocusSession

MODES = ("manual", "single", "continuous")


def _profile_path(rig: Rig, key: str) -> str | None:
    """A file named in the rig profile's [calibration] table, resolved beside the profile."""
    value = rig.profile.get("calibration", {}).get(key)
    if not value:
        return None
    p = Path(value)
    if not p.is_absolute() and "_path" in rig.profile:
        p = Path(rig.profile["_path"]).parent / p
    if not p.is_absolute() and not p.exists():
        from ..paths import REPO_ROOT

        p = REPO_ROOT / value
    return str(p)


class Estimators:
    """Lazily loaded estimators shared by all cycles of one controller."""

    def __init__(self, controller: "Controller"):
        self.c = controller
        self._pe: dict[int, Any] = {}
        self._pdaf: dict[Any, Any] = {}
        self.config = controller.config

    def pe(self, step: int):
        if step not in self._pe:
            from ..model.inference import PEPredictor

            ff = None
            if self.c.pe_flatfield:  # a flat field given for this rig overrides the model's own
                from ..calibration.flatfield import load_flatfield

                ff = load_flatfield(self.c.pe_flatfield)
            self._pe[step] = PEPredictor(self.c.model_dir, step=step, threads=self.c.threads, flatfield=ff)
        return self._pe[step]

    def has_calibration(self) -> bool:
        return self.c.calibration is not None

    def pdaf(self, global_fit: bool | str):
        """PdafPredictor of the per-position (False), global (True) or ZNCC ("zncc") calibration."""
        if global_fit not in self._pdaf:
            if global_fit == "zncc":
                path = self.c.zncc_calibration
                if path is None:
                    raise BadInput("method zncc2 needs a ZNCC calibration (--zncc-calibration CAL.json from `hil-af "
                                   "calibrate fit --method zncc --max-shift 6 --refine parabola`, or [calibration] zncc)")
            else:
                path = self.c.global_calibration if global_fit else self.c.calibration
            if path is None:
                which = "a global calibration (--global-calibration or [calibration] global)" if global_fit else \
                    "a calibration (--calibration CAL.json or [calibration] per_position in the rig profile)"
                raise BadInput(f"method pdaf{'-global' if global_fit else ''} needs {which}")
            from ..calibration.predict import PdafPredictor

            # zncc2 is the plain reference: the flat field its calibration recorded (none), not the rig's
            ff = None if global_fit == "zncc" else self.c.flatfield
            self._pdaf[global_fit] = PdafPredictor.from_file(path, flatfield_path=ff)
        return self._pdaf[global_fit]

    def view_hw(self) -> tuple[int, int]:
        return self.c.view_hw()

    def contrast(self, frame, rois) -> np.ndarray:
        """Focus measure of each RoI, float64 [P]: the ISP's focus statistics when the frame carries
        them (``focus_stats.frame_contrast``), else ``contrast.roi_contrast`` of the views."""
        return frame_contrast(frame, rois, self.view_hw())


class Controller:
    """Autofocus on one rig.

    method: default AF method (docs/cli.md). calibration / global_calibration:
    CAL.json paths for pdaf / pdaf-global (default: the rig profile's
    [calibration] per_position / global); zncc_calibration: for zncc2
    ([calibration] zncc). model_dir: ONNX models (default:
    the shipped models/). flatfield: FLAT.npz applied before PDAF.
    roi_decode: decode only the AF windows of each frame where the source can
    (``roi_path``; the same results, a fraction of the per-frame time); False:
    whole frames always.
    """

    def __init__(self, rig: Rig, method: str = "pe2", limits: Limits | None = None,
                 calibration: str | None = None, model_dir: str | None = None,
                 flatfield: str | None = None, global_calibration: str | None = None,
                 config: MethodConfig | None = None, threads: int = 1, n_slices: int | None = None,
                 retrigger_change: float = 0.25, retrigger_frames: int = 3,
                 retrigger_defocus_slices: float = 1.5, zncc_calibration: str | None = None,
                 hold_slices: float = 1.0, roi_decode: bool = True):
        self.rig = rig
        self.roi_decode = roi_decode
        self.method = check_method(method)
        self.limits = limits or Limits()
        self.config = config or MethodConfig()
        self.calibration = calibration or _profile_path(rig, "per_position")
        self.global_calibration = global_calibration or _profile_path(rig, "global")
        self.zncc_calibration = zncc_calibration or _profile_path(rig, "zncc")
        self.flatfield = flatfield or _profile_path(rig, "flatfield")
        self.pe_flatfield = flatfield  # only an explicit one reaches the model (else: the model's own, if any)
        self.model_dir = model_dir
        self.threads = threads
        self.n_slices = n_slices
        self.state = AFState.IDLE
        self.mode = "single"
        self.last: FocusResult | None = None
        self.rois: np.ndarray | None = None
        self.weights: np.ndarray | None = None
        self.retrigger_change = retrigger_change
        self.retrigger_frames = retrigger_frames
        self.retrigger_defocus_slices = retrigger_defocus_slices
        self.hold_slices = hold_slices
        self._ref_contrast: float | None = None
        self._changed_frames = 0
        self._view_hw: tuple[int, int] | None = None
        self.estimators = Estimators(self)

    # -- geometry ---------------------------------------------------------
    def view_hw(self) -> tuple[int, int]:
        """(H, W) of the source's views: ``source.view_hw`` where the views are a crop, else ``sensor_hw``."""
        if self._view_hw is None:
            src = self.rig.source
            hw = getattr(src, "view_hw", None) or src.sensor_hw
            self._view_hw = (int(hw[0]), int(hw[1]))
        return self._view_hw

    def slice_positions(self) -> np.ndarray:
        return self.rig.slice_positions(self.n_slices)

    def _windows(self, rois: Any, weights: Any) -> tuple[np.ndarray, np.ndarray]:
        if rois is None:
            rois = self.rois if self.rois is not None else centre_roi(self.view_hw())
        r = validate_rois(rois, self.view_hw(), "roi")
        w = np.ones(len(r)) if weights is None else np.asarray(weights, dtype=np.float64)
        if w.shape != (len(r),) or not np.all(np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise BadInput(f"weights must be {len(r)} finite non-negative numbers with a positive sum, got {weights!r}")
        return r, w / w.sum()

    def set_windows(self, rois: Any, weights: Any = None) -> None:
        """Set the default AF windows (like libcamera AfWindows) used when focus() gets none."""
        self.rois, self.weights = self._windows(rois, weights)

    # -- commands ---------------------------------------------------------
    def focus(self, rois: Any = None, method: str | None = None, weights: Any = None, *,
              timeout_s: float | None = None, af_range: str | None = None, start: float | None = None,
              hint: float | None = None) -> FocusResult:
        """One AF cycle; never raises for a focus failure (state Failed, ``reason`` says why).

        timeout_s: the cycle's time budget in seconds (default ``limits.time_budget_s``);
        af_range: near | normal | full (``af_range.range_positions``; default the rig's AF slices);
        start: native lens position to move to before the search; hint: a defocus
        estimate (native units) that ``cdaf-fast`` starts its walk from.
        Bad values raise BadInput before the lens moves.
        """
        name = check_method(method or self.method)
        if weights is None and rois is None and self.weights is not None:
            weights = self.weights
        r, w = self._windows(rois, weights)
        cycle = request_options(self, name, timeout_s, af_range, start)
        session = FocusSession(self.rig, cycle.limits, cycle.positions, settle=SESSION_SETTLE.get(name, "lens"),
                               rois=r if self.roi_decode else None)
        session.hint = hint  # type: ignore[attr-defined]
        self.state = AFState.SCANNING
        reason = fallback = None
        confidence = None
        try:
            if cycle.start is not None:
                session.move_to(cycle.start)
            out = RUNNERS[name](session, self.estimators, r, w)
            session.move_to(out.target)
            session.verify()  # one frame after the final move: the lens is where we sent it
            state, confidence, fallback = AFState.FOCUSED, out.confidence, out.fallback
        except FocusFailed as e:
            state, reason = AFState.FAILED, e.reason
        pos = float(self.rig.lens.position)
        result = FocusResult(
            state=state, position=pos, method=name, captures=session.captures, moves=session.moves,
            verify_frames=session.verify_frames,
            elapsed_s=round(session.elapsed_s(), 6),
            dioptres=float(self.rig.lens_map.to_dioptres(pos)) if self.rig.lens_map else None,
            slice_index=session.nearest_slice(pos), confidence=confidence, reason=reason, fallback=fallback,
            trace=session.trace,
        )
        result.compute_ms_per_step = 1000 * session.compute_s / max(session.compute_steps, 1)  # type: ignore[attr-defined]
        result.compute_steps = session.compute_steps  # type: ignore[attr-defined]  # estimator steps timed
        self.state = state
        self.last = result
        if state == AFState.FOCUSED:
            self._ref_contrast = None
            self._changed_frames = 0
        return result

    def set_mode(self, mode: str) -> None:
        if mode not in MODES:
            raise BadInput(f"unknown AF mode {mode!r}; known modes: {', '.join(MODES)}")
        self.mode = mode
        if mode == "manual":
            self.state = AFState.IDLE

    def move(self, position: float) -> float:
        """Manual move to ``position`` (native units); BadInput when outside the lens range."""
        p = checked_position(position, *self.rig.lens.range, "manual move", "lens range")
        self.rig.lens.move_to(p)
        self.state = AFState.IDLE
        return p

    def continuous_step(self) -> FocusResult | None:
        """One iteration of continuous AF; returns a FocusResult when a cycle ran.

        Re-triggers only when, for ``retrigger_frames`` frames in a row, the windows'
        contrast differs from its reference (the first frame after the last cycle)
        by more than ``retrigger_change`` (relative), or, with a PDAF calibration,
        the measured defocus exceeds ``retrigger_defocus_slices``; a change that
        does not hold resets the count.  Every cycle, Focused or Failed, takes a
        new reference, so a scene without a peak is not scanned again and again;
        and a re-triggered cycle whose peak is within ``hold_slices`` of the lens
        position it started from leaves the lens there (no stepping around a peak).
        """
        if self.mode != "continuous":
            return None
        if self.last is None:
            return self._continuous_cycle()
        r, w = self._windows(None, None)
        frame = grab(self.rig.source, r if self.roi_decode else None)
        c = float(np.dot(w, self.estimators.contrast(frame, r)))
        if self._ref_contrast is None:
            self._ref_contrast = c
            return None
        changed = abs(c - self._ref_contrast) / max(self._ref_contrast, 1e-9) > self.retrigger_change
        if not changed and self.estimators.has_calibration():
            est = self.estimators.pdaf(False).predict(frame, r)
            ok = np.asarray(est.confidence) >= self.config.pdaf_min_confidence
            if np.any(ok):
                spacing = float(np.median(np.abs(np.diff(self.slice_positions()))))
                defocus = float(np.dot(w[ok], np.abs(est.defocus)[ok]) / max(w[ok].sum(), 1e-12))
                changed = defocus > self.retrigger_defocus_slices * spacing
        self._changed_frames = self._changed_frames + 1 if changed else 0
        if self._changed_frames >= self.retrigger_frames:
            return self._continuous_cycle()
        return None

    def _continuous_cycle(self) -> FocusResult:
        before = float(self.rig.lens.position)
        focused_before = self.last is not None and self.last.state == AFState.FOCUSED
        res = self.focus()
        spacing = float(np.median(np.abs(np.diff(self.slice_positions()))))
        if (focused_before and res.state == AFState.FOCUSED
                and abs(res.position - before) <= self.hold_slices * spacing):
            self.rig.lens.move_to(before)  # same peak: stay where the lens was
            res.position = before
            res.reason = "held: peak within hold_slices of the previous focus"
        self._ref_contrast = None  # the next frame is the new reference, whatever the outcome
        self._changed_frames = 0
        return res

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state.value, "mode": self.mode, "method": self.method,
            "position": float(self.rig.lens.position), "range": list(self.rig.lens.range),
            "last": self.last.to_json() if self.last else None,
        }
