"""One focus cycle's bookkeeping: captures, moves, settling, limits, compute time.

Methods drive the lens only through a ``FocusSession``; it clamps targets to
the lens range, waits ``settle_time_s`` on the rig's clock before it trusts
a frame, checks that the lens reached where it was sent, and enforces the
``Limits`` (steps, moves, time budget), raising ``FocusFailed`` with the
reason when one is exceeded.
"""

from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import numpy as np

from ..drivers.base import Rig
from ..errors import DeviceError, DeviceTimeout, FocusFailed
from ..frames import DualPixelFrame
from ..roiframe import RoiFrame
from .af_range import dioptre_map
from .base import Limits
from .roi_path import grab


BLACK_FRACTION = 0.0025      # mean below this fraction of the white level: a black frame
SATURATED_FRACTION = 0.5     # more than this fraction of pixels at white: a saturated frame


def _exposure_samples(frame: DualPixelFrame | RoiFrame) -> tuple[np.ndarray, np.ndarray]:
    """Every 4th pixel of each view in y and x: the whole views, or a ``RoiFrame``'s RoI patches."""
    if isinstance(frame, DualPixelFrame):
        return frame.left[::4, ::4], frame.right[::4, ::4]
    if len({(int(w), int(h)) for w, h in frame.rois[:, 2:]}) == 1:  # one batch [P, h, w]: the same values in the same order
        Lb, Rb = frame.patches(frame.rois)
        return Lb[:, ::4, ::4].ravel(), Rb[:, ::4, ::4].ravel()
    L, R = frame.roi_views()
    return np.concatenate([p[::4, ::4].ravel() for p in L]), np.concatenate([p[::4, ::4].ravel() for p in R])


def exposure_problem(frame: DualPixelFrame | RoiFrame) -> str:
    """'' for a usable frame, else what is wrong with its exposure (black or saturated): judged on
    the whole views, or on the RoIs alone for a ``RoiFrame`` (all an AF step reads)."""
    sub, right = _exposure_samples(frame)
    white = frame.white_level
    mean = float(sub.mean()) + float(right.mean())
    mean *= 0.5
    if white and mean < BLACK_FRACTION * white:
        return f"black frame (mean {mean:.1f} DN of {white:g})"
    if white and float(np.mean(sub >= 0.99 * white)) > SATURATED_FRACTION:
        return "saturated frame"
    return ""


class FocusSession:
    """Counts and guards the device traffic of one focus cycle.

    slice_positions: float64 [n] lens positions (native units) of the AF slices.
    capture_retries: extra attempts when a capture times out (DeviceTimeout).
    settle: how long a capture after a move waits: ``"lens"`` the lens's
    ``settle_time_s`` after every move; ``"model"`` only as long as the
    actuator's settle model needs for that step (``settle.settle_time_for``);
    ``"frames"`` not at all (the method skips frames itself, as libcamera does).
    rois: the cycle's RoIs (view pixels, int [P, 4]); given, a source that can decode them alone
    (``capture_roi_frame``) gives ``RoiFrame``s (``roi_path.grab``), else whole frames.
    """

    def __init__(self, rig: Rig, limits: Limits, slice_positions: np.ndarray, capture_retries: int = 2,
                 settle: str = "lens", rois: np.ndarray | None = None):
        self.rig = rig
        self.rois = None if rois is None else np.asarray(rois)
        self.limits = limits
        self.positions = np.asarray(slice_positions, dtype=np.float64)
        self.capture_retries = capture_retries
        self.clock = rig.clock
        self.t0 = self.clock.monotonic()
        self.captures = 0
        self.moves = 0
        self.steps = 0
        self.verify_frames = 0
        self.compute_s = 0.0
        self.compute_steps = 0
        self.trace: list[dict[str, Any]] = []
        self._moved_at: float | None = None
        self._commanded: float | None = None
        self.settle = settle
        self.lens_map = dioptre_map(rig)  # native units <-> dioptres (None: no map known)
        self._settle_until = -float("inf")  # clock time by which every move so far has settled
        spacing = float(np.median(np.diff(self.positions))) if len(self.positions) > 1 else 1.0
        self.reach_tolerance = max(limits.reach_tolerance, 0.51 * abs(spacing))

    # -- time -------------------------------------------------------------
    def elapsed_s(self) -> float:
        return self.clock.monotonic() - self.t0

    def _check_budget(self) -> None:
        if self.elapsed_s() > self.limits.time_budget_s:
            raise FocusFailed(f"time budget exceeded: {self.elapsed_s():.3f} s > {self.limits.time_budget_s} s")

    @contextmanager
    def compute(self) -> Iterator[None]:
        """Times estimator work (real CPU time, not the rig clock): one AF step."""
        t = time.perf_counter()
        try:
            yield
        finally:
            self.compute_s += time.perf_counter() - t
            self.compute_steps += 1

    # -- lens -------------------------------------------------------------
    @property
    def position(self) -> float:
        return float(self.rig.lens.position)

    def clamp(self, position: float) -> float:
        lo, hi = self.rig.lens.range
        return float(min(max(position, lo), hi))

    def move_to(self, position: float) -> float:
        """Move to ``position`` (clamped to the lens range); returns the commanded position."""
        if not np.isfinite(position):
            raise FocusFailed(f"estimator gave a non-finite target position ({position})")
        target = self.clamp(position)
        if self._commanded is not None and abs(target - self._commanded) < 1e-9:
            return target
        if self._commanded is None and abs(target - self.position) < 1e-9:
            # Already commanded there (by an earlier cycle): command it again, uncounted, since the
            # lens may have stalled short of it; a lens that is there does not move.
            try:
                self.rig.lens.move_to(target)
            except DeviceError as e:
                raise FocusFailed(f"lens move to {target:g} failed: {e}") from e
            self._moved_at = self.clock.monotonic()
            self._settle_until = max(self._settle_until, self._moved_at + float(self.rig.lens.settle_time_s))
            self._commanded = target
            return target
        if self.moves >= self.limits.max_moves:
            raise FocusFailed(f"move limit reached ({self.limits.max_moves} moves)")
        self._check_budget()
        now = self.clock.monotonic()
        # a move before the last one settled: wait for whichever ends later (exponential moves superpose)
        self._settle_until = max(self._settle_until, now + self._settle_for(target))
        try:
            self.rig.lens.move_to(target)
        except DeviceError as e:
            raise FocusFailed(f"lens move to {target:g} failed: {e}") from e
        self.moves += 1
        self._moved_at = self.clock.monotonic()
        self._commanded = target
        self.trace.append({"t": self.elapsed_s(), "move": target})
        return target

    def move_to_slice(self, index: int) -> float:
        k = int(np.clip(index, 0, len(self.positions) - 1))
        return self.move_to(float(self.positions[k]))

    def nearest_slice(self, position: float | None = None) -> int:
        p = self.position if position is None else position
        return int(np.argmin(np.abs(self.positions - p)))

    def _settle_for(self, target: float) -> float:
        """Seconds the next capture waits after a move to ``target`` (see ``settle``)."""
        if self.settle == "frames":
            return 0.0
        if self.settle == "model":
            from .settle import settle_time_for

            return settle_time_for(self.rig.lens, abs(target - self.position))
        return float(self.rig.lens.settle_time_s)

    def skip_frames(self, n: int) -> None:
        """Let ``n`` frames of the stream pass unused (libcamera's ``step_frames``/``skip_frames``).

        They count in ``captures`` (frames exposed) but not as AF steps."""
        for _ in range(int(n)):
            self._check_budget()
            self.captures += 1
            try:
                grab(self.rig.source, self.rois)
            except DeviceTimeout:
                pass

    # -- frames -----------------------------------------------------------
    def _wait_settled(self) -> None:
        if self._moved_at is None:
            return
        remaining = self._settle_until - self.clock.monotonic()
        if remaining > 0:
            self.clock.sleep(remaining)

    def verify(self) -> None:
        """After the final move: one frame that checks the lens arrived (FocusFailed if not).

        Counted in ``verify_frames``, not ``captures`` (the frames the method used to
        decide), so captures per focus compare with the paper's.  Skipped when the lens
        was never moved, or when the trace's last entry is a capture (nothing was done
        after the method's last frame).  A method that records anything after its last
        frame (its estimate, a move) gets the verify frame even when its final move left
        the lens where it was: the rule reads the trace, not the lens.
        """
        if self._moved_at is None or (self.trace and "capture" in self.trace[-1]):
            return
        steps, captures = self.steps, self.captures
        self.steps -= 1  # not an AF step
        self.capture()
        self.verify_frames += self.captures - captures
        self.captures, self.steps = captures, steps

    def capture(self) -> DualPixelFrame | RoiFrame:
        """A frame exposed after the lens settled; checks the lens reached its target.

        A ``RoiFrame`` (only the RoIs decoded) where the session has ``rois`` and the source can.

        A capture that times out, or a frame that is black or saturated, is
        retried ``capture_retries`` times, then the cycle is Failed with the reason.
        """
        self.steps += 1
        if self.steps > self.limits.max_steps:
            raise FocusFailed(f"step limit reached ({self.limits.max_steps} captures)")
        self._check_budget()
        self._wait_settled()
        problem = ""
        for _ in range(1 + self.capture_retries):
            self.captures += 1
            try:
                frame = grab(self.rig.source, self.rois)
            except DeviceTimeout as e:
                problem = f"capture timed out {1 + self.capture_retries} times: {e}"
                continue
            bad = exposure_problem(frame)
            if not bad:
                break
            problem = f"{bad} in {1 + self.capture_retries} captures in a row"
        else:
            raise FocusFailed(problem)
        lp = float(frame.lens_position)
        if self._commanded is not None and np.isfinite(lp) and abs(lp - self._commanded) > self.reach_tolerance:
            raise FocusFailed(
                f"lens did not reach its target: commanded {self._commanded:g}, frame exposed at {lp:g} "
                f"(tolerance {self.reach_tolerance:g})"
            )
        self.trace.append({"t": self.elapsed_s(), "capture": lp})
        return frame
