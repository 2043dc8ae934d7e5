"""The device protocols and the ``Rig`` bundle.

Every frame source and lens actuator satisfies these ``typing.Protocol``s
(checked by mypy in tests/test_protocols_typecheck.py and by the shared
conformance suite).  Units: lens positions are in the actuator's native
units (a VCM DAC code, or dioptres for ``libcamera-lens://``); times are in
seconds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from ..clock import Clock, SystemClock
from ..errors import BadInput
from ..frames import DualPixelFrame
from ..optics import LensMap


@runtime_checkable
class FrameSource(Protocol):
    """Something that captures dual-pixel frames.

    Sources whose views are a crop of the full view plane also expose
    ``view_hw`` (H, W of the views); otherwise the views are ``sensor_hw``.
    Sources that can decode windows of a frame alone also expose
    ``capture_roi_frame(rois) -> hil_af.roiframe.RoiFrame`` (the controller's
    per-step path, ``hil_af.controller.roi_path``).
    """

    @property
    def sensor_hw(self) -> tuple[int, int]:
        """(H_full, W_full) of the sensor's full view plane, pixels."""
        ...

    def capture(self) -> DualPixelFrame:
        """Expose and return one frame (blocking)."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> "FrameSource": ...

    def __exit__(self, *exc: object) -> None: ...


@runtime_checkable
class LensActuator(Protocol):
    """A focus actuator addressed in native units."""

    @property
    def position(self) -> float:
        """Last commanded (or read-back) position, native units."""
        ...

    @property
    def range(self) -> tuple[float, float]:
        """(min, max) accepted positions, native units."""
        ...

    @property
    def settle_time_s(self) -> float:
        """Seconds after a move before a frame can be trusted."""
        ...

    def move_to(self, position: float) -> None:
        """Command a move to ``position`` (native units); out of range raises BadInput."""
        ...

    def close(self) -> None: ...

    def __enter__(self) -> "LensActuator": ...

    def __exit__(self, *exc: object) -> None: ...


def checked_position(position: Any, lo: float, hi: float, who: str, range_name: str = "range") -> float:
    """``position`` as a finite float within [lo, hi] (native units), else BadInput naming ``who`` and the range."""
    try:
        p = float(position)
    except (TypeError, ValueError):
        raise BadInput(f"{who}: position must be a number, got {position!r}") from None
    if not math.isfinite(p) or not lo <= p <= hi:
        raise BadInput(f"{who}: position {position!r} is outside the {range_name} [{lo:g}, {hi:g}]")
    return p


class ContextMixin:
    """``with`` support for drivers: ``__exit__`` calls ``close()``."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]


TruthFn = Callable[[np.ndarray], np.ndarray]


@dataclass
class Rig(ContextMixin):
    """One frame source + one lens actuator + what the rig profile says of them.

    ``truth``, where the rig knows it (the simulator, a replayed stack), maps
    RoIs int32 [P, 4] (view pixels) to their in-focus lens positions
    float64 [P] (native units).  ``af_positions`` are the n lens positions of
    the focus slices (the stack's positions for replay; n evenly spaced over
    the AF range elsewhere).  ``change_scene(i)``, where the rig can do it
    by itself (the simulator), puts scene/target number ``i`` in front of
    the camera and returns a label for it; real rigs leave it None and
    calibration asks the user instead.
    """

    source: FrameSource
    lens: LensActuator
    name: str = "rig"
    lens_map: LensMap | None = None
    clock: Clock = field(default_factory=SystemClock)
    profile: dict[str, Any] = field(default_factory=dict)
    truth: TruthFn | None = None
    af_positions: np.ndarray | None = None
    change_scene: Callable[[int], str] | None = None

    def slice_positions(self, n: int | None = None) -> np.ndarray:
        """Lens positions (native units, increasing) of the ``n`` AF slices."""
        if self.af_positions is not None and (n is None or n == len(self.af_positions)):
            return np.asarray(self.af_positions, dtype=np.float64)
        af = self.profile.get("af", {})
        n = int(n or af.get("slices", 49))
        lo, hi = af.get("range", self.lens.range)
        return np.linspace(float(lo), float(hi), n)

    def close(self) -> None:
        errors = []
        for dev in (self.lens, self.source):
            try:
                dev.close()
            except Exception as e:  # close both, report the first failure
                errors.append(e)
        if errors:
            raise errors[0]
