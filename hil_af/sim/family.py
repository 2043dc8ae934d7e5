"""Domain randomisation: draw a rig's ``SimParams`` per seed from a profile's ``[sim_family]`` table.

A profile with ``[sim_family]`` is a family of cameras, not one camera: the
rig opened with ``sim://?profile=P&seed=N`` draws every listed parameter from
its range with a generator seeded by N (the same N gives the same camera, and
``change_scene`` keeps it), on top of the profile's ``[sim]`` values.

Each key is either a ``SimParams`` field or one of the derived keys below,
with a value ``[lo, hi]`` (uniform) or ``{log = [lo, hi]}`` (log-uniform,
0 < lo):

- ``blur_per_disparity``: ``blur_px_per_dioptre = this * disparity_px_per_dioptre``
  (the blur disc diameter as a multiple of the disparity; ~2.4 for an ideal
  half-disc split, more with photodiode crosstalk);
- ``disparity_offset_x_slices`` / ``disparity_offset_y_slices``: the in-focus
  phase bias at the field edge in slices of the profile's AF grid,
  ``disparity_offset_x_px = this * disparity_px_per_dioptre * slice_dioptres``.

Derived keys are applied after the plain ones (so they follow the drawn
disparity scale).  ``slice_dioptres`` is the dioptre step of the profile's
``[af]`` grid through its ``[lens_map]``.
"""

from __future__ import annotations

import math
from dataclasses import fields, replace
from typing import Any

import numpy as np

from ..errors import FormatError
from .params import SimParams

DERIVED = ("blur_per_disparity", "disparity_offset_x_slices", "disparity_offset_y_slices")


def _range(v: Any, key: str, where: str) -> tuple[float, float, bool]:
    """(lo, hi, log) of one ``[sim_family]`` entry; FormatError naming the key when malformed."""
    log = False
    if isinstance(v, dict):
        if set(v) != {"log"}:
            raise FormatError(f"{where}: {key}: a table entry must be {{log = [lo, hi]}}, got keys {sorted(v)}")
        v, log = v["log"], True
    if not (isinstance(v, list) and len(v) == 2 and all(isinstance(t, (int, float)) and not isinstance(t, bool) for t in v)):
        raise FormatError(f"{where}: {key} = {v!r}: expected [lo, hi] or {{log = [lo, hi]}}")
    lo, hi = float(v[0]), float(v[1])
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise FormatError(f"{where}: {key} = {v!r}: need finite lo <= hi")
    if log and lo <= 0:
        raise FormatError(f"{where}: {key}: a log range needs lo > 0, got {lo}")
    return lo, hi, log


def parse_family(table: dict[str, Any], where: str = "[sim_family]") -> dict[str, tuple[float, float, bool]]:
    """Validate a ``[sim_family]`` table -> {key: (lo, hi, log)}."""
    if not isinstance(table, dict):
        raise FormatError(f"{where}: must be a table")
    floats = {f.name for f in fields(SimParams) if isinstance(getattr(SimParams, f.name), float)}
    bad = sorted(set(table) - floats - set(DERIVED))
    if bad:
        raise FormatError(f"{where}: unknown or non-float key(s) {', '.join(bad)} (float SimParams fields or {', '.join(DERIVED)})")
    return {k: _range(v, k, where) for k, v in table.items()}


def draw_params(base: SimParams, table: dict[str, Any], seed: int, slice_dioptres: float,
                where: str = "[sim_family]") -> SimParams:
    """The camera number ``seed`` of the family: ``base`` with every key of ``table`` drawn (module doc)."""
    fam = parse_family(table, where)
    rng = np.random.default_rng([int(seed), 0xFA411])
    drawn: dict[str, float] = {}
    for key in sorted(fam):  # sorted: the draw does not depend on the table's order
        lo, hi, log = fam[key]
        u = float(rng.uniform())
        drawn[key] = math.exp(math.log(lo) + u * (math.log(hi) - math.log(lo))) if log else lo + u * (hi - lo)
    plain = {k: v for k, v in drawn.items() if k not in DERIVED}
    p = replace(base, **plain)  # type: ignore[arg-type]  # every key is a float field (parse_family)
    extra: dict[str, float] = {}
    if "blur_per_disparity" in drawn:
        extra["blur_px_per_dioptre"] = drawn["blur_per_disparity"] * p.disparity_px_per_dioptre
    px_per_slice = p.disparity_px_per_dioptre * float(slice_dioptres)
    for axis in ("x", "y"):
        if f"disparity_offset_{axis}_slices" in drawn:
            extra[f"disparity_offset_{axis}_px"] = drawn[f"disparity_offset_{axis}_slices"] * px_per_slice
    p = replace(p, **extra)  # type: ignore[arg-type]
    p.validate(f"{where} (seed {seed})")
    return p
