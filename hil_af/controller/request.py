"""The per-request options of a focus cycle: ``--timeout``, ``--range``, ``--start``.

What users of libcamera's AF ask for and Picamera2's ``autofocus_cycle()``
lacks (it waits for ``AfState`` without a time limit): a time budget per
cycle, an AF range (libcamera ``AfRange``: near = "macro", normal, full)
and a start position for the search.  ``request_options`` validates them
all before the lens moves (BadInput naming the bad value).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..drivers.base import checked_position
from ..errors import BadInput
from .af_range import range_positions
from .base import Limits
from .methods import CONTRAST_METHODS


@dataclass
class CycleOptions:
    limits: Limits
    positions: np.ndarray     # AF slice positions of this cycle, native units, increasing
    start: float | None       # native units, or None: start where the lens is


def request_options(ctl, method: str, timeout_s: float | None, af_range: str | None,
                    start: float | None) -> CycleOptions:
    """Validated options for one cycle of ``ctl`` (a Controller) with ``method``."""
    if getattr(ctl.rig.source, "statistics_only", False) and method not in CONTRAST_METHODS:
        raise BadInput(f"method {method} needs dual-pixel views; this frame source gives ISP focus statistics "
                       f"only: use one of {', '.join(CONTRAST_METHODS)}")
    limits = ctl.limits
    if timeout_s is not None:
        try:
            t = float(timeout_s)
        except (TypeError, ValueError):
            raise BadInput(f"timeout must be a number of seconds, got {timeout_s!r}") from None
        if not (math.isfinite(t) and t > 0):
            raise BadInput(f"timeout must be > 0 seconds, got {timeout_s!r}")
        limits = replace(limits, time_budget_s=t)
    positions = ctl.slice_positions()
    if af_range is not None:
        positions = range_positions(ctl.rig, positions, af_range)
    p0 = None
    if start is not None:
        lo, hi = ctl.rig.lens.range
        p0 = checked_position(start, float(lo), float(hi), "start", "lens range")
    return CycleOptions(limits, positions, p0)
