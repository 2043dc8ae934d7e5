"""Lens maps: dioptres <-> native actuator units, piecewise linear.

Same shape as libcamera's tuning ``map`` (e.g. IMX708: dioptres [0.0, 15.0]
to VCM codes [445, 925]): alternating (dioptre, code) knots, strictly
increasing in dioptres, monotonic in codes.  Outside the knots the map is
extrapolated from the end segments (libcamera clamps instead; call
``clamp_dioptres`` for that).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .errors import BadInput


@dataclass(frozen=True)
class LensMap:
    """Piecewise-linear map between focus in dioptres (1/m) and native codes."""

    dioptres: tuple[float, ...]
    codes: tuple[float, ...]

    def __post_init__(self) -> None:
        try:
            d = np.asarray(self.dioptres, dtype=np.float64)
            c = np.asarray(self.codes, dtype=np.float64)
        except (TypeError, ValueError) as e:  # e.g. strings or nested lists from a rig profile
            raise BadInput(f"lens map knots must be numbers: {e}") from None
        if d.ndim != 1 or d.shape != c.shape or d.size < 2:
            raise BadInput(f"lens map needs >= 2 (dioptre, code) knots of equal count, got {d.size} dioptres and {c.size} codes")
        if not (np.all(np.isfinite(d)) and np.all(np.isfinite(c))):
            raise BadInput("lens map knots must be finite")
        if not np.all(np.diff(d) > 0):
            raise BadInput(f"lens map dioptres must be strictly increasing, got {list(d)}")
        dc = np.diff(c)
        if not (np.all(dc > 0) or np.all(dc < 0)):
            raise BadInput(f"lens map codes must be strictly monotonic, got {list(c)}")

    @classmethod
    def from_pairs(cls, flat: Sequence[float]) -> "LensMap":
        """From libcamera's flat form ``[d0, c0, d1, c1, ...]``."""
        if len(flat) % 2 or len(flat) < 4:
            raise BadInput(f"lens map pairs need an even count >= 4, got {len(flat)}")
        return cls(tuple(float(v) for v in flat[0::2]), tuple(float(v) for v in flat[1::2]))

    @classmethod
    def linear(cls, dioptres: tuple[float, float], codes: tuple[float, float]) -> "LensMap":
        return cls((float(dioptres[0]), float(dioptres[1])), (float(codes[0]), float(codes[1])))

    def _interp(self, x, xs: np.ndarray, ys: np.ndarray):
        x = np.asarray(x, dtype=np.float64)
        if xs[0] > xs[-1]:
            xs, ys = xs[::-1], ys[::-1]
        y = np.interp(x, xs, ys)
        lo = x < xs[0]
        hi = x > xs[-1]
        if np.any(lo):
            s = (ys[1] - ys[0]) / (xs[1] - xs[0])
            y = np.where(lo, ys[0] + (x - xs[0]) * s, y)
        if np.any(hi):
            s = (ys[-1] - ys[-2]) / (xs[-1] - xs[-2])
            y = np.where(hi, ys[-1] + (x - xs[-1]) * s, y)
        return float(y) if np.ndim(y) == 0 else y

    def to_code(self, dioptres):
        """Native code(s) for focus at ``dioptres`` (1/m)."""
        return self._interp(dioptres, np.asarray(self.dioptres), np.asarray(self.codes))

    def to_dioptres(self, code):
        """Focus in dioptres (1/m) at native code(s) ``code``."""
        return self._interp(code, np.asarray(self.codes), np.asarray(self.dioptres))

    def clamp_dioptres(self, dioptres: float) -> float:
        return float(np.clip(dioptres, self.dioptres[0], self.dioptres[-1]))

    def to_json(self) -> dict:
        return {"dioptres": list(self.dioptres), "codes": list(self.codes)}
