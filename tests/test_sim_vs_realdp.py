"""The domain-randomised simulator covers what real dual-pixel captures look like (tests/_data.py says where they are found:
Pixel 4 scenes and a white-sheet flat field, Xin et al. ICCV 2021).

Measured (docs/sim.md, "Real optics"; benchmarks/realdp_vs_sim.py draws the figure):
- real flat field: L/R ratio 1.04..1.35 across the columns; fitted view_gain_imbalance -0.087,
  vignette_lr -0.111, inside the domain-random ranges [-0.15, 0.15] and [-0.3, 0.3];
- real cells (64 px, confidence >= 0.5): |disparity| 3.5..10 px, correlation peak median
  0.95 / 0.94 / 0.92 in the 4-6 / 6-8 / 8-12 px bins; the domain-random cameras span
  (10th..90th percentile of their cells) about 0.6..0.99 there.
"""

from __future__ import annotations

import numpy as np
import pytest

from _data import REALDP

pytestmark = pytest.mark.skipif(not (REALDP / "001.npz").exists(),
                                reason=f"real dual-pixel captures not found at {REALDP} (set HIL_AF_REALDP to their folder)")


def _family_range(key: str) -> tuple[float, float]:
    from hil_af.profiles import load_profile

    v = load_profile("domain-random")["sim_family"][key]
    v = v["log"] if isinstance(v, dict) else v
    return float(v[0]), float(v[1])


def test_real_flat_field_left_right_ratio_lies_inside_the_family():
    from hil_af.sim.realcheck import fit_lr_gain, lr_ratio_columns
    from hil_af.stacks import load_frame

    x, ratio = lr_ratio_columns(load_frame(REALDP / "flatfield.npz"))
    assert ratio.min() > 1.0 and ratio.max() > 1.3  # left brighter everywhere, up to ~35 % on one side
    o, v = fit_lr_gain(x, ratio)
    model = (1 - o) * (1 - v * x) / ((1 + o) * (1 + v * x))
    assert np.abs(model - ratio).max() < 0.06, (model, ratio)
    lo, hi = _family_range("view_gain_imbalance")
    assert lo <= o <= hi, o
    lo, hi = _family_range("vignette_lr")
    assert lo <= v <= hi, v


def test_real_disparity_and_half_psf_similarity_fall_inside_what_the_family_renders():
    from hil_af.sim.realcheck import disparity_peak_cells, peak_by_bin, sim_cells
    from hil_af.stacks import load_frame

    real = np.concatenate([disparity_peak_cells(load_frame(REALDP / f"{s}.npz")) for s in ("001", "002", "003", "004")])
    sim = sim_cells("domain-random", range(12))
    assert np.abs(sim[:, 0]).max() >= np.percentile(np.abs(real[:, 0]), 95)  # the sim reaches the real disparities
    rb, sb = peak_by_bin(real), peak_by_bin(sim)
    checked = 0
    for b, peaks in rb.items():
        if len(peaks) < 20 or len(sb[b]) < 10:
            continue
        lo, hi = np.percentile(sb[b], [10, 90])
        assert lo <= np.median(peaks) <= hi, (b, float(np.median(peaks)), float(lo), float(hi))
        checked += 1
    assert checked >= 3
