"""Clocks: the controller and the simulated devices own time through these.

A ``SimClock`` advances only when someone sleeps on it, so the simulated VCM
settles and the controller waits for it without any real waiting: tests run
faster than real time and are deterministic.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A monotonic time source in seconds that can also wait."""

    def monotonic(self) -> float:
        """Current time in seconds (arbitrary origin, never goes back)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (>= 0)."""
        ...


class SystemClock:
    """Real time: ``time.monotonic`` and ``time.sleep``."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class SimClock:
    """Virtual time that moves only by ``sleep``/``advance`` (seconds)."""

    def __init__(self, start_s: float = 0.0):
        self._now = float(start_s)

    def monotonic(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time: {seconds} s")
        self._now += float(seconds)

    advance = sleep
