"""Contrast AF (issue 13): cdaf-libcamera follows af.cpp, cdaf-fast beats it; --timeout, --range,
--start; continuous mode that does not hunt."""

from __future__ import annotations

import numpy as np
import pytest

from hil_af.cli import main
from hil_af.clock import SimClock
from hil_af.controller.base import AFState
from hil_af.controller.core import Controller
from hil_af.controller.libcamera_af import LibcameraAfParams, find_peak
from hil_af.drivers.registry import open_rig
from hil_af.errors import BadInput
from hil_af.frames import centre_roi


def _rig(seed: int, **q):
    extra = "".join(f"&{k}={v}" for k, v in q.items())
    return open_rig(f"sim://?seed={seed}{extra}", clock=SimClock())


def _roi(rig):
    return centre_roi(rig.source.sensor_hw)[None]


def test_find_peak_is_libcamera_parabola():
    # parabola through (0, 1), (1, 3), (2, 2): y = -1.5 x^2 + 3.5 x + 1, vertex 7/6
    assert find_peak([(0.0, 1.0), (1.0, 3.0), (2.0, 2.0)], 1) == pytest.approx(7 / 6)
    # best sample at the end: its two inner neighbours are used (af.cpp: i-- at the end)
    assert find_peak([(0.0, 1.0), (1.0, 3.0), (2.0, 4.0)], 2) == pytest.approx(2.0)  # clamped to the samples
    assert find_peak([(0.0, 5.0), (1.0, 3.0)], 0) == 0.0  # fewer than 3 samples: the best one


def test_libcamera_params_read_from_a_tuning_file():
    tuning = {"version": 2.0, "algorithms": [{"rpi.agc": {}}, {"rpi.af": {"speeds": {
        "normal": {"step_coarse": 1.0, "step_fine": 0.25, "contrast_ratio": 0.75, "step_frames": 5, "max_slew": 1.5},
        "fast": {"step_coarse": 1.25, "step_fine": 0.0, "step_frames": 4, "max_slew": 2.0}}}}]}
    assert LibcameraAfParams.from_tuning(tuning) == LibcameraAfParams(1.0, 0.25, 0.75, 5, 1.5)
    fast = LibcameraAfParams.from_tuning(tuning, "fast")
    assert (fast.step_coarse, fast.step_fine, fast.step_frames) == (1.25, 0.0, 4)


def test_libcamera_scan_steps_as_af_cpp():
    with _rig(3) as rig:
        res = Controller(rig, method="cdaf-libcamera").focus(rois=_roi(rig), start=500.0)
        steps = [t for t in res.trace if "libcamera" in t]
    coarse = [t["dioptres"] for t in steps if t["libcamera"] == "coarse"]
    fine = [t["dioptres"] for t in steps if t["libcamera"] == "fine"]
    assert coarse[0] == 0.0 and np.allclose(np.diff(coarse), 1.0)  # from focusMin up, step_coarse apart
    assert len(fine) == 3 and np.allclose(np.diff(fine), -0.25)    # back down, step_fine apart
    # every measured step waited step_frames frames first (all frames count as captures)
    assert res.captures >= (len(coarse) + len(fine) + 1) * (LibcameraAfParams().step_frames + 1)


@pytest.mark.parametrize("seed", [2001, 2004])
def test_cdaf_fast_needs_half_the_frames_of_libcamera_at_one_slice_accuracy(seed):
    with _rig(seed) as rig:
        roi = _roi(rig)
        truth = float(rig.truth(roi)[0])
        spacing = float(np.diff(rig.slice_positions())[0])
        fast = Controller(rig, method="cdaf-fast").focus(rois=roi, start=300.0)
        lib = Controller(rig, method="cdaf-libcamera").focus(rois=roi, start=300.0)
    assert fast.state is AFState.FOCUSED and abs(fast.position - truth) <= spacing
    assert 2 * fast.elapsed_s <= lib.elapsed_s  # sim-clock time = frames of the stream that went by


def test_timeout_fails_the_cycle_and_says_so(capsys):
    with _rig(1) as rig:
        res = Controller(rig, method="cdaf-fast").focus(rois=_roi(rig), timeout_s=0.1)
        assert res.state is AFState.FAILED and "time budget exceeded" in res.reason
        assert res.elapsed_s < 0.1 + 2 * rig.source.params.frame_time_s
        with pytest.raises(BadInput, match="timeout"):
            Controller(rig).focus(timeout_s=-1)
    assert main(["focus", "sim://?seed=1", "--method", "cdaf-fast", "--clock", "sim", "--timeout", "0.1"]) == 1
    assert "time budget exceeded" in capsys.readouterr().err
    assert main(["focus", "sim://?seed=1", "--method", "cdaf", "--clock", "sim", "--timeout", "0"]) == 2


def test_range_near_keeps_the_lens_in_the_near_range():
    with _rig(5) as rig:
        near_lo = float(rig.lens_map.to_code(3.0))  # libcamera macro range: 3..15 dioptres
        res = Controller(rig, method="cdaf-fast").focus(rois=_roi(rig), af_range="near")
        moves = [t["move"] for t in res.trace if "move" in t]
        assert moves and min(moves) >= near_lo - 1e-6 and max(moves) <= rig.lens.range[1]
        normal = Controller(rig, method="cdaf-fast").focus(rois=_roi(rig), af_range="normal")
        assert all(100 - 1e-6 <= t["move"] <= 900 + 1e-6 for t in normal.trace if "move" in t)
        with pytest.raises(BadInput, match="unknown AF range"):
            Controller(rig).focus(af_range="far")


def test_start_position_is_where_the_search_starts():
    with _rig(6) as rig:
        res = Controller(rig, method="cdaf-fast").focus(rois=_roi(rig), start=850.0)
        assert [t for t in res.trace if "move" in t][0]["move"] == 850.0
        moves = rig.lens.moves
        with pytest.raises(BadInput, match="outside the lens range"):
            Controller(rig, method="cdaf-fast").focus(start=5000)
        assert rig.lens.moves == moves  # rejected before the lens moved


def test_continuous_mode_does_not_hunt_in_a_steady_scene_and_ignores_a_brief_change():
    with _rig(7) as rig:
        ctl = Controller(rig, method="cdaf-fast", retrigger_frames=3)
        ctl.set_windows(_roi(rig))
        ctl.set_mode("continuous")
        assert ctl.continuous_step() is not None
        focused_at = rig.lens.position
        assert [ctl.continuous_step() for _ in range(12)] == [None] * 12  # noise alone: no cycle
        rig.change_scene(5)
        brief = [ctl.continuous_step() for _ in range(2)]  # a change for 2 frames only
        rig.source.set_scene("cards", rig.source.seed)
        assert brief == [None, None] and [ctl.continuous_step() for _ in range(6)] == [None] * 6
        assert rig.lens.position == focused_at
        rig.change_scene(5)  # a change that holds: exactly one cycle
        runs = [ctl.continuous_step() for _ in range(10)]
        assert sum(r is not None for r in runs) == 1 and runs[2] is not None


def test_continuous_mode_never_steps_around_the_same_peak():
    with _rig(8) as rig:  # every frame counts as changed: a cycle every 2 frames on a steady scene
        ctl = Controller(rig, method="cdaf-fast", retrigger_change=-1.0, retrigger_frames=2)
        ctl.set_windows(_roi(rig))
        ctl.set_mode("continuous")
        results = [r for r in (ctl.continuous_step() for _ in range(12)) if r is not None]
        assert len(results) >= 3
        assert len({r.position for r in results}) == 1  # the lens goes back to the same place every time


def test_continuous_mode_does_not_rescan_a_scene_without_a_peak():
    with _rig(9, scene="white") as rig:
        ctl = Controller(rig, method="cdaf-fast", retrigger_frames=3)
        ctl.set_mode("continuous")
        first = ctl.continuous_step()
        assert first is not None and first.state is AFState.FAILED and "no contrast peak" in first.reason
        assert [ctl.continuous_step() for _ in range(10)] == [None] * 10
