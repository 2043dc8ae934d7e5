"""Per-position calibration beats the global one away from the centre, on both sim lenses.

A small seeded set per profile: 4 calibration scenes and 2 held-out test
scenes of 12 RoIs (the 3 x 4 grid), 25 slices each.  One-shot prediction
(one capture at each start slice -> target through the calibration) is
scored in slices against the rig's truth, for the 10 RoIs off the centre.
Measured with these seeds (median |error| / fraction within 1 slice, off-centre):
  sim-default: per-position 0.37 / 0.73, global 0.73 / 0.62
  sim-wide:    per-position 0.80 / 0.54, global 1.95 / 0.31
(the lead's ``hil-af eval`` runs the full closed-loop protocol; docs/pdaf-calibration.md.)
"""

from __future__ import annotations

import numpy as np
import pytest

from hil_af.calibration.fit import fit_calibration, measure_stacks
from hil_af.calibration.predict import PdafPredictor, one_shot_errors
from hil_af.capture import sweep
from hil_af.clock import SimClock
from hil_af.drivers.registry import open_rig
from hil_af.stacks import save_stack

SLICES = 25
CENTRE = (5, 6)  # the two middle RoIs of the 3 x 4 grid
OFF = [i for i in range(12) if i not in CENTRE]


def _sweeps(tmp_path, profile, seed, scenes):
    paths = []
    with open_rig(f"sim://?seed={seed}&profile={profile}", clock=SimClock()) as rig:
        for i in scenes:
            rig.change_scene(i)
            p = tmp_path / f"{profile}-{seed}-{i}.npz"
            save_stack(p, sweep(rig, SLICES, progress=False), compressed=False)
            paths.append(p)
    return paths


@pytest.mark.parametrize("profile", ["sim-default", "sim-wide"])
def test_per_position_beats_global_off_centre(tmp_path, profile):
    from hil_af.stacks import load_stack

    calib = _sweeps(tmp_path, profile, seed=11, scenes=range(4))
    test = _sweeps(tmp_path, profile, seed=12, scenes=range(2))
    s = measure_stacks(calib)
    per = PdafPredictor(fit_calibration(s, (3, 4)))
    glo = PdafPredictor(fit_calibration(s, global_fit=True))
    e_per = np.concatenate([one_shot_errors(per, load_stack(p)) for p in test])[:, OFF]
    e_glo = np.concatenate([one_shot_errors(glo, load_stack(p)) for p in test])[:, OFF]
    med_per, med_glo = np.nanmedian(e_per), np.nanmedian(e_glo)
    le1_per, le1_glo = np.nanmean(e_per <= 1), np.nanmean(e_glo <= 1)
    print(f"{profile}: median per {med_per:.2f} global {med_glo:.2f}; le1 per {le1_per:.2f} global {le1_glo:.2f}")
    assert med_per < 0.8 * med_glo
    assert le1_per > le1_glo + 0.05
