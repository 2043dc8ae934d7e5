"""The simulated voice-coil motor (VCM): a LensActuator in DAC codes on an injected clock.

After ``move_to(code)`` the lens moves exponentially towards its final
position with time constant ``vcm_tau_s`` (seconds, on the clock), so
``actual_position`` is intermediate until about ``settle_time_s`` =
``vcm_settle_taus * vcm_tau_s`` has passed.  The final position shows
hysteresis: it lags the target by ``vcm_hysteresis_codes`` on the side it
approached from (from below it ends at target - h, from above at target + h).
With the ``fault_stall`` probability a move stalls part way (20..80 % of the
way): ``position`` still reports the commanded target, ``actual_position``
tells the truth.
"""

from __future__ import annotations

import math

import numpy as np

from ..clock import Clock
from ..drivers.base import ContextMixin, checked_position
from ..errors import DeviceError
from .params import SimParams


class SimLens(ContextMixin):
    """Simulated VCM, native units = DAC codes (``params.vcm_range_codes``)."""

    def __init__(self, params: SimParams, clock: Clock, *, fault_stall: float = 0.0, seed: int = 0):
        self._p = params
        self._clock = clock
        self._fault_stall = float(fault_stall)
        self._rng = np.random.default_rng([int(seed), 0x57A11])
        self._target = float(params.vcm_start_code)
        self._start = self._target
        self._final = self._target
        self._t_move = -math.inf
        self._closed = False
        self.moves = 0
        self.stalls = 0

    @property
    def range(self) -> tuple[float, float]:
        """(min, max) DAC codes accepted by ``move_to``."""
        lo, hi = self._p.vcm_range_codes
        return (float(lo), float(hi))

    @property
    def settle_time_s(self) -> float:
        """Seconds after a move until the lens is within ~1 % of the step (7 time constants by default: a full-range step ends within 1 code)."""
        return float(self._p.vcm_settle_taus * self._p.vcm_tau_s)

    @property
    def settle_tau_s(self) -> float:
        """Time constant of the exponential approach, seconds (the settle model of hil_af.controller.settle)."""
        return float(self._p.vcm_tau_s)

    @property
    def position(self) -> float:
        """Last commanded target, DAC codes."""
        return self._target

    @property
    def actual_position(self) -> float:
        """Where the lens really is now on the clock, DAC codes (hysteresis, settling and stalls included)."""
        tau = self._p.vcm_tau_s
        dt = self._clock.monotonic() - self._t_move
        if tau <= 0 or dt == math.inf:
            return self._final
        return self._final + (self._start - self._final) * math.exp(-max(dt, 0.0) / tau)

    def move_to(self, position: float) -> None:
        """Command a move to ``position`` DAC codes; BadInput if not a number in ``range``."""
        if self._closed:
            raise DeviceError("sim lens is closed")
        lo, hi = self.range
        code = checked_position(position, lo, hi, "sim lens", "sim VCM code range")
        start = self.actual_position
        direction = float(np.sign(code - start))  # 0: already there, no hysteresis step
        final = code - direction * self._p.vcm_hysteresis_codes
        final = min(max(final, lo), hi)
        if self._fault_stall > 0 and self._rng.random() < self._fault_stall:
            final = start + (final - start) * self._rng.uniform(0.2, 0.8)
            self.stalls += 1
        self._target = code
        self._start = start
        self._final = final
        self._t_move = self._clock.monotonic()
        self.moves += 1

    def close(self) -> None:
        self._closed = True

    def __repr__(self) -> str:
        return f"SimLens(position={self._target:g}, actual={self.actual_position:.2f})"
