"""Controller types: AF states (Picamera2's names), limits, focus results."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Any


class AFState(str, Enum):
    IDLE = "Idle"
    SCANNING = "Scanning"
    FOCUSED = "Focused"
    FAILED = "Failed"


@dataclass
class Limits:
    """Bounds on one focus cycle.

    max_steps: estimator steps (capture + predict) at most.
    max_moves: lens moves at most.
    time_budget_s: wall (or sim-clock) seconds at most, settling included.
    reach_tolerance: |reported - target| in native units above which a move
        counts as not reached (a stalled lens) -> Failed.
    """

    max_steps: int = 32
    max_moves: int = 40
    time_budget_s: float = 10.0
    reach_tolerance: float = 3.0


@dataclass
class FocusResult:
    """What one focus cycle did; ``to_json`` gives the keys of docs/cli.md.

    captures: frames the method exposed to decide (retries included);
    verify_frames: the frame after the final move that checks the lens got there;
    moves: lens moves commanded; elapsed_s: on the rig's clock, settling included.
    """

    state: AFState
    position: float
    method: str
    captures: int = 0
    moves: int = 0
    verify_frames: int = 0
    elapsed_s: float = 0.0
    dioptres: float | None = None
    slice_index: int | None = None
    confidence: float | None = None
    reason: str | None = None
    fallback: str | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self, trace: bool = False) -> dict[str, Any]:
        d = asdict(self)
        d["state"] = self.state.value
        if not trace:
            d.pop("trace")
        return {k: v for k, v in d.items() if v is not None or k in ("dioptres",)}
