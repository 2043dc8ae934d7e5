"""The focus cycle's bookkeeping and the contrast search, on a rig double (tests/_ctl_fakes.py).

Every expected value follows from the fake's curve and the definitions in the module docs:
FocusSession's settling, retries, limits and reach check; settle_time_for's exponential model;
exposure_problem's thresholds; contrast_search's coarse pass (every 4th slice from the nearer
end), fine pass (+-3 slices, nearest first) and parabola; the Controller's windows and results.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from _ctl_fakes import FakeLens, gaussian, rig, views

from hil_af.controller.base import AFState, Limits
from hil_af.controller.contrast import parabolic_peak
from hil_af.controller.core import Controller, _profile_path
from hil_af.controller.session import FocusSession, exposure_problem
from hil_af.controller.settle import settle_time_for
from hil_af.errors import BadInput, DeviceTimeout, FocusFailed
from hil_af.frames import DualPixelFrame


def session(r, limits=None, **kw) -> FocusSession:
    return FocusSession(r, limits or Limits(), r.af_positions, **kw)


# -- exposure ------------------------------------------------------------------------------
def test_black_frame_is_judged_on_the_mean_of_both_views_against_a_quarter_percent_of_white():
    def frame(left_value, right_value, white=1000.0):
        return DualPixelFrame(np.full((8, 8), left_value), np.full((8, 8), right_value), white_level=white)

    assert exposure_problem(frame(0.0, 4.8)) == "black frame (mean 2.4 DN of 1000)"  # (0 + 4.8) / 2 < 2.5
    assert exposure_problem(frame(0.0, 5.0)) == ""  # mean 2.5: not below 0.25 % of white
    assert exposure_problem(frame(4.8, 0.0)) == "black frame (mean 2.4 DN of 1000)"
    assert exposure_problem(frame(0.0, 0.0, white=None)) == ""  # no white level: nothing to judge by


def test_saturated_frame_is_more_than_half_the_sampled_left_pixels_at_99_percent_of_white():
    def frame(rows, value=990.0):  # 16 x 16 views sampled every 4th row: rows 0, 4, 8, 12
        left = np.full((16, 16), 500.0)
        left[:rows] = value
        return DualPixelFrame(left, np.full((16, 16), 500.0), white_level=1000.0)

    assert exposure_problem(frame(9)) == "saturated frame"  # 3 of 4 sampled rows at 990 = 0.99 x white
    assert exposure_problem(frame(8)) == ""  # 2 of 4: not more than half
    assert exposure_problem(frame(9, value=989.0)) == ""  # below 99 % of white


# -- settling ------------------------------------------------------------------------------
def test_settle_time_for_is_tau_ln_delta_over_tolerance_capped_by_the_fixed_time():
    lens = FakeLens(settle_time_s=0.05, settle_tau_s=0.01)
    assert settle_time_for(lens, 2 * math.e) == pytest.approx(0.01)  # tau x ln(e)
    assert settle_time_for(lens, 200.0) == pytest.approx(0.01 * math.log(100.0))
    assert settle_time_for(lens, 900.0) == 0.05  # 0.061 s by the model: the fixed time caps it
    assert settle_time_for(lens, 2.0) == 0.0  # within the 2-code tolerance already
    assert settle_time_for(lens, 2 * math.e, tolerance=1.0) == pytest.approx(0.01 * math.log(2 * math.e))
    for tau in (None, float("nan"), 0.0, -1.0):
        assert settle_time_for(FakeLens(settle_time_s=0.05, settle_tau_s=tau), 200.0) == 0.05


@pytest.mark.parametrize("settle, target, waited", [("lens", 100.0, 0.05), ("frames", 100.0, 0.0),
                                                    ("model", 2 * math.e, 0.01), ("model", 1.0, 0.0)])
def test_a_capture_after_a_move_waits_as_the_settle_mode_says(settle, target, waited):
    r = rig(settle_time_s=0.05, settle_tau_s=0.01)
    s = session(r, settle=settle)
    s.move_to(target)
    s.capture()
    assert r.clock.monotonic() == pytest.approx(waited)
    assert s.trace[-1] == {"t": pytest.approx(waited), "capture": target}
    s.capture()  # no move since: no more waiting
    assert r.clock.monotonic() == pytest.approx(waited)


def test_settling_counts_from_the_move_and_a_later_move_cannot_shorten_it():
    r = rig(settle_time_s=0.05)
    s = session(r)
    s.move_to(100.0)
    r.clock.sleep(0.02)
    s.capture()
    assert r.clock.monotonic() == pytest.approx(0.05)  # 0.03 s more, not 0.05
    s2 = session(rig(settle_time_s=0.05, settle_tau_s=0.01), settle="model")
    s2.move_to(900.0)  # 0.061 s by the model: the fixed 0.05 s caps it
    s2.move_to(903.0)  # 3 codes: 4 ms by the model, but the first move still settles
    s2.capture()
    assert s2.clock.monotonic() == pytest.approx(0.05)


# -- moves ---------------------------------------------------------------------------------
def test_moves_are_clamped_counted_once_per_target_and_traced():
    r = rig()
    s = session(r, Limits(max_moves=2))
    with pytest.raises(FocusFailed, match=r"non-finite target position \(nan\)"):
        s.move_to(float("nan"))
    assert s.move_to(2000.0) == 960.0 and s.move_to(960.0) == 960.0
    assert r.lens.commands == [960.0] and s.moves == 1
    assert s.trace == [{"t": 0.0, "move": 960.0}]
    assert s.move_to(-50.0) == 0.0 and s.moves == 2
    with pytest.raises(FocusFailed, match=r"^move limit reached \(2 moves\)$"):
        s.move_to(500.0)
    assert s.moves == 2 and r.lens.commands == [960.0, 0.0]


def test_a_first_move_to_where_the_lens_is_recommands_it_uncounted_and_settles():
    r = rig(position=400.0, settle_time_s=0.05)
    s = session(r, Limits(max_moves=0))
    assert s.move_to(400.0) == 400.0
    assert r.lens.commands == [400.0] and s.moves == 0 and s.trace == []
    s.capture()
    assert r.clock.monotonic() == pytest.approx(0.05)
    r.lens.fail = "bus error"
    with pytest.raises(FocusFailed, match="^lens move to 400 failed: bus error$"):
        session(r).move_to(400.0)


def test_a_lens_error_fails_the_cycle_with_the_target_and_move_to_slice_clips_the_index():
    r = rig()
    s = session(r)
    assert s.move_to_slice(100) == 960.0 and s.move_to_slice(-3) == 0.0
    assert s.nearest_slice(405.0) == 20 and s.nearest_slice() == 0
    r.lens.fail = "nack"
    with pytest.raises(FocusFailed, match="^lens move to 500 failed: nack$"):
        s.move_to(500.0)


def test_time_budget_is_checked_before_each_move_and_capture():
    r = rig(settle_time_s=0.06)
    s = session(r, Limits(time_budget_s=0.1))
    s.move_to(100.0)
    s.capture()  # at 0.06 s
    s.move_to(200.0)  # budget checked at 0.06 s: fine
    s.capture()  # waits to 0.12 s (checked before the wait)
    with pytest.raises(FocusFailed, match=r"^time budget exceeded: 0.120 s > 0.1 s$"):
        s.move_to(300.0)
    with pytest.raises(FocusFailed, match="time budget exceeded"):
        s.capture()
    with pytest.raises(FocusFailed, match="time budget exceeded"):
        s.skip_frames(1)


# -- captures ------------------------------------------------------------------------------
def test_step_limit_counts_captures_and_retries_count_every_frame_exposed():
    s = session(rig(), Limits(max_steps=2))
    s.capture()
    s.capture()
    with pytest.raises(FocusFailed, match=r"^step limit reached \(2 captures\)$"):
        s.capture()
    r = rig(script=[DeviceTimeout("t1"), views(0.0)])
    s = session(r)
    s.capture()
    assert s.captures == 3 and s.steps == 1 and len(r.source.exposed_at) == 3


def test_three_bad_captures_in_a_row_fail_with_the_last_problem():
    s = session(rig(script=[DeviceTimeout("late")] * 3))
    with pytest.raises(FocusFailed, match="^capture timed out 3 times: late$"):
        s.capture()
    assert s.captures == 3
    s = session(rig(script=[views(0.0)] * 3))
    with pytest.raises(FocusFailed, match=r"^black frame \(mean 0.0 DN of 1023\) in 3 captures in a row$"):
        s.capture()
    s = session(rig(script=[views(0.0)]), capture_retries=0)
    with pytest.raises(FocusFailed, match="in 1 captures in a row"):
        s.capture()


@pytest.mark.parametrize("short, ok", [(10.0, True), (11.0, False)])
def test_reach_tolerance_is_the_larger_of_the_limit_and_half_a_slice(short, ok):
    s = session(rig(short=short), Limits(reach_tolerance=3.0))  # slices 20 codes apart: 0.51 x 20 = 10.2
    s.move_to(100.0)
    if ok:
        assert s.capture().lens_position == 100.0 - short
    else:
        with pytest.raises(FocusFailed, match=r"^lens did not reach its target: commanded 100, frame exposed at 89 "
                                              r"\(tolerance 10.2\)$"):
            s.capture()
    s = session(rig(short=short), Limits(reach_tolerance=12.0))
    s.move_to(100.0)
    s.capture()  # 12 codes allowed


def test_skipped_frames_count_as_captures_not_steps_and_a_timeout_is_ignored():
    r = rig(script=[DeviceTimeout("x")])
    s = session(r)
    s.skip_frames(3)
    assert s.captures == 3 and s.steps == 0 and len(r.source.exposed_at) == 3


def test_verify_takes_one_frame_after_a_final_move_and_counts_it_apart():
    r = rig()
    s = session(r)
    s.verify()  # nothing moved: no frame
    assert len(r.source.exposed_at) == 0
    s.move_to(100.0)
    s.capture()
    s.verify()  # the last event is a capture there: no frame
    assert len(r.source.exposed_at) == 1
    s.move_to(300.0)
    s.verify()
    assert r.source.exposed_at == [100.0, 300.0]
    assert (s.captures, s.steps, s.verify_frames) == (1, 1, 1)
    with s.compute():
        pass
    assert s.compute_steps == 1 and s.compute_s >= 0.0


# -- contrast search -----------------------------------------------------------------------
def test_parabolic_peak_is_the_vertex_through_three_samples_clipped_to_half_a_slice():
    assert parabolic_peak(18.31, 19.91, 19.51) == pytest.approx(0.3)  # y = 20 - (x - 0.3)^2 at -1, 0, 1
    assert parabolic_peak(19.51, 19.91, 18.31) == pytest.approx(-0.3)
    assert parabolic_peak(0.0, 1.0, 10.0) == 0.0 and parabolic_peak(1.0, 1.0, 1.0) == 0.0  # opens upward / flat
    assert parabolic_peak(1.0, 2.0, 2.9) == 0.5 and parabolic_peak(2.9, 2.0, 1.0) == -0.5  # vertex at +-9.5
    assert parabolic_peak(0.0, 3.0, 2.9) == pytest.approx(0.5 * 2.9 / 3.1)
    assert parabolic_peak(float("nan"), 1.0, 0.0) == 0.0


def slice_parabola(peak_slice: float, floor: float, spacing: float = 20.0):
    return lambda p: max(floor, 20.0 - (p / spacing - peak_slice) ** 2)


def test_cdaf_scans_every_4th_slice_then_3_each_side_nearest_first_and_fits_the_parabola():
    r = rig(slice_parabola(30.3, floor=8.0), settle_time_s=0.01)
    res = Controller(r, method="cdaf").focus()
    coarse = [20.0 * k for k in range(0, 49, 4)]
    fine = [20.0 * k for k in (31, 33, 30, 34, 29, 35)]  # around coarse best 32, nearest first
    assert r.source.exposed_at == coarse + fine + [606.0]  # + the verify frame at slice 30.3
    assert res.state is AFState.FOCUSED and res.position == pytest.approx(606.0)
    assert (res.captures, res.verify_frames, res.moves, res.slice_index) == (19, 1, 19, 30)
    # peak 19.91 over the median of the 19 samples (13 of them at the floor 8): (19.91 / 8 - 1) / 2
    assert res.confidence == pytest.approx((19.91 / 8.0 - 1.0) / 2.0, abs=1e-6)
    # 20 settles of 10 ms: 19 sampled slices (slice 0, where the lens was, re-commanded) and the final move
    assert res.elapsed_s == pytest.approx(20 * 0.01) and res.method == "cdaf" and res.fallback is None
    assert res.compute_steps == 19 and r.lens.position == pytest.approx(606.0)


def test_cdaf_confidence_is_clipped_at_1():
    res = Controller(rig(slice_parabola(30.3, floor=1.0)), method="cdaf").focus()  # peak / median 19.91
    assert res.confidence == 1.0 and res.fallback is None


def test_cdaf_starts_from_the_far_end_when_the_lens_is_past_the_middle():
    r = rig(slice_parabola(30.3, floor=8.0), position=500.0)  # slice 25 > 49 // 2
    Controller(r, method="cdaf").focus()
    assert r.source.exposed_at[:13] == [20.0 * k for k in range(48, -1, -4)]
    r = rig(slice_parabola(30.3, floor=8.0), position=480.0)  # slice 24: the near end
    Controller(r, method="cdaf").focus()
    assert r.source.exposed_at[0] == 0.0


def test_cdaf_peak_at_the_end_slice_has_no_parabola_and_the_last_slice_is_always_scanned():
    r = rig(slice_parabola(48.0, floor=8.0), n=47, hi=920.0)  # coarse 0..44, then 46 (the last slice)
    res = Controller(r, method="cdaf").focus()
    assert r.source.exposed_at[:13] == [20.0 * k for k in range(0, 45, 4)] + [920.0]
    # fine pass 43..46 nearest first (44 and 46 known): 45, 43; then the verify frame at the end slice
    assert r.source.exposed_at[13:] == [900.0, 860.0, 920.0] and res.position == 920.0
    r = rig(slice_parabola(48.0, floor=8.0), n=50, hi=980.0)  # 49 slices after 0: coarse 0..48, then 49
    Controller(r, method="cdaf").focus()
    assert r.source.exposed_at[:14] == [20.0 * k for k in range(0, 49, 4)] + [980.0]
    r = rig(slice_parabola(-1.0, floor=8.0))  # best at slice 0: no parabola, the slice itself
    res = Controller(r, method="cdaf").focus()
    assert res.position == 0.0 and r.source.exposed_at[13:16] == [20.0, 40.0, 60.0]
    res = Controller(rig(slice_parabola(1.3, floor=8.0)), method="cdaf").focus()  # best fine slice 1
    assert res.position == pytest.approx(26.0)  # 20 - (x - 1.3)^2 through slices 0, 1, 2
    res = Controller(rig(slice_parabola(46.7, floor=8.0)), method="cdaf").focus()  # best slice 47 = n - 2
    assert res.position == pytest.approx(934.0)


def test_cdaf_fails_on_a_contrast_that_is_not_a_number():
    res = Controller(rig(lambda p: float("nan")), method="cdaf").focus()
    assert res.reason == "no contrast peak: peak/median contrast 0.000 < 1.15 (flat or dark RoI)"


@pytest.mark.parametrize("ratio, focused", [(1.2, True), (1.1, False)])
def test_cdaf_fails_below_a_peak_to_median_ratio_of_1_15(ratio, focused):
    r = rig(lambda p: ratio if p == 640.0 else 1.0)  # slice 32, a coarse one
    res = Controller(r, method="cdaf").focus()
    assert (res.state is AFState.FOCUSED) == focused
    if focused:
        assert res.position == 640.0 and res.confidence == pytest.approx((ratio - 1.0) / 2.0, abs=1e-5)
    else:
        assert res.reason == "no contrast peak: peak/median contrast 1.100 < 1.15 (flat or dark RoI)"
        assert res.confidence is None and r.lens.position == 700.0  # where the fine pass ended (slice 35)


# -- the controller ------------------------------------------------------------------------
def test_windows_default_to_the_centre_and_weights_are_normalised_and_checked():
    r = rig(gaussian(400.0, 100.0))
    ctl = Controller(r, method="cdaf")
    roi, w = ctl._windows(None, None)
    assert roi.tolist() == [[0, 0, 32, 32]] and w.tolist() == [1.0]  # 32 x 32 views: the whole view
    _, w = ctl._windows([[0, 0, 8, 8], [8, 8, 8, 8]], [1, 3])
    assert w.tolist() == [0.25, 0.75]
    for bad in ([1], [1, -1], [0, 0], [1, float("nan")]):
        with pytest.raises(BadInput, match=r"^weights must be 2 finite non-negative numbers with a positive sum"):
            ctl._windows([[0, 0, 8, 8], [8, 8, 8, 8]], bad)
    ctl.set_windows([[4, 4, 8, 8]], [2.0])
    assert ctl.rois.tolist() == [[4, 4, 8, 8]] and ctl.weights.tolist() == [1.0]


def test_focus_result_reports_dioptres_through_the_lens_map_and_states():
    from hil_af.optics import LensMap

    r = rig(gaussian(400.0, 100.0), lens_map=LensMap((0.0, 12.0), (0.0, 960.0)))
    ctl = Controller(r, method="cdaf")
    assert ctl.state is AFState.IDLE and ctl.mode == "single" and ctl.last is None
    res = ctl.focus(start=700.0)
    assert r.lens.commands[0] == 700.0 and r.source.exposed_at[0] == 960.0  # from 700 (slice 35) the far end is nearer
    assert res.dioptres == pytest.approx(res.position / 80.0) and ctl.last is res
    assert ctl.status() == {"state": "Focused", "mode": "single", "method": "cdaf", "position": res.position,
                            "range": [0.0, 960.0], "last": res.to_json()}
    ctl.set_mode("manual")
    assert ctl.state is AFState.IDLE and ctl.continuous_step() is None
    ctl.state = AFState.FOCUSED
    assert ctl.move(100.0) == 100.0 and ctl.state is AFState.IDLE and r.lens.position == 100.0


def test_profile_paths_resolve_beside_the_profile_then_in_the_repository(tmp_path):
    from hil_af.paths import REPO_ROOT

    r = rig(profile={"calibration": {"per_position": "cal.json", "global": "/abs/g.json"},
                     "_path": str(tmp_path / "rig.toml")})
    assert _profile_path(r, "per_position") == str(tmp_path / "cal.json")
    assert _profile_path(r, "global") == "/abs/g.json" and _profile_path(r, "zncc") is None
    r = rig(profile={"calibration": {"per_position": "calibration/x.json"}})
    assert _profile_path(r, "per_position") == str(REPO_ROOT / "calibration/x.json")
    ctl = Controller(r, method="cdaf", flatfield="ff.npz")
    assert ctl.calibration == str(REPO_ROOT / "calibration/x.json") and ctl.global_calibration is None
    assert ctl.flatfield == ctl.pe_flatfield == "ff.npz"


def test_continuous_holds_the_lens_when_the_new_peak_is_within_hold_slices():
    peak = {"p": 400.0}
    r = rig(lambda p: 1.0 + 9.0 * math.exp(-0.5 * ((p - peak["p"]) / 60.0) ** 2))
    ctl = Controller(r, method="cdaf", retrigger_change=0.25, retrigger_frames=2, hold_slices=1.0)
    ctl.set_mode("continuous")
    first = ctl.continuous_step()
    assert first.state is AFState.FOCUSED and abs(first.position - 400.0) < 10.0
    assert ctl.continuous_step() is None  # the reference frame
    peak["p"] = 410.0  # contrast at the lens drops by < 25 %: no re-trigger
    assert [ctl.continuous_step() for _ in range(3)] == [None] * 3
    peak["p"] = 600.0  # 10 slices away
    assert ctl.continuous_step() is None and ctl._changed_frames == 1
    again = ctl.continuous_step()
    assert again is not None and abs(again.position - 600.0) < 10.0 and again.reason is None
    assert ctl.continuous_step() is None  # new reference
    peak["p"] = 615.0  # contrast at the lens still falls (60-code wide peak), but within one slice
    before = r.lens.position
    ctl.retrigger_change = 0.01
    assert ctl.continuous_step() is None
    held = ctl.continuous_step()
    assert held.position == before and r.lens.position == before
    assert held.reason == "held: peak within hold_slices of the previous focus"


def test_a_peak_ratio_of_exactly_1_15_is_a_peak_for_the_roi_and_for_its_wider_window():
    from hil_af.controller.contrast import contrast_search

    base = 1.0 - 1e-6  # median + the 1e-6 regulariser = 1.0 exactly, so the ratio is exactly 1.15

    def spike(at, high, low=base):
        return lambda p: high if p == at else low

    def search(own, wide=None):
        r = rig()
        rois, fb = np.array([[0, 0, 8, 8]]), np.array([[0, 0, 24, 24]])

        def measure(frame, win):  # the focus measure: the RoI's curve, or the wider window's
            return np.array([(own if win[0][2] == 8 else wide)(frame.lens_position)])

        s = FocusSession(r, Limits(), r.af_positions)
        return contrast_search(s, rois, np.array([1.0]), contrast=measure, fallback_rois=None if wide is None else fb)

    assert search(spike(640.0, 1.15))[0] == 640.0
    assert search(spike(640.0, 1.15), spike(240.0, 2.0, 1.0))[::2] == (640.0, False)  # its own peak suffices
    assert search(lambda p: 1.0, spike(240.0, 1.15))[::2] == (240.0, True)  # the wider window's suffices


def test_roi_frames_give_the_whole_frames_contrast_and_unknown_modes_are_listed():
    from hil_af.controller.contrast import roi_contrast
    from hil_af.roiframe import RoiFrame

    t = np.random.default_rng(2).random((32, 40)) * 400 + 300
    L, R = t[:, 2:34], t[:, 0:32]
    rois = np.array([[2, 3, 8, 8], [10, 12, 16, 8]])
    whole = roi_contrast(DualPixelFrame(L, R), rois)

    def decode(keys):
        return (np.stack([L[y:y + h, x:x + w] for x, y, w, h in keys]),
                np.stack([R[y:y + h, x:x + w] for x, y, w, h in keys]))

    assert np.allclose(roi_contrast(RoiFrame(decode, rois[:1], (32, 32)), rois), whole, rtol=1e-6)
    with pytest.raises(BadInput, match="^unknown AF mode 'auto'; known modes: manual, single, continuous$"):
        Controller(rig()).set_mode("auto")
