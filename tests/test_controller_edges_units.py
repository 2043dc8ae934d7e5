"""Edges of the contrast methods and controller helpers, by hand (tests/_ctl_fakes.py rig double).

libcamera's ``findPeak`` and the rpi.af tuning reader (``libcamera_af``), cdaf-fast's grid, fits
and walk (``cdaf_fast``), AF-range corner cases, statistics regions that do not divide evenly,
pdaf-loop's slew limit downwards, results' JSON, and the RoI-only capture path.  Expected
values are parabola vertices and grid points worked out in the comments.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _ctl_fakes import gaussian, rig

from hil_af.controller.af_range import range_dioptres, range_positions
from hil_af.controller.base import AFState, FocusResult
from hil_af.controller.cdaf_fast import _fit, _grid, log_parabola_vertex
from hil_af.controller.core import Controller
from hil_af.controller.focus_stats import region_weights
from hil_af.controller.libcamera_af import LibcameraAfParams, find_peak
from hil_af.controller.methods import MethodConfig
from hil_af.controller.session import FocusSession
from hil_af.controller.base import Limits
from hil_af.errors import BadInput
from hil_af.optics import LensMap


# -- libcamera -----------------------------------------------------------------------------
def test_find_peak_parabola_at_the_ends_and_with_uneven_spacing():
    # y = -0.9 x^2 + 0.8 x + 3 through (0, 3), (1, 2.9), (2, 1): vertex 4/9; best sample 0 uses samples 0..2
    assert find_peak([(0.0, 3.0), (1.0, 2.9), (2.0, 1.0)], 0) == pytest.approx(4 / 9)
    # best at the end of 4: samples 1..3, (1, 3), (2, 3.9), (3, 4): y = -0.4 x^2 + 2.1 x + ..., vertex 2.625
    assert find_peak([(0.0, 0.0), (1.0, 3.0), (2.0, 3.9), (3.0, 4.0)], 3) == pytest.approx(2.625)
    # half-dioptre steps: vertex 1.5 - 0.5 x 0.5 x (1.5 - 1) / (1 - 4 + 1.5) = 1.58333
    assert find_peak([(1.0, 1.0), (1.5, 2.0), (2.0, 1.5)], 1) == pytest.approx(1.5 + 1 / 12)
    assert find_peak([(0.0, 3.0), (1.0, 1.0), (2.0, 2.0)], 1) == 1.0  # a minimum: the sample itself
    assert find_peak([(0.0, 4.0), (1.0, 3.0), (2.0, 1.0)], 0) == 0.0  # vertex -0.5 clipped to the samples
    # |denominator| 2 |y0 - 2 y1 + y2| exactly 1/64 counts; 0.99 x that does not
    assert find_peak([(0.0, 0.0), (1.0, 2 / 256), (2.0, 2 / 256)], 1) == 1.5
    assert find_peak([(0.0, 0.0), (1.0, 0.99 * 2 / 256), (2.0, 0.99 * 2 / 256)], 1) == 1.0


def test_libcamera_params_from_a_tuning_file_fall_back_per_key_and_per_speed():
    normal = {"step_coarse": 2.0, "step_fine": 0.5, "contrast_ratio": 0.8, "step_frames": 3.0, "max_slew": 4.0}
    tuning = {"algorithms": [{"rpi.agc": {}}, {"rpi.af": {"speeds": {"normal": normal, "fast": {"step_coarse": 1.25}}}}]}
    p = LibcameraAfParams.from_tuning(tuning)
    assert p == LibcameraAfParams(2.0, 0.5, 0.8, 3, 4.0) and type(p.step_frames) is int
    assert LibcameraAfParams.from_tuning(tuning, "slow") == p  # an unknown speed: normal's
    assert LibcameraAfParams.from_tuning(tuning, "fast") == LibcameraAfParams(1.25, 0.25, 0.75, 5, 1.5)
    assert LibcameraAfParams.from_tuning({"algorithms": [{"rpi.af": {}}]}) == LibcameraAfParams()
    assert LibcameraAfParams.from_tuning({"algorithms": [{"rpi.af": {"speeds": {"fast": {}}}}]}, "x") == \
        LibcameraAfParams()


def test_libcamera_takes_its_params_from_the_config_and_dioptres_from_the_lens_map():
    cfg = MethodConfig()
    cfg.libcamera = LibcameraAfParams(step_coarse=2.0, step_fine=0.0, step_frames=0)  # type: ignore[attr-defined]
    lm = LensMap((0.0, 6.0), (0.0, 960.0))  # 160 codes a dioptre
    r = rig(lambda p: 20.0 - (p / 160.0 - 3.3) ** 2, lens_map=lm)
    res = Controller(r, method="cdaf-libcamera", config=cfg).focus()
    coarse = [t for t in res.trace if "libcamera" in t]
    # 0, 2, 4, 6 D (no drop below 0.75 x max before focusMax), no fine pass (step_fine 0)
    assert [t["dioptres"] for t in coarse] == [0.0, 2.0, 4.0, 6.0]
    assert [t["contrast"] for t in coarse] == pytest.approx([20 - 3.3 ** 2, 20 - 1.3 ** 2, 20 - 0.7 ** 2, 20 - 2.7 ** 2])
    assert all(set(t) == {"t", "libcamera", "dioptres", "contrast"} for t in coarse)
    # 5 measured frames, no step_frames; each 2 D step and the 2.7 D move back first slews 1.5 D (a frame)
    assert res.position == pytest.approx(3.3 * 160.0) and res.captures == 5 + 4


def test_libcamera_keeps_the_first_of_equal_maxima():
    table = {0: 6.0, 1: 6.0, 2: 10.0, 3: 8.0, 4: 8.0, 5: 10.0, 6: 5.0}  # contrast by dioptre
    r = rig(lambda p: float(np.interp(p / 80.0, list(table), list(table.values()))))
    res = Controller(r, method="cdaf-libcamera").focus()
    fine = [t["dioptres"] for t in res.trace if t.get("libcamera") == "fine"]
    # peak of (1, 6), (2, 10), (3, 8): 2 + 1/6 D; the fine pass starts step_fine above it
    assert fine[0] == pytest.approx(2 + 1 / 6 + 0.25)


# -- cdaf-fast -----------------------------------------------------------------------------
def test_grid_steps_and_log_parabola_vertex():
    assert _grid(0.0, 1.5, 2.0) == [0.0, 1.5] and _grid(2.0, 12.0, 2.0) == [2.0, 4.0, 6.0, 8.0, 10.0, 12.0]
    assert _grid(0.0, 12.0 + 1e-10, 2.0) == pytest.approx([0.0, 2.0, 4.0, 6.0, 8.0, 10.0, 12.0])
    assert log_parabola_vertex([0, 1, 2], np.exp([0.0, 1.0, 0.0])) == pytest.approx(1.0)
    assert log_parabola_vertex([0.0, 1.0, 3.0], np.exp([-0.25, -0.25, -6.25])) == pytest.approx(0.5)  # -(x - .5)^2
    assert log_parabola_vertex([0.0, 1.0, 2.0], np.exp([0.0, 0.1, 0.4])) is None  # opens upward (a = 0.1)


def test_fit_uses_the_best_sample_within_1_5_h_and_its_neighbours_clipped_to_them():
    e = math.exp
    # 0.9 is exactly 1.5 h away: in; 1.2 is not (though higher); its trio (0, .9, 1.2) opens upward: 0.9 itself
    assert _fit({0.0: 1.0, 0.9: 2.0, 1.2: 9.0, 3.0: 1.0}, 0.0, 0.6, 0.0, 3.0) == 0.9
    # trio (0, 1, 2) of log contrast 0, 1.9, 3: vertex 2.875, clipped to the trio's span
    assert _fit({0.0: 1.0, 1.0: e(1.9), 2.0: e(3.0)}, 0.0, 0.7, 0.0, 2.0) == 2.0
    assert _fit({0.0: e(3.0), 1.0: e(1.9), 2.0: 1.0}, 2.0, 0.7, 0.0, 2.0) == 0.0
    assert _fit({0.0: 5.0, 1.0: 1.0, 2.0: 0.5}, 0.0, 0.6, 0.0, 2.0) == 0.0  # best at an end: itself
    assert _fit({0.0: 0.5, 1.0: 1.0, 2.0: 5.0}, 2.0, 0.6, 0.0, 2.0) == 2.0
    assert _fit({0.0: 1.0, 3.0: 2.0}, 1.5, 0.6, 0.0, 3.0) == 1.5  # nothing near: the centre


def test_cdaf_fast_walks_a_grid_in_the_lens_maps_dioptres_and_traces_every_sample():
    lm = LensMap((0.0, 6.0), (0.0, 960.0))  # 160 codes a dioptre: grid 0, 2, 4, 6 D
    r = rig(gaussian(528.0, 112.0), lens_map=lm)  # peak 3.3 D, 0.7 D wide
    res = Controller(r, method="cdaf-fast").focus()
    # 4 D bracketed by 2 and 6 D; refinement 3.4 and 4.6 D; the log-parabola through 2, 3.4, 4 D: 3.3 D
    assert r.source.exposed_at[:7] == pytest.approx([0.0, 320.0, 640.0, 960.0, 544.0, 736.0, 528.0])
    assert res.position == pytest.approx(528.0) and res.dioptres == pytest.approx(3.3)
    samples = [t for t in res.trace if "cdaf_fast" in t]
    assert [t["cdaf_fast"] for t in samples] == pytest.approx([0.0, 2.0, 4.0, 6.0, 3.4, 4.6, 3.3])
    assert [t["contrast"] for t in samples] == pytest.approx([gaussian(528.0, 112.0)(d * 160) for d in
                                                              (0.0, 2.0, 4.0, 6.0, 3.4, 4.6, 3.3)])
    assert all(set(t) == {"t", "cdaf_fast", "contrast"} for t in samples)


def test_cdaf_fast_on_a_grid_of_unround_dioptres():
    r = rig(gaussian(424.0, 56.0), n=47, hi=920.0)  # 0..11.5 D: grid every 11.5 / 6 = 1.91667 D
    res = Controller(r, method="cdaf-fast").focus()
    d = 11.5 / 6
    coarse = [0.0, d, 2 * d, 3 * d, 4 * d]  # 3 d = 5.75 D is bracketed by 2 d and 4 d
    # (samples are keyed to 1e-4 D, so the fits land within 1e-4 D = 0.008 codes of the peak)
    assert r.source.exposed_at[:8] == pytest.approx([80 * x for x in coarse] + [412.0, 508.0, 424.0], abs=0.01)
    assert res.captures == 8 and res.position == pytest.approx(424.0, abs=0.01)
    r = rig(gaussian(312.0, 56.0), n=47, hi=920.0)  # peak 3.9 D: the best grid point is 2 d = 3.8333 D
    Controller(r, method="cdaf-fast").focus()
    assert r.source.exposed_at[:5] == pytest.approx([0.0, 80 * d, 160 * d, 240 * d, 80 * (2 * d - 0.6)])


def test_cdaf_fast_anchor_is_the_nearer_end_of_a_range_that_does_not_start_at_0_dioptres():
    lm = LensMap((0.0, 12.0), (0.0, 960.0))
    r = rig(gaussian(424.0, 56.0), lo=240.0, hi=960.0, n=37, position=600.0, lens_map=lm)  # 3..12 D, at 7.5 D
    Controller(r, method="cdaf-fast").focus()
    assert r.source.exposed_at[0] == 240.0  # 4.5 D from both ends: the low end


# -- ranges, regions, pdaf-loop, results, the RoI path -------------------------------------
def test_range_corner_cases():
    assert range_dioptres({"af": {"ranges": {"normal": [5, 12], "near": [3, 4]}}}, "full") == (3.0, 12.0)
    bare = rig(lo=100.0, hi=500.0)
    part = np.arange(200, 401, 20)  # int slices covering part of the lens
    normal = range_positions(bare, part, "normal")
    assert normal.dtype == np.float64 and normal.tolist() == part.tolist()
    with pytest.raises(BadInput, match=r"^--range near needs the rig's lens map \(dioptres to codes\): add a "
                                       r"\[lens_map\] to the rig profile$"):
        range_positions(bare, part, "near")
    assert range_positions(bare, np.array([300.0]), "full").tolist() == [100.0, 500.0]  # one slice: 2 points
    assert range_positions(bare, np.array([100.0, 120.0]), "full").tolist() == np.linspace(100, 500, 21).tolist()
    assert range_positions(rig(lo=100.0, hi=120.0), part, "full").tolist() == [100.0, 120.0]
    lm = rig(lens_map=LensMap((0.0, 12.0), (0.0, 960.0)), profile={"af": {"ranges": {"near": [12, 15]}}})
    with pytest.raises(BadInput, match="is outside the lens range"):  # 960..1200 clipped to one point
        range_positions(lm, lm.af_positions, "near")


def test_region_weights_use_whole_pixel_cells():
    w = region_weights((0, 0, 7, 7), 4, 4, (0, 0, 30, 30))  # 30 // 4 = 7 px cells: the window is cell (0, 0)
    assert w.tolist() == [[1.0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_pdaf_loop_slews_down_as_up_and_stops_only_under_half_a_slice(monkeypatch):
    from hil_af.calibration import predict

    class Ideal:
        cal: dict = {}

        def __init__(self, truth):
            self.truth = truth

        def predict(self, frame, rois):
            from types import SimpleNamespace
            return SimpleNamespace(defocus=np.array([frame.lens_position - self.truth]), confidence=np.array([0.9]),
                                   target_position=np.array([self.truth]))

    def run(truth, start):
        monkeypatch.setattr(predict.PdafPredictor, "from_file", staticmethod(lambda p, flatfield_path=None: Ideal(truth)))
        r = rig(position=start)
        return r, Controller(r, method="pdaf-loop", global_calibration="g.json").focus()

    r, res = run(300.0, 960.0)
    assert r.source.exposed_at[:6] == [960.0, 800.0, 640.0, 480.0, 320.0, 300.0] and res.confidence == 0.9
    r, res = run(10.0, 0.0)  # a step of exactly half a slice (10 codes) is taken
    assert r.source.exposed_at[:2] == [0.0, 10.0] and res.position == 10.0
    r, res = run(9.9, 0.0)
    assert res.position == 0.0 and res.captures == 1


def test_results_json_and_status_and_manual_move_messages():
    res = FocusResult(state=AFState.FOCUSED, position=1.0, method="cdaf", trace=[{"t": 0.0}])
    assert res.to_json() == {"state": "Focused", "position": 1.0, "method": "cdaf", "captures": 0, "moves": 0,
                             "verify_frames": 0, "elapsed_s": 0.0, "dioptres": None}
    assert res.to_json(trace=True)["trace"] == [{"t": 0.0}]
    ctl = Controller(rig(), method="cdaf")
    assert ctl.status()["last"] is None
    with pytest.raises(BadInput, match=r"^manual move: position 5000 is outside the lens range \[0, 960\]$"):
        ctl.move(5000)


def test_a_source_that_decodes_rois_alone_serves_every_frame_of_a_cycle_with_them():
    r = rig(gaussian(400.0, 60.0), roi_source=True)
    res = Controller(r, method="cdaf").focus(rois=[[4, 4, 8, 8]])
    assert res.state is AFState.FOCUSED and set(r.source.kinds) == {"roi"}
    s = FocusSession(r, Limits(), r.af_positions, rois=np.array([[4, 4, 8, 8]]))
    s.skip_frames(2)
    assert r.source.kinds[-2:] == ["roi", "roi"]
    res = Controller(r, method="cdaf", roi_decode=False).focus(rois=[[4, 4, 8, 8]])
    assert r.source.kinds[-1] == "whole"


def test_find_peak_at_the_first_of_four_samples_uses_the_first_three():
    # (0, 3), (1, 2.9), (2, 1): vertex 4/9 (the wrap-around trio (2, 1), (3, 0), (0, 3) would be a line)
    assert find_peak([(0.0, 3.0), (1.0, 2.9), (2.0, 1.0), (3.0, 0.0)], 0) == pytest.approx(4 / 9)


def scripted(*values):
    """A contrast curve that ignores the lens: the given values, one per frame, in order."""
    it = iter(values)
    return lambda p: next(it)


def libcamera(curve, **params):
    cfg = MethodConfig()
    cfg.libcamera = LibcameraAfParams(step_frames=0, max_slew=100.0, **params)  # type: ignore[attr-defined]
    r = rig(curve)
    return r, Controller(r, method="cdaf-libcamera", config=cfg).focus()


@pytest.mark.parametrize("values, reason, conf, peak", [
    # coarse 0, 1, 2 D (0.25 < 0.75 x 0.5): peak 1.1 D; fine 1.35, 1.1, 0.85 D; the final frame at exactly
    # 0.75 x the fine maximum passes; confidence (1 / 0.125 - 1) / 2 = 3.5, clipped to 1
    ((0.125, 0.5, 0.25, 0.5, 1.0, 0.5, 0.75), None, 1.0, 1.1),
    ((0.25, 1.0, 0.5, 1.0, 2.0, 1.0, 1.0),  # final under 0.75 x max: libcamera's check fails
     "no contrast peak (libcamera's check: final contrast 1, scan max 2, min 0.25, contrast_ratio 0.75)", None, None),
    # the scan's minimum exactly 0.75 x the maximum still counts as a drop; confidence (1 / 0.75 - 1) / 2;
    # coarse peak 1 - 0.5 (0.875 - 0.75) / (0.75 - 2.5 + 0.875) = 1 + 1/14 D
    ((0.75, 1.25, 0.875, 0.875, 1.0, 0.875, 1.0), None, (1 / 0.75 - 1) / 2, 1 + 1 / 14),
])
def test_libcamera_settle_check_and_confidence_at_their_limits(values, reason, conf, peak):
    r, res = libcamera(scripted(*values))
    assert res.reason == reason and res.captures == 7
    if conf is not None:
        assert res.confidence == pytest.approx(conf) and res.position == pytest.approx(peak * 80.0)
        fine = [t["dioptres"] for t in res.trace if t.get("libcamera") == "fine"]
        assert fine == pytest.approx([peak + 0.25, peak, peak - 0.25])


def test_libcamera_coarse_pass_goes_on_at_exactly_the_contrast_ratio():
    _, res = libcamera(lambda p: float(np.interp(p / 80.0, [0, 1, 2, 3, 12], [4.0, 3.0, 3.5, 2.0, 1.0])))
    assert [t["dioptres"] for t in res.trace if t.get("libcamera") == "coarse"] == [0.0, 1.0, 2.0, 3.0]  # 3 = .75 x 4


def test_libcamera_fine_steps_stop_at_focus_min_and_coarse_steps_at_focus_max():
    _, res = libcamera(lambda p: max(12.0, 20.0 - (p / 80.0 - 0.1) ** 2))  # peak 0.1 D: fine 0.35, 0.1, then 0
    assert [t["dioptres"] for t in res.trace if t.get("libcamera") == "fine"] == pytest.approx([0.35, 0.1, 0.0])
    r = rig(lambda p: 1.0 + p, n=47, hi=920.0)  # 0..11.5 D, contrast rising to the end
    cfg = MethodConfig()
    cfg.libcamera = LibcameraAfParams(step_coarse=0.5, step_frames=0, max_slew=100.0)  # type: ignore[attr-defined]
    res = Controller(r, method="cdaf-libcamera", config=cfg).focus()
    coarse = [t["dioptres"] for t in res.trace if t.get("libcamera") == "coarse"]
    fine = [t["dioptres"] for t in res.trace if t.get("libcamera") == "fine"]
    assert coarse == pytest.approx([0.5 * k for k in range(24)]) and fine == pytest.approx([11.5, 11.25, 11.0])
    cfg.libcamera = LibcameraAfParams(step_frames=0, max_slew=100.0)  # type: ignore[attr-defined]
    res = Controller(rig(lambda p: 1.0 + p, n=47, hi=920.0), method="cdaf-libcamera", config=cfg).focus()
    coarse = [t["dioptres"] for t in res.trace if t.get("libcamera") == "coarse"]
    assert coarse == [float(d) for d in range(12)] + [11.5]  # 1 D steps, the last one clipped at focusMax
