"""``spy+<scheme>://...``: log every call made to a lens, like pyserial's ``spy://``.

``open_lens("spy+i2c://1/0x0c?chip=dw9807")`` opens the inner lens and wraps
it in ``SpyLens``: every ``move_to``, ``position``, ``range``,
``settle_time_s``, ``read_position`` and ``close`` is logged at INFO on the
logger ``hil_af.spy`` and appended to ``.log`` as a ``SpyRecord`` with the
wall-clock time (``time.time()``, seconds), the call, its argument, its
result or error, and how long it took (seconds).  Errors pass through
unchanged.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from .base import ContextMixin, LensActuator

logger = logging.getLogger("hil_af.spy")


@dataclass(frozen=True)
class SpyRecord:
    t_s: float            # wall-clock time of the call, seconds since the epoch
    call: str             # "move_to", "position", ...
    arg: Any              # the argument (move_to) or None
    result: Any           # what it returned, or None
    error: str | None     # "ExceptionType: message" if it raised
    duration_s: float     # how long the inner call took, seconds


class SpyLens(ContextMixin):
    """A ``LensActuator`` that forwards to ``inner`` and records every call."""

    def __init__(self, inner: LensActuator, name: str = "lens"):
        self.inner = inner
        self.name = name
        self.log: list[SpyRecord] = []

    def _call(self, call: str, fn, arg: Any = None):
        t0 = time.time()
        p0 = time.perf_counter()
        try:
            result = fn()
        except Exception as e:
            rec = SpyRecord(t0, call, arg, None, f"{type(e).__name__}: {e}", time.perf_counter() - p0)
            self.log.append(rec)
            logger.info("%s %s(%s) raised %s", self.name, call, "" if arg is None else arg, rec.error)
            raise
        rec = SpyRecord(t0, call, arg, result, None, time.perf_counter() - p0)
        self.log.append(rec)
        logger.info("%s %s(%s) -> %r [%.3f ms]", self.name, call, "" if arg is None else arg, result,
                    rec.duration_s * 1e3)
        return result

    @property
    def position(self) -> float:
        return self._call("position", lambda: self.inner.position)

    @property
    def range(self) -> tuple[float, float]:
        return self._call("range", lambda: self.inner.range)

    @property
    def settle_time_s(self) -> float:
        return self._call("settle_time_s", lambda: self.inner.settle_time_s)

    def move_to(self, position: float) -> None:
        self._call("move_to", lambda: self.inner.move_to(position), position)

    def read_position(self) -> float:
        fn = getattr(self.inner, "read_position", None)
        return self._call("read_position", fn if fn is not None else (lambda: self.inner.position))

    def close(self) -> None:
        self._call("close", self.inner.close)

    def __getattr__(self, name: str) -> Any:  # anything else the inner driver offers, unlogged
        if name == "inner":
            raise AttributeError(name)
        return getattr(self.inner, name)
