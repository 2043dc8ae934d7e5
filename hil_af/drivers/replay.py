"""``replay://``: a whole rig that plays back a recorded focal stack.

URL grammar (the path is everything after ``replay://``, percent-decoded)::

    replay://path/to/stack.npz            relative to the current folder
    replay://./stack.npz, replay://../x.npz
    replay:///abs/path/stack.npz          absolute (three slashes)
    replay://stack.npz?settle_ms=5&start=512

Query parameters (all optional):
    settle_ms   the lens's ``settle_time_s`` in milliseconds (default 0).
    start       initial lens position, native units (default: the first slice).

The lens is a pretend actuator over [first, last] lens position of the stack
(native units, e.g. VCM codes); it accepts any position in that range.  The
source's ``capture()`` returns the slice whose lens position is nearest the
lens's current position (``frame.lens_position`` is that slice's position,
``timestamp_s`` the rig clock's time, ``metadata["slice"]`` its index).  The
rig's ``af_positions`` are the stack's lens positions, ``truth(rois)`` gives
the lens position of the ground-truth slice of each RoI that matches a row of
the stack's ``rois`` exactly (NaN where unknown), and ``lens_map`` comes from
the stack's ``meta["lens_dioptres"]`` when present (else the profile's).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np

from ..clock import Clock, SystemClock
from ..errors import BadInput, DeviceError
from ..frames import DualPixelFrame
from ..optics import LensMap
from ..stacks import FocalStack, load_stack
from .base import ContextMixin, Rig, checked_position
from .registry import DriverURL, register

ALLOWED_KEYS = {"settle_ms", "start"}


def path_from_url(url: DriverURL) -> Path:
    """The stack file named by a ``replay://`` URL (netloc + path, percent-decoded)."""
    raw = unquote(url.netloc + url.path)
    if not raw:
        raise BadInput(f"{url.raw}: no stack file given (expected replay://path/to/stack.npz)")
    return Path(raw)


class ReplayLens(ContextMixin):
    """A lens that only records where it was sent: range = the stack's lens positions (native units)."""

    def __init__(self, lo: float, hi: float, *, settle_time_s: float = 0.0, start: float | None = None, units: str = "native"):
        self._range = (float(lo), float(hi))
        self._settle = float(settle_time_s)
        self._position = float(lo if start is None else start)
        self.units = units
        self.closed = False
        if not lo <= self._position <= hi:
            raise BadInput(f"replay lens: start position {self._position} is outside the stack's range [{lo}, {hi}]")

    @property
    def position(self) -> float:
        """Last commanded position, native units."""
        return self._position

    @property
    def range(self) -> tuple[float, float]:
        """(first, last) lens position of the stack, native units."""
        return self._range

    @property
    def settle_time_s(self) -> float:
        """Settle time after a move, seconds (``settle_ms`` query; default 0)."""
        return self._settle

    def move_to(self, position: float) -> None:
        """Go to ``position`` (native units); BadInput when outside ``range`` or not finite."""
        if self.closed:
            raise DeviceError("replay lens is closed")
        self._position = checked_position(position, *self._range, "replay lens", "stack's lens range")

    def close(self) -> None:
        self.closed = True


class ReplaySource(ContextMixin):
    """Frames from a focal stack: the slice nearest the lens's current position."""

    def __init__(self, stack: FocalStack, lens: ReplayLens, clock: Clock):
        self.stack = stack
        self.lens = lens
        self.clock = clock
        self.closed = False
        self.captures = 0
        self._cache: dict[int, DualPixelFrame] = {}
        self._cache_of: FocalStack | None = stack

    @property
    def sensor_hw(self) -> tuple[int, int]:
        """(H_full, W_full) of the stack's full view plane, pixels."""
        return self.stack.sensor_hw

    @property
    def view_hw(self) -> tuple[int, int]:
        """(H, W) of each view (a crop of the full plane when origin != (0, 0)), pixels."""
        return self.stack.view_hw

    def capture(self) -> DualPixelFrame:
        """The slice nearest ``lens.position`` as a float32, black-subtracted frame."""
        if self.closed:
            raise DeviceError("replay source is closed")
        k = self.stack.nearest_slice(self.lens.position)
        if self._cache_of is not self.stack:  # the stack was swapped: drop the cached views
            self._cache, self._cache_of = {}, self.stack
        views = self._cache.get(k)
        if views is None:  # decode each slice once; views are read-only so callers cannot corrupt them
            f = self.stack.frame(k)
            f.left.flags.writeable = False
            f.right.flags.writeable = False
            views = self._cache[k] = f
        frame = dataclasses.replace(views, timestamp_s=float(self.clock.monotonic()),
                                    metadata={**views.metadata, "source": f"replay:{self.stack.path}"})
        self.captures += 1
        return frame

    def close(self) -> None:
        self.closed = True


def lens_map_from_stack(stack: FocalStack) -> LensMap | None:
    """A LensMap from ``meta["lens_dioptres"]`` (one per slice) when it is strictly monotonic, else None."""
    d = stack.dioptres()
    if d is None:
        return None
    codes = np.asarray(stack.lens_positions, dtype=np.float64)
    if d.size >= 2 and np.all(np.diff(d) < 0):
        d, codes = d[::-1], codes[::-1]
    try:
        return LensMap(tuple(float(v) for v in d), tuple(float(v) for v in codes))
    except BadInput:
        return None


def make_truth(stack: FocalStack):
    """``truth(rois) -> float64 [P]``: lens position of the gt slice of each RoI found in the stack, else NaN."""
    table: dict[tuple[int, ...], float] = {}
    for roi, g in zip(np.asarray(stack.rois).tolist(), np.asarray(stack.gt_index).tolist()):
        if g >= 0:
            table.setdefault(tuple(int(v) for v in roi), float(stack.lens_positions[g]))

    def truth(rois: Any) -> np.ndarray:
        arr = np.asarray(rois)
        if arr.ndim == 1 and arr.size == 4:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != 4:
            raise BadInput(f"truth: rois must have shape [P, 4] (x, y, w, h), got {arr.shape}")
        return np.array([table.get(tuple(int(v) for v in r), float("nan")) for r in arr.tolist()], dtype=np.float64)

    return truth


def open_replay(path: str | Path, *, clock: Clock | None = None, settle_time_s: float = 0.0,
                start: float | None = None, lens_map: LensMap | None = None, profile: dict | None = None) -> Rig:
    """Open a replay rig on the stack at ``path`` (see the module docstring)."""
    stack = load_stack(path)
    clock = clock or SystemClock()
    lp = np.asarray(stack.lens_positions, dtype=np.float64)
    units = str(stack.meta.get("lens_units", "native"))
    lens = ReplayLens(float(lp[0]), float(lp[-1]), settle_time_s=settle_time_s, start=start, units=units)
    source = ReplaySource(stack, lens, clock)
    return Rig(
        source=source,
        lens=lens,
        name=f"replay:{Path(path).name}",
        lens_map=lens_map_from_stack(stack) or lens_map,
        clock=clock,
        profile=dict(profile or {}),
        truth=make_truth(stack),
        af_positions=lp.copy(),
    )


@register("replay", "rig", "plays a recorded focal stack; the lens selects the slice")
def _open(url: DriverURL, ctx: dict[str, Any]) -> Rig:
    url.unknown_keys(ALLOWED_KEYS)
    path = path_from_url(url)
    settle_ms = url.get("settle_ms", 0.0, float)
    if not math.isfinite(settle_ms) or settle_ms < 0:
        raise BadInput(f"{url.raw}: settle_ms must be a finite number >= 0, got {settle_ms}")
    start = url.get("start", None, float)
    if not path.exists():
        raise BadInput(f"{url.raw}: stack file {path} does not exist")
    return open_replay(path, clock=ctx.get("clock"), settle_time_s=settle_ms / 1000.0, start=start,
                       lens_map=ctx.get("lens_map"), profile=ctx.get("profile"))
