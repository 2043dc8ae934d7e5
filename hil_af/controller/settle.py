"""How long a frame must wait after a lens move: the actuator's settle model.

A voice-coil motor driven by a DAC step behaves, to first order, like an
exponential approach with time constant ``tau`` (seconds): after a step of
``delta`` native units it is within ``tolerance`` units after
``tau * ln(delta / tolerance)`` seconds.  A lens that publishes its time
constant as ``settle_tau_s`` (the simulated VCM: ``SimLens.settle_tau_s``)
gets that per-step time, never more than its ``settle_time_s``; any other
lens gets its fixed ``settle_time_s`` (the safe, datasheet figure).
libcamera's rpi.af instead waits ``step_frames`` whole frames after every
step whatever its size (``src/ipa/rpi/controller/rpi/af.cpp``, ``doScan``).
"""

from __future__ import annotations

import math

SETTLE_TOLERANCE = 2.0  # native units (VCM codes) a settled lens may still be from its target: ~1/8 AF slice


def settle_time_for(lens, delta: float, tolerance: float = SETTLE_TOLERANCE) -> float:
    """Seconds after a move of ``delta`` native units before a frame can be trusted."""
    fixed = float(lens.settle_time_s)
    tau = getattr(lens, "settle_tau_s", None)
    if tau is None or not math.isfinite(float(tau)) or tau <= 0:
        return fixed
    if delta <= tolerance:
        return 0.0
    return min(fixed, float(tau) * math.log(delta / tolerance))
