"""The AF methods of docs/cli.md, each a function of a ``FocusSession``.

Every method reads only its RoIs (and windows around them), so on a source
that can decode windows alone the session's frames are ``RoiFrame``s
(``roi_path``), whole ``DualPixelFrame``s elsewhere; the estimators take both.

Every method returns a ``MethodOutcome`` (final target in native units and a
confidence in [0, 1]) or raises ``FocusFailed`` with the reason.  Estimators
are pure (``hil_af.pdaf`` via ``PdafPredictor``, the ONNX models via
``PEPredictor``); all device traffic goes through the session.

- ``pe``:   capture -> step-1 model -> move.
- ``pe2``:  capture -> step-1 -> move -> capture -> step-2 -> move (default).
- ``pdaf`` / ``pdaf-global``: capture -> disparity -> calibrated target ->
  move, repeated until the predicted move is below ``pdaf_stop_slices``.
- ``pdaf-loop``: the libcamera-style baseline: every frame, move by the
  globally calibrated defocus (phase x gain), slew-limited to
  ``loop_max_slew_slices`` per frame, until the step is below
  ``pdaf_stop_slices`` (several frames, no per-position calibration).
- ``zncc2``: the simple classical reference: plain ZNCC block matching (+-6 px,
  parabolic subpixel) through one linear fit per RoI position (a calibration
  fitted with ``calibrate fit --method zncc --max-shift 6 --refine parabola``),
  exactly two steps: capture -> move -> capture -> move, no confidence gate.
- ``cdaf``: contrast search (``contrast.contrast_search``).
- ``cdaf-libcamera``: libcamera rpi.af's coarse/fine scan, frame for frame
  (``libcamera_af``), the baseline for contrast AF.
- ``cdaf-fast``: coarse bracketing + log-parabola refinement, settling only
  as long as the actuator needs (``cdaf_fast``).
- ``hybrid``: pe2, falling back to pdaf (if calibrated) and then to contrast
  search when the dual-pixel confidence is low; a textureless RoI finally
  (no contrast peak of its own) follows, in the same scan, a window three
  times its size.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from ..errors import BadInput, FocusFailed
from ..pdaf import windows_structure, windows_structure_at_least
from .cdaf_fast import run_cdaf_fast
from .libcamera_af import run_cdaf_libcamera
from .contrast import contrast_search
from .roi_path import pe_predict

METHODS = ("pe", "pe2", "pdaf", "pdaf-global", "cdaf", "hybrid", "pdaf-loop", "zncc2", "cdaf-libcamera", "cdaf-fast")
CONTRAST_METHODS = ("cdaf", "cdaf-libcamera", "cdaf-fast")  # the methods that need no dual-pixel views
# how a method's session waits after a move (FocusSession ``settle``); others: the lens's settle_time_s
SESSION_SETTLE = {"cdaf-libcamera": "frames", "cdaf-fast": "model"}


@dataclass
class MethodOutcome:
    target: float
    confidence: float
    fallback: str | None = None


@dataclass
class MethodConfig:
    """Tunables of the methods (dimensionless unless a unit is named)."""

    min_confidence: float | None = None  # pe/pe2: below this the result is Failed; None: the model card's fitted value (pe_min_confidence)
    pe_default_min_confidence: float = 0.2  # pe/pe2 where the card has no fitted value (older models)
    pe_min_structure: float = 0.05      # pe/pe2: a RoI whose views share less structure than this gets confidence 0 (views_structure)
    hybrid_threshold: float = 0.35      # hybrid: step-1 confidence below this -> fallback
    pdaf_min_confidence: float = 0.2    # pdaf: below this the disparity is not trusted
    pdaf_stop_slices: float = 0.5       # pdaf: stop when the predicted move is below this many slices
    pdaf_max_iters: int = 8
    loop_max_slew_slices: float = 8.0   # pdaf-loop: largest step per frame (libcamera maxSlew ~ 2 dioptres)
    loop_max_frames: int = 12


def combine(values: np.ndarray, weights: np.ndarray, confidence: np.ndarray) -> tuple[float, float]:
    """Weighted median of per-RoI ``values`` (weights x confidence) and the weighted mean confidence."""
    w = np.asarray(weights, dtype=np.float64) * np.clip(np.asarray(confidence, dtype=np.float64), 1e-6, None)
    conf = float(np.dot(weights, confidence) / max(np.sum(weights), 1e-12))
    if len(values) == 1:
        return float(values[0]), conf
    order = np.argsort(values)
    cw = np.cumsum(w[order])
    k = int(np.searchsorted(cw, 0.5 * cw[-1]))
    return float(np.asarray(values)[order][min(k, len(values) - 1)]), conf


def views_structure(frame, rois) -> np.ndarray:
    """Per RoI, how much structure the two views share: the classical correlation confidence
    (hil_af.pdaf.estimate, xcorr +-8 px: peak ZNCC x uniqueness x texture x saturation), float64 [P]
    in 0..1.  About 0 where the RoI is flat (sensor noise only: nothing to measure a disparity
    from); on the held-out sim cameras' test stacks its 0.1 percentile is 0.15."""
    # the confidence comes from the integer-shift scores, so hil_af.pdaf.structure skips the
    # disparity's sub-pixel refinement (the same values as estimate's confidence)
    return windows_structure(frame.patches, rois, max_shift=8, white_level=frame.white_level)


def views_have_structure(frame, rois, min_structure: float) -> np.ndarray:
    """``views_structure(frame, rois) >= min_structure``, bool [P], the same decisions for less work
    (hil_af.pdaf.structure_at_least: a one-shift lower bound settles most textured RoIs without the
    +-8 px search; benchmarks/bench_decode.py ``--af-step``)."""
    return windows_structure_at_least(frame.patches, rois, min_structure, max_shift=8, white_level=frame.white_level)


def _pe_step(session, predictor, rois, weights, min_structure: float = 0.0):
    """One capture + model prediction: (combined slice, confidence, frame).  RoIs whose views share
    less structure than ``min_structure`` (``views_structure``) get confidence 0: a network asked
    about a flat patch still answers, and can answer confidently (its lens- and RoI-PE priors), so
    the controller does not take its word where the views hold nothing to measure."""
    frame = session.capture()
    k_now = session.nearest_slice(frame.lens_position if np.isfinite(frame.lens_position) else None)
    with session.compute():
        pred = pe_predict(predictor, frame, rois, k_now, len(session.positions))
        confidence = np.asarray(pred.confidence, dtype=np.float64)
        if min_structure > 0:
            confidence = np.where(views_have_structure(frame, rois, min_structure), confidence, 0.0)
    k, conf = combine(np.asarray(pred.index, dtype=np.float64), weights, confidence)
    session.trace.append({"t": session.elapsed_s(), "predict_slice": k, "confidence": conf, "from_slice": k_now})
    return k, conf, frame


def pe_min_confidence(ctx, predictor, method: str) -> float:
    """The confidence below which ``method`` ("pe" or "pe2") reports Failed: MethodConfig.min_confidence
    when set, else the value fitted on the model's held-out sweeps at training (card ``controller``,
    hil_af.model.recipe.confidence_thresholds), else MethodConfig.pe_default_min_confidence."""
    if ctx.config.min_confidence is not None:
        return float(ctx.config.min_confidence)
    block = (getattr(predictor, "card", None) or {}).get("controller") or {}
    value = (block.get(method) or {}).get("min_confidence")
    return float(value) if value is not None else float(ctx.config.pe_default_min_confidence)


def run_pe(session, ctx, rois, weights, two_step: bool) -> MethodOutcome:
    predictor = ctx.pe(1)
    gate = ctx.config.pe_min_structure
    k, conf, _ = _pe_step(session, predictor, rois, weights, gate)
    if two_step:
        session.move_to_slice(int(round(k)))
        predictor = ctx.pe(2)
        k, conf, _ = _pe_step(session, predictor, rois, weights, gate)
    floor = pe_min_confidence(ctx, predictor, "pe2" if two_step else "pe")
    if conf < floor:
        session.move_to_slice(int(round(k)))  # best effort: the lens rests at the model's guess
        raise FocusFailed(f"low confidence: {conf:.2f} < {floor:.2f} (flat, dark or saturated RoI?)")
    return MethodOutcome(float(session.positions[int(round(k))]), conf)


def pdaf_thresholds(ctx, predictor) -> tuple[float, float]:
    """(min confidence, stop slices): the calibration's own (``controller`` block, fitted from the
    sweeps: hil_af.calibration.thresholds) where it has them, else the MethodConfig values."""
    block = getattr(predictor, "cal", {}).get("controller") or {}
    return (float(block.get("min_confidence", ctx.config.pdaf_min_confidence)),
            float(block.get("stop_slices", ctx.config.pdaf_stop_slices)))


def _pdaf_measure(session, ctx, predictor, rois, weights, field: str, gate: bool = True):
    """Capture, predict, drop low-confidence RoIs (unless ``gate`` is False); (frame, combined
    ``field`` value, confidence)."""
    frame = session.capture()
    with session.compute():
        est = predictor.predict(frame, rois)
    conf = np.asarray(est.confidence)
    min_conf = pdaf_thresholds(ctx, predictor)[0] if gate else -np.inf
    ok = conf >= min_conf
    if not np.any(ok):
        raise FocusFailed(f"low PDAF confidence: best {float(np.max(conf)):.2f} < {min_conf:.2f}")
    value, c = combine(np.asarray(getattr(est, field))[ok], weights[ok], conf[ok])
    session.trace.append({"t": session.elapsed_s(), f"pdaf_{field}": value, "confidence": c})
    return frame, value, c


def run_pdaf(session, ctx, rois, weights, global_fit: bool) -> MethodOutcome:
    predictor = ctx.pdaf(global_fit)
    spacing = float(np.median(np.abs(np.diff(session.positions))))
    stop = pdaf_thresholds(ctx, predictor)[1]
    for _ in range(ctx.config.pdaf_max_iters):
        frame, target, conf = _pdaf_measure(session, ctx, predictor, rois, weights, "target_position")
        here = frame.lens_position if np.isfinite(frame.lens_position) else session.position
        if abs(target - here) < stop * spacing:
            return MethodOutcome(session.clamp(target), conf)
        session.move_to(target)
    raise FocusFailed(f"pdaf did not converge in {ctx.config.pdaf_max_iters} steps")


def run_zncc2(session, ctx, rois, weights) -> MethodOutcome:
    """Two fixed steps through the ZNCC calibration (module doc)."""
    predictor = ctx.pdaf("zncc")
    target, conf = session.position, 0.0
    for _ in range(2):
        _, target, conf = _pdaf_measure(session, ctx, predictor, rois, weights, "target_position", gate=False)
        session.move_to(session.clamp(target))
    return MethodOutcome(session.clamp(target), conf)


def run_pdaf_loop(session, ctx, rois, weights) -> MethodOutcome:
    predictor = ctx.pdaf(True)
    spacing = float(np.median(np.abs(np.diff(session.positions))))
    max_slew = ctx.config.loop_max_slew_slices * spacing
    for _ in range(ctx.config.loop_max_frames):
        _, defocus, conf = _pdaf_measure(session, ctx, predictor, rois, weights, "defocus")
        step = float(np.clip(-defocus, -max_slew, max_slew))
        if abs(step) < ctx.config.pdaf_stop_slices * spacing:
            return MethodOutcome(session.position, conf)
        session.move_to(session.position + step)
    raise FocusFailed(f"pdaf-loop did not converge in {ctx.config.loop_max_frames} frames")


def run_cdaf(session, ctx, rois, weights, fallback_rois=None) -> MethodOutcome:
    target, conf, wide = contrast_search(session, rois, weights, contrast=ctx.contrast, fallback_rois=fallback_rois)
    return MethodOutcome(target, conf, "cdaf-wide" if wide else None)


def _grown(rois: np.ndarray, view_hw: tuple[int, int], factor: float = 3.0) -> np.ndarray:
    H, W = view_hw
    out = []
    for x, y, w, h in rois:
        nw, nh = min(W, int(w * factor)), min(H, int(h * factor))
        nx = int(np.clip(x + w / 2 - nw / 2, 0, W - nw))
        ny = int(np.clip(y + h / 2 - nh / 2, 0, H - nh))
        out.append((nx, ny, nw, nh))
    return np.array(out, dtype=np.int32)


def run_hybrid(session, ctx, rois, weights) -> MethodOutcome:
    reasons = []
    k, conf, frame = _pe_step(session, ctx.pe(1), rois, weights, ctx.config.pe_min_structure)
    if conf >= ctx.config.hybrid_threshold:
        session.move_to_slice(int(round(k)))
        k, conf, frame = _pe_step(session, ctx.pe(2), rois, weights, ctx.config.pe_min_structure)
        if conf >= pe_min_confidence(ctx, ctx.pe(2), "pe2"):
            return MethodOutcome(float(session.positions[int(round(k))]), conf)
    reasons.append(f"pe2 confidence {conf:.2f}")
    if ctx.has_calibration():
        try:
            out = run_pdaf(session, ctx, rois, weights, global_fit=False)
            out.fallback = "pdaf"
            return out
        except FocusFailed as e:
            reasons.append(f"pdaf: {e.reason}")
    try:  # one contrast scan; a textureless RoI follows a window 3x its size (a wider AfWindow)
        out = run_cdaf(session, ctx, rois, weights, fallback_rois=_grown(rois, ctx.view_hw()))
        out.fallback = out.fallback or "cdaf"
        return out
    except FocusFailed as e:
        reasons.append(f"cdaf: {e.reason}")
    raise FocusFailed("hybrid: every method failed (" + "; ".join(reasons) + ")")


RUNNERS: dict[str, Callable[..., MethodOutcome]] = {
    "pe": lambda s, c, r, w: run_pe(s, c, r, w, two_step=False),
    "pe2": lambda s, c, r, w: run_pe(s, c, r, w, two_step=True),
    "pdaf": lambda s, c, r, w: run_pdaf(s, c, r, w, global_fit=False),
    "pdaf-global": lambda s, c, r, w: run_pdaf(s, c, r, w, global_fit=True),
    "cdaf": run_cdaf,
    "pdaf-loop": run_pdaf_loop,
    "hybrid": run_hybrid,
    "zncc2": run_zncc2,
    "cdaf-libcamera": lambda s, c, r, w: run_cdaf_libcamera(s, c, r, w),
    "cdaf-fast": lambda s, c, r, w: run_cdaf_fast(s, c, r, w, hint=getattr(s, "hint", None)),
}


def check_method(name: Any) -> str:
    if name not in RUNNERS:
        raise BadInput(f"unknown AF method {name!r}; known methods: {', '.join(METHODS)}")
    return str(name)
