"""AF ranges (``--range near|normal|full``) and the dioptre scale of a focus cycle.

The ranges are libcamera's ``AfRange`` (``AfRangeNormal``, ``AfRangeMacro``,
``AfRangeFull``) with the limits of the IMX708 tuning files
(``src/ipa/rpi/{vc4,pisp}/data/imx708.json``, ``rpi.af`` ``ranges``):
normal 0..12 dioptres, near (libcamera's "macro") 3..15 dioptres, full the
union (``Af::CfgParams::read`` in ``src/ipa/rpi/controller/rpi/af.cpp``).
A rig profile may override them with an ``[af.ranges]`` table of
``name = [min_dioptres, max_dioptres]``.  Positions are converted to native
units through the rig's lens map and clipped to the lens range; the slices
keep the rig's AF slice spacing.
"""

from __future__ import annotations

import numpy as np

from ..errors import BadInput

RANGE_NAMES = ("near", "normal", "full")
DEFAULT_RANGES_DIOPTRES = {"normal": (0.0, 12.0), "near": (3.0, 15.0)}
SLICES_PER_DIOPTRE = 4.0  # without a lens map: the default 49 slices over 12 dioptres


def range_dioptres(profile: dict, name: str) -> tuple[float, float]:
    """(min, max) dioptres of AF range ``name`` (profile ``[af.ranges]`` overrides libcamera's IMX708 values)."""
    if name not in RANGE_NAMES:
        raise BadInput(f"unknown AF range {name!r}; known ranges: {', '.join(RANGE_NAMES)}")
    table = {**DEFAULT_RANGES_DIOPTRES, **{k: tuple(v) for k, v in profile.get("af", {}).get("ranges", {}).items()}}
    if name == "full" and "full" not in table:
        return (min(table["normal"][0], table["near"][0]), max(table["normal"][1], table["near"][1]))
    lo, hi = (float(v) for v in table[name])
    return lo, hi


def dioptre_map(rig):
    """The rig's lens map; for a lens addressed in dioptres (``libcamera-lens://`` default) the identity."""
    if rig.lens_map is not None:
        return rig.lens_map
    if getattr(rig.lens, "units", None) == "dioptres":
        from ..optics import LensMap

        return LensMap((0.0, 1.0), (0.0, 1.0))
    return None


def range_positions(rig, slices: np.ndarray, name: str) -> np.ndarray:
    """AF slice positions (native units, increasing) covering range ``name`` at the spacing of ``slices``."""
    lo_d, hi_d = range_dioptres(rig.profile, name)
    lens_lo, lens_hi = (float(v) for v in rig.lens.range)
    lens_map = dioptre_map(rig)
    if lens_map is None:
        if name == "near":
            raise BadInput("--range near needs the rig's lens map (dioptres to codes): add a [lens_map] to the rig profile")
        if name == "normal":
            return np.asarray(slices, dtype=np.float64)
        a, b = lens_lo, lens_hi
    else:
        a, b = sorted(float(lens_map.to_code(d)) for d in (lo_d, hi_d))
        a, b = max(a, lens_lo), min(b, lens_hi)
    if b <= a:
        raise BadInput(f"AF range {name} ({lo_d:g}..{hi_d:g} dioptres) is outside the lens range [{lens_lo:g}, {lens_hi:g}]")
    spacing = float(np.median(np.diff(slices))) if len(slices) > 1 else (b - a)
    n = max(2, int(round((b - a) / abs(spacing))) + 1)
    return np.linspace(a, b, n)


class DioptreScale:
    """Converts a cycle's lens positions (native units) to and from dioptres.

    With a lens map this is the map; without one, dioptres are a linear
    stand-in of ``SLICES_PER_DIOPTRE`` AF slices per dioptre from the first slice.
    """

    def __init__(self, lens_map, positions: np.ndarray):
        self.map = lens_map
        self.p0 = float(positions[0])
        self.step = float(np.median(np.diff(positions))) if len(positions) > 1 else 1.0

    def to_dioptres(self, position: float) -> float:
        if self.map is not None:
            return float(self.map.to_dioptres(position))
        return (position - self.p0) / self.step / SLICES_PER_DIOPTRE

    def to_position(self, dioptres: float) -> float:
        if self.map is not None:
            return float(self.map.to_code(dioptres))
        return self.p0 + dioptres * SLICES_PER_DIOPTRE * self.step
