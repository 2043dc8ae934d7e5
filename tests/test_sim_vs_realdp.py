"""The domain-randomised simulator covers what real dual-pixel captures look like (tests/_data.py says where they are found:
Pixel 4 scenes and a white-sheet flat field, Xin et al. ICCV 2021).

Measured (docs/sim.md, "Real optics"; benchmarks/realdp_vs_sim.py draws the figure):
- real flat field: L/R ratio 1.04..1.35 across the columns; fitted view_gain_imbalance -0.087,
  vignette_lr -0.111, inside the domain-random ranges [-0.15, 0.15] and [-0.3, 0.3];
- real cells (64 px, confidence >= 0.5): |disparity| up to ~10 px, correlation peak median
  0.910 / 0.961 / 0.941 / 0.942 in the 2-4 / 4-6 / 6-8 / 8-12 px bins; 12 domain-random
  cameras give p10..p90 0.734..0.971 / 0.680..0.949 / 0.626..0.940 / 0.655..0.901 there.
  Below 8 px the real medians lie inside what the family renders (its 1st..99th
  percentile), in its upper part (above its median): real half-PSFs stay more alike far from
  focus than the typical simulated camera.  In the 8-12 px bin the real median (0.942) is at
  the family's 99th percentile (0.940, 25 cells): NOT covered -- a known limit, stated in
  docs/sim.md, and left out of the assertion below.
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
        if len(peaks) < 20 or len(sb[b]) < 10 or b[0] >= 8.0:  # 8-12 px: the known gap (module doc)
            continue
        lo, mid, hi = np.percentile(sb[b], [1, 50, 99])
        real_median = float(np.median(peaks))
        assert lo <= real_median <= hi, (b, real_median, float(lo), float(hi))
        assert real_median >= mid, (b, real_median, float(mid))  # the known bias (module doc)
        checked += 1
    assert checked >= 3  # the 2-4, 4-6 and 6-8 px bins
