"""Controller tests written once against the plugin's ``rig`` fixture: they run on the
simulator by default and unchanged on a real rig with ``pytest --hil rig.toml``.

Methods here need no model or calibration (cdaf), so they run on any rig.
"""

from __future__ import annotations

import numpy as np
import pytest

from hil_af.controller.base import AFState
from hil_af.controller.core import Controller
from hil_af.frames import centre_roi


def _slice_step(rig) -> float:
    return float(np.median(np.diff(rig.slice_positions())))


def test_contrast_focus_cycle_ends_focused_inside_the_range(rig):
    c = Controller(rig, method="cdaf")
    roi = centre_roi(c.view_hw())
    res = c.focus(rois=roi)
    lo, hi = rig.lens.range
    assert res.state == AFState.FOCUSED, res.reason
    assert lo <= res.position <= hi
    assert rig.lens.position == pytest.approx(res.position, abs=max(1.0, 0.01 * (hi - lo)))
    assert res.captures >= 3 and res.moves >= 1


@pytest.mark.rig_feature("truth")
def test_contrast_focus_lands_within_two_slices_of_truth(rig):
    c = Controller(rig, method="cdaf")
    roi = centre_roi(c.view_hw())
    res = c.focus(rois=roi)
    truth = float(rig.truth(np.asarray(roi)[None])[0])
    assert abs(res.position - truth) <= 2 * _slice_step(rig)


@pytest.mark.hil
def test_real_rig_focus_is_repeatable(rig):
    c = Controller(rig, method="cdaf")
    roi = centre_roi(c.view_hw())
    a = c.focus(rois=roi)
    lo, hi = rig.lens.range
    rig.lens.move_to(lo)  # start from the other end
    b = c.focus(rois=roi)
    assert a.state == b.state == AFState.FOCUSED
    assert abs(a.position - b.position) <= 2 * _slice_step(rig)
