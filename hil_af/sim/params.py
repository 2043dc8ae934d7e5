"""Parameters of the simulated dual-pixel rig, read from a rig profile's ``[sim]`` table.

Units are in the names: ``_px`` pixels, ``_dioptres`` dioptres (1/m),
``_dn`` digital numbers of the 10-bit raw, ``_s`` seconds, ``_codes`` VCM DAC
codes.  Field positions ``(x, y)`` are normalised to [-1, 1] over the view
plane (x right, y down); ``r2 = (x**2 + y**2) / 2`` is 1 in the corners.

Field-dependent terms (what a position-aware AF model must learn):

- disparity gain ``g(x, y) = 1 + disparity_gain_r2 * r2 + disparity_gain_x * x + disparity_gain_y * y``
- disparity offset ``o(x, y) = disparity_offset_x_px * x + disparity_offset_y_px * y``
  (px of R-minus-L shift at zero defocus)
- disparity (R minus L, px) = ``g * disparity_px_per_dioptre * defocus + o``
- field curvature: the lens at focus F dioptres is sharp at ``F + field_curvature_dioptres * r2``
- vignetting: common ``1 - vignette_r2 * r2``, times ``(1 - view_gain_imbalance) * (1 - vignette_lr * x)``
  (left view) and ``(1 + view_gain_imbalance) * (1 + vignette_lr * x)`` (right view).
- asymmetric half-aperture PSFs (``split_offset``, ``split_offset_x``, ``psf_asymmetry``,
  ``cats_eye``, ``focus_asymmetry``, ``coma_px_per_dioptre``,
  ``disparity_nonlinearity_per_dioptre``): see ``hil_af.sim.psf``; all 0 by default.

A profile may also carry a ``[sim_family]`` table (``hil_af.sim.family``): then every
rig seed draws its own parameters from the ranges there (domain randomisation).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from ..errors import FormatError


@dataclass(frozen=True)
class SimParams:
    """Every number the simulator uses; defaults are the ``sim-default`` profile."""

    height: int = 256
    width: int = 384
    # optics
    blur_px_per_dioptre: float = 3.0
    base_blur_sigma_px: float = 0.6
    aperture_softness: float = 0.35
    disparity_px_per_dioptre: float = 1.0
    disparity_gain_r2: float = -0.30
    disparity_gain_x: float = 0.10
    disparity_gain_y: float = 0.0
    disparity_offset_x_px: float = 0.30
    disparity_offset_y_px: float = 0.20
    field_curvature_dioptres: float = 0.30
    vignette_r2: float = 0.25
    vignette_lr: float = 0.12
    view_gain_imbalance: float = 0.0
    # asymmetric dual-pixel PSFs (hil_af.sim.psf); 0 = mirrored half-discs
    split_offset: float = 0.0
    split_offset_x: float = 0.0
    psf_asymmetry: float = 0.0
    cats_eye: float = 0.0
    focus_asymmetry: float = 0.0
    coma_px_per_dioptre: float = 0.0
    disparity_nonlinearity_per_dioptre: float = 0.0
    # scene
    depth_range_m: tuple[float, float] = (0.1, 5.0)
    # sensor
    black_level: int = 64
    white_level: int = 1023
    exposure_dn: float = 600.0
    conversion_gain_e_per_dn: float = 4.0
    read_noise_dn: float = 1.5
    frame_time_s: float = 1.0 / 30.0
    # VCM
    vcm_range_codes: tuple[float, float] = (0.0, 1023.0)
    vcm_tau_s: float = 0.008
    vcm_settle_taus: float = 7.0
    vcm_hysteresis_codes: float = 1.5
    vcm_start_code: float = 500.0

    @classmethod
    def from_table(cls, table: dict[str, Any] | None, where: str = "[sim]") -> "SimParams":
        """Build from a profile's ``[sim]`` table; unknown or ill-typed keys raise FormatError naming them."""
        table = dict(table or {})
        known = {f.name: f for f in fields(cls)}
        bad = sorted(set(table) - set(known))
        if bad:
            raise FormatError(f"{where}: unknown key(s) {', '.join(bad)} (known: {', '.join(sorted(known))})")
        kw: dict[str, Any] = {}
        for k, v in table.items():
            default = getattr(cls, k)
            try:
                if isinstance(default, tuple):
                    if not isinstance(v, (list, tuple)) or len(v) != 2:
                        raise ValueError("expected a 2-element list")
                    kw[k] = (float(v[0]), float(v[1]))
                elif isinstance(default, int) and not isinstance(default, bool):
                    if isinstance(v, bool) or int(v) != v:
                        raise ValueError("expected an integer")
                    kw[k] = int(v)
                else:
                    if isinstance(v, bool):
                        raise ValueError("expected a number")
                    kw[k] = float(v)
            except (TypeError, ValueError) as e:
                raise FormatError(f"{where}: {k} = {v!r}: {e}") from None
        p = cls(**kw)
        p.validate(where)
        return p

    def validate(self, where: str = "[sim]") -> None:
        def need(cond: bool, msg: str) -> None:
            if not cond:
                raise FormatError(f"{where}: {msg}")

        need(self.height >= 32 and self.width >= 32, f"height, width must be >= 32, got {self.height}x{self.width}")
        need(self.blur_px_per_dioptre >= 0, f"blur_px_per_dioptre must be >= 0, got {self.blur_px_per_dioptre}")
        need(self.base_blur_sigma_px >= 0, f"base_blur_sigma_px must be >= 0, got {self.base_blur_sigma_px}")
        need(self.aperture_softness > 0, f"aperture_softness must be > 0, got {self.aperture_softness}")
        need(0 < self.depth_range_m[0] < self.depth_range_m[1], f"depth_range_m must be [near, far] with 0 < near < far, got {list(self.depth_range_m)}")
        need(0 <= self.black_level < self.white_level, f"need 0 <= black_level < white_level, got {self.black_level}, {self.white_level}")
        need(self.exposure_dn > 0, f"exposure_dn must be > 0, got {self.exposure_dn}")
        need(self.conversion_gain_e_per_dn > 0, f"conversion_gain_e_per_dn must be > 0, got {self.conversion_gain_e_per_dn}")
        need(self.read_noise_dn >= 0, f"read_noise_dn must be >= 0, got {self.read_noise_dn}")
        need(self.frame_time_s >= 0, f"frame_time_s must be >= 0, got {self.frame_time_s}")
        need(self.vcm_range_codes[0] < self.vcm_range_codes[1], f"vcm_range_codes must be [min, max] with min < max, got {list(self.vcm_range_codes)}")
        need(self.vcm_tau_s >= 0 and self.vcm_settle_taus >= 0, "vcm_tau_s and vcm_settle_taus must be >= 0")
        need(self.vcm_hysteresis_codes >= 0, f"vcm_hysteresis_codes must be >= 0, got {self.vcm_hysteresis_codes}")
        lo, hi = self.vcm_range_codes
        need(lo <= self.vcm_start_code <= hi, f"vcm_start_code {self.vcm_start_code} outside vcm_range_codes {list(self.vcm_range_codes)}")
        need(0 <= self.vignette_r2 < 1, f"vignette_r2 must be in [0, 1), got {self.vignette_r2}")
        need(-1 < self.vignette_lr < 1, f"vignette_lr must be in (-1, 1), got {self.vignette_lr}")
        for name in ("view_gain_imbalance", "split_offset", "split_offset_x", "psf_asymmetry", "focus_asymmetry"):
            need(-0.9 <= getattr(self, name) <= 0.9, f"{name} must be in [-0.9, 0.9], got {getattr(self, name)}")
        need(0 <= self.cats_eye <= 1.0, f"cats_eye must be in [0, 1], got {self.cats_eye}")
        need(abs(self.coma_px_per_dioptre) <= 5, f"coma_px_per_dioptre must be in [-5, 5], got {self.coma_px_per_dioptre}")
        need(abs(self.disparity_nonlinearity_per_dioptre) <= 0.5,
             f"disparity_nonlinearity_per_dioptre must be in [-0.5, 0.5], got {self.disparity_nonlinearity_per_dioptre}")
        import math
        bad = [f.name for f in fields(self) if isinstance(getattr(self, f.name), float) and not math.isfinite(getattr(self, f.name))]
        need(not bad, f"{', '.join(bad)} must be finite")

    @property
    def hw(self) -> tuple[int, int]:
        return (self.height, self.width)

    def to_json(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}
