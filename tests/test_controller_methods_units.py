"""The AF methods' stopping rules, thresholds and fallbacks, on a rig double (tests/_ctl_fakes.py).

Estimators are replaced only at their library boundary: the PE models at
``onnxruntime.InferenceSession.run`` (logits written from the slice the stand-in "sees" in
focus and the confidence it should have, decode's mass within +-1 slice), the classical PDAF at
``PdafPredictor.from_file`` (an ideal calibrated estimator: target = the true lens position,
defocus = lens - truth).  Expected values come from the method definitions in
hil_af/controller/methods.py, cdaf_fast.py, af_range.py and request.py, worked by hand.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from _ctl_fakes import HW, gaussian, install_network, rig

from hil_af.controller import methods as M
from hil_af.controller.af_range import DioptreScale, range_dioptres, range_positions
from hil_af.controller.base import AFState, Limits
from hil_af.controller.core import Controller
from hil_af.controller.focus_stats import frame_contrast
from hil_af.controller.methods import MethodConfig, _grown, combine
from hil_af.errors import BadInput
from hil_af.frames import DualPixelFrame
from hil_af.optics import LensMap
from hil_af.paths import models_dir

class IdealPdaf:
    """Stand-in for a calibrated PdafPredictor: target = ``truth(lens)``, defocus = lens - target."""

    def __init__(self, truth, confidence=(0.9,), cal=None):
        self.truth, self.conf, self.cal = truth, list(confidence), cal or {}
        self.calls = 0

    def predict(self, frame, rois):
        self.calls += 1
        t = np.array([float(self.truth(frame.lens_position, i)) for i in range(len(rois))])
        conf = np.resize(np.asarray(self.conf, dtype=np.float64), len(rois))
        return SimpleNamespace(target_position=t, defocus=frame.lens_position - t, confidence=conf)


@pytest.fixture
def pdaf(monkeypatch):
    """Install ``IdealPdaf``s: ``pdaf(est)`` makes every PdafPredictor.from_file return ``est``."""
    from hil_af.calibration import predict

    opened = []

    def install(est):
        def from_file(path, flatfield_path=None):
            opened.append((str(path), flatfield_path))
            return est
        monkeypatch.setattr(predict.PdafPredictor, "from_file", staticmethod(from_file))
        return opened
    return install


def test_combine_is_the_confidence_weighted_median_and_the_weighted_mean_confidence():
    assert combine(np.array([10.0, 1.0, 2.0]), np.ones(3), np.ones(3)) == (2.0, 1.0)
    v, c = combine(np.array([1.0, 2.0, 10.0]), np.array([0.2, 0.5, 0.3]), np.array([0.2, 0.2, 1.0]))
    assert v == 10.0 and c == pytest.approx(0.2 * 0.2 + 0.5 * 0.2 + 0.3)  # weights x conf: .04, .10, .30
    assert combine(np.array([7.0]), np.array([2.0]), np.array([0.5])) == (7.0, 0.5)
    assert combine(np.array([1.0, 5.0]), np.array([2.0, 2.0]), np.array([0.5, 1.0]))[1] == 0.75  # (1 + 2) / 4
    assert combine(np.array([5.0, 1.0]), np.array([1.0, 1.0]), np.array([0.0, 1.0]))[0] == 1.0
    # all confidences 0: floored at 1e-6, so the weights alone pick the median
    assert combine(np.array([1.0, 5.0]), np.array([1.0, 3.0]), np.array([0.0, 0.0]))[0] == 5.0


def test_grown_windows_are_three_times_the_roi_centred_and_kept_inside_the_view():
    rois = np.array([[10, 10, 4, 4], [0, 0, 16, 16], [28, 0, 4, 4]])
    assert _grown(rois, HW).tolist() == [[6, 6, 12, 12], [0, 0, 32, 32], [20, 0, 12, 12]]
    assert _grown(rois[:1], HW, factor=2.0).tolist() == [[8, 8, 8, 8]]


def test_thresholds_come_from_the_config_then_the_model_card_or_calibration():
    ctx = SimpleNamespace(config=MethodConfig())
    card = SimpleNamespace(card={"controller": {"pe2": {"min_confidence": 0.42}}})
    assert M.pe_min_confidence(ctx, card, "pe2") == 0.42
    assert M.pe_min_confidence(ctx, card, "pe") == 0.2 == MethodConfig.pe_default_min_confidence
    assert M.pe_min_confidence(ctx, SimpleNamespace(), "pe") == 0.2
    assert M.pe_min_confidence(SimpleNamespace(config=MethodConfig(min_confidence=0.7)), card, "pe2") == 0.7
    assert M.pdaf_thresholds(ctx, SimpleNamespace(cal={})) == (0.2, 0.5)
    assert M.pdaf_thresholds(ctx, SimpleNamespace()) == (0.2, 0.5)  # a predictor without a calibration dict
    block = {"controller": {"min_confidence": 0.05, "stop_slices": 2.0}}
    assert M.pdaf_thresholds(ctx, SimpleNamespace(cal=block)) == (0.05, 2.0)
    with pytest.raises(BadInput, match="known methods: pe, pe2, pdaf"):
        M.check_method("magic")


# -- pdaf, pdaf-loop, zncc2 ----------------------------------------------------------------
def test_pdaf_moves_to_the_target_and_stops_when_the_next_move_is_under_half_a_slice(pdaf):
    opened = pdaf(est := IdealPdaf(lambda lens, i: 407.0))
    r = rig()
    res = Controller(r, method="pdaf", calibration="cal.json", flatfield="ff.npz").focus()
    assert res.state is AFState.FOCUSED and res.position == 407.0 and res.confidence == 0.9
    assert r.source.exposed_at[:2] == [0.0, 407.0] and (res.captures, res.moves) == (2, 1)
    assert opened == [("cal.json", "ff.npz")] and est.calls == 2


@pytest.mark.parametrize("offset, frames", [(9.9, 1), (10.0, 2)])  # half a slice of 20 codes
def test_pdaf_stop_rule_is_strictly_below_stop_slices_times_the_spacing(pdaf, offset, frames):
    pdaf(IdealPdaf(lambda lens, i: lens + offset if lens < 1.0 else lens))
    r = rig()
    res = Controller(r, method="pdaf", calibration="c.json").focus()
    assert res.captures == frames and res.position == offset


def test_pdaf_measures_the_remaining_move_from_where_the_frame_says_the_lens_was(pdaf):
    pdaf(IdealPdaf(lambda lens, i: 12.0))
    r = rig()
    r.source.report = lambda p: p + 5.0  # frames say 5 codes more than the lens position
    res = Controller(r, method="pdaf", calibration="c.json").focus()
    assert res.captures == 1 and res.position == 12.0  # |12 - 5| < 10: no second step
    r = rig()
    r.source.report = lambda p: float("nan")  # frames without a lens position: the lens's own
    res = Controller(r, method="pdaf", calibration="c.json").focus()
    assert res.captures == 2 and res.position == 12.0


def test_pdaf_uses_the_calibrations_stop_and_confidence_and_gives_up_after_max_iters(pdaf):
    pdaf(IdealPdaf(lambda lens, i: lens + 39.0, confidence=(0.1,), cal={"controller": {"stop_slices": 2.0,
                                                                                        "min_confidence": 0.05}}))
    res = Controller(rig(), method="pdaf", calibration="c.json").focus()
    assert res.state is AFState.FOCUSED and res.position == 39.0 and res.captures == 1  # 39 < 2 x 20
    pdaf(IdealPdaf(lambda lens, i: lens + 100.0))
    res = Controller(rig(), method="pdaf", calibration="c.json", config=MethodConfig(pdaf_max_iters=3)).focus()
    assert res.reason == "pdaf did not converge in 3 steps" and res.captures == 3 and res.position == 300.0


def test_pdaf_drops_low_confidence_rois_and_fails_when_none_is_left(pdaf):
    pdaf(IdealPdaf(lambda lens, i: (400.0, 900.0)[i], confidence=(0.9, 0.19)))
    rois = [[0, 0, 8, 8], [8, 8, 8, 8]]
    res = Controller(rig(), method="pdaf", calibration="c.json").focus(rois=rois, weights=[1, 100])
    assert res.position == 400.0 and res.confidence == pytest.approx(0.9)  # the heavy RoI is under 0.2: not used
    pdaf(IdealPdaf(lambda lens, i: 400.0, confidence=(0.1, 0.15)))
    res = Controller(rig(), method="pdaf", calibration="c.json").focus(rois=rois)
    assert res.state is AFState.FAILED and res.reason == "low PDAF confidence: best 0.15 < 0.20"


def test_pdaf_without_a_calibration_names_what_is_missing():
    r = rig()
    for method, msg in [("pdaf", "method pdaf needs a calibration (--calibration CAL.json or [calibration] "
                                 "per_position in the rig profile)"),
                        ("pdaf-global", "method pdaf-global needs a global calibration (--global-calibration or "
                                        "[calibration] global)"),
                        ("pdaf-loop", "method pdaf-global needs a global calibration"),
                        ("zncc2", "method zncc2 needs a ZNCC calibration (--zncc-calibration CAL.json from `hil-af "
                                  "calibrate fit --method zncc --max-shift 6 --refine parabola`, or [calibration] zncc)")]:
        with pytest.raises(BadInput, match="^" + msg.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")
                           .replace("]", r"\]")):
            Controller(r, method=method).focus()


def test_pdaf_loop_slews_at_most_8_slices_a_frame_and_stops_under_half_a_slice(pdaf):
    opened = pdaf(IdealPdaf(lambda lens, i: 700.0))
    r = rig()
    res = Controller(r, method="pdaf-loop", global_calibration="g.json", flatfield="ff.npz").focus()
    assert r.source.exposed_at[:6] == [0.0, 160.0, 320.0, 480.0, 640.0, 700.0]  # 8 x 20 codes, then the rest
    assert res.state is AFState.FOCUSED and res.position == 700.0 and res.captures == 6
    assert opened == [("g.json", "ff.npz")]
    res = Controller(rig(), method="pdaf-loop", global_calibration="g.json",
                     config=MethodConfig(loop_max_frames=3, loop_max_slew_slices=2.0)).focus()
    assert res.reason == "pdaf-loop did not converge in 3 frames" and res.position == 120.0


def test_zncc2_takes_two_ungated_steps_through_its_calibration_without_the_flat_field(pdaf):
    opened = pdaf(IdealPdaf(lambda lens, i: lens + 0.5 * (700.0 - lens), confidence=(0.01,)))
    r = rig()
    res = Controller(r, method="zncc2", zncc_calibration="z.json", flatfield="ff.npz").focus()
    assert r.source.exposed_at == [0.0, 350.0, 525.0] and res.position == 525.0 and res.confidence == 0.01
    assert (res.captures, res.moves, res.verify_frames) == (2, 2, 1) and opened == [("z.json", None)]
    pdaf(IdealPdaf(lambda lens, i: 5000.0))
    assert Controller(rig(), method="zncc2", zncc_calibration="z.json").focus().position == 960.0


# -- pe, pe2, hybrid -----------------------------------------------------------------------
needs_model = pytest.mark.skipif(not (models_dir() / "step1.onnx").exists(), reason="no shipped model in models/")


@pytest.fixture
def network(monkeypatch):
    """The PE models' answers at onnxruntime (_ctl_fakes.install_network): plan and what each call saw."""
    return install_network(monkeypatch)


@needs_model
def test_pe2_takes_two_steps_from_the_lens_slice_and_fails_below_the_floor_at_the_guess(network):
    plan, seen = network
    plan += [(30, 0.9), (32, 0.8)]
    r = rig(position=200.0)
    cfg = MethodConfig(pe_min_structure=0.0)
    res = Controller(r, method="pe2", config=cfg).focus()
    assert seen == [("step1.onnx", 10), ("step2.onnx", 30)] and r.source.exposed_at == [200.0, 600.0, 640.0]  # + the verify frame
    assert res.position == 640.0 and res.confidence == pytest.approx(0.8, abs=1e-3) and res.moves == 2
    plan += [(20, 0.5)]
    res = Controller(rig(), method="pe", config=MethodConfig(pe_min_structure=0.0, min_confidence=0.6)).focus()
    assert res.state is AFState.FAILED and res.reason.startswith("low confidence: 0.50 < 0.60 (flat")
    assert res.position == 400.0 and res.captures == 1


@needs_model
def test_hybrid_keeps_pe2_when_sure_else_falls_back_to_pdaf_then_cdaf(network, pdaf):
    plan, seen = network
    cfg = MethodConfig(pe_min_structure=0.0, min_confidence=0.5)
    plan += [(30, 0.9), (31, 0.8)]
    res = Controller(rig(), method="hybrid", config=cfg).focus()
    assert res.position == 620.0 and res.fallback is None and res.confidence == pytest.approx(0.8, abs=1e-3)
    assert seen == [("step1.onnx", 0), ("step2.onnx", 30)]
    plan += [(30, 0.34)]  # step 1 below the 0.35 hybrid threshold: no step 2
    pdaf(IdealPdaf(lambda lens, i: 407.0))
    res = Controller(rig(), method="hybrid", config=cfg, calibration="c.json").focus()
    assert res.position == 407.0 and res.fallback == "pdaf" and not plan
    plan += [(30, 0.9), (31, 0.4)]  # step 2 under the pe2 floor: pdaf fails too, cdaf takes over
    pdaf(IdealPdaf(lambda lens, i: 407.0, confidence=(0.1,)))
    r = rig(gaussian(500.0, 60.0))
    res = Controller(r, method="hybrid", config=cfg, calibration="c.json").focus()
    assert res.state is AFState.FOCUSED and res.fallback == "cdaf" and abs(res.position - 500.0) < 10.0
    plan += [(30, 0.2)]
    res = Controller(rig(), method="hybrid", config=cfg, calibration="c.json").focus()
    assert res.reason == ("hybrid: every method failed (pe2 confidence 0.20; pdaf: low PDAF confidence: best 0.10"
                          " < 0.20; cdaf: no contrast peak: peak/median contrast 1.000 < 1.15 (flat or dark RoI))")


# -- cdaf-fast -----------------------------------------------------------------------------
# 49 slices over 0..960 codes and no lens map: 4 slices (80 codes) a dioptre; the peak at 5.3 D
# (424 codes) is a Gaussian of 0.7 D, so log contrast is a parabola and the fits are exact.
PEAK = gaussian(424.0, 56.0)


@pytest.mark.parametrize("start, hint, exposed", [
    (0.0, None, [0, 160, 320, 480, 640]),      # from the near end until 6 D is bracketed by 4 and 8 D
    (960.0, None, [960, 800, 640, 480, 320]),  # from the far end
    (480.0, None, [0, 160, 320, 480, 640]),    # half way: the low end
    (0.0, 480.0, [480, 320, 640]),             # from the hint (4 D before 8 D on a tie)
])
def test_cdaf_fast_brackets_on_a_2_dioptre_grid_then_fits_log_parabolas(start, hint, exposed):
    r = rig(PEAK, position=start)
    res = Controller(r, method="cdaf-fast").focus(hint=hint)
    # refinement at 6 -+ 0.6 D (432, 528), the first fit's vertex 5.3 D (424), and the final fit there
    assert r.source.exposed_at[:len(exposed) + 3] == pytest.approx([*exposed, 432.0, 528.0, 424.0], abs=1e-6)
    assert res.captures == len(exposed) + 3 and res.confidence == 1.0
    assert res.position == pytest.approx(424.0, abs=1e-6)


@pytest.mark.parametrize("spike, conf", [(1.4, 0.2), (1.1, None)])
def test_cdaf_fast_confidence_and_failure_from_the_best_to_median_coarse_ratio(spike, conf):
    r = rig(lambda p: spike if p == 480.0 else 1.0)
    res = Controller(r, method="cdaf-fast").focus()
    if conf is None:
        assert res.reason == ("no contrast peak: best/median contrast 1.100 < 1.15 over 7 coarse samples "
                              "(flat or dark RoI)")
    else:
        assert r.source.exposed_at[:7] == [0.0, 160.0, 320.0, 480.0, 640.0, 800.0, 960.0]
        assert res.confidence == pytest.approx(conf) and res.position == pytest.approx(480.0)


# -- ranges, request options, focus statistics ---------------------------------------------
def test_af_ranges_are_libcamera_imx708s_unless_the_profile_overrides_them():
    assert range_dioptres({}, "normal") == (0.0, 12.0) and range_dioptres({}, "near") == (3.0, 15.0)
    assert range_dioptres({}, "full") == (0.0, 15.0)
    prof = {"af": {"ranges": {"near": [5, 20]}}}
    assert range_dioptres(prof, "near") == (5.0, 20.0) and range_dioptres(prof, "full") == (0.0, 20.0)
    assert range_dioptres({"af": {"ranges": {"full": [1, 2]}}}, "full") == (1.0, 2.0)
    with pytest.raises(BadInput, match="^unknown AF range 'macro'; known ranges: near, normal, full$"):
        range_dioptres({}, "macro")


def test_range_positions_map_dioptres_to_codes_clip_to_the_lens_and_keep_the_spacing():
    r = rig(lens_map=LensMap((0.0, 12.0), (0.0, 960.0)))
    slices = r.af_positions
    assert np.array_equal(range_positions(r, slices, "near"), np.linspace(240.0, 960.0, 37))  # 3..12 D
    assert np.array_equal(range_positions(r, slices, "normal"), slices)
    r.profile = {"af": {"ranges": {"near": [20, 30]}}}
    with pytest.raises(BadInput, match=r"^AF range near \(20..30 dioptres\) is outside the lens range \[0, 960\]$"):
        range_positions(r, slices, "near")
    bare = rig(lo=100.0, hi=500.0)
    with pytest.raises(BadInput, match="needs the rig's lens map"):
        range_positions(bare, bare.af_positions, "near")
    assert range_positions(bare, bare.af_positions, "normal") is not None
    assert np.array_equal(range_positions(bare, np.linspace(0, 400, 41), "full"), np.linspace(100.0, 500.0, 41))


def test_dioptre_scale_is_the_lens_map_or_4_slices_a_dioptre():
    s = DioptreScale(None, np.linspace(100.0, 580.0, 25))  # 20 codes a slice
    assert s.to_dioptres(180.0) == 1.0 and s.to_position(2.5) == 300.0
    m = DioptreScale(LensMap((0.0, 10.0), (1000.0, 0.0)), np.linspace(0, 1000, 11))
    assert m.to_dioptres(250.0) == 7.5 and m.to_position(7.5) == 250.0


def test_request_options_are_checked_before_the_lens_moves():
    r = rig(gaussian(400.0, 60.0))
    ctl = Controller(r, method="cdaf")
    for bad, msg in [("abc", "^timeout must be a number of seconds, got 'abc'$"), (0, "^timeout must be > 0 seconds"),
                     (float("inf"), "> 0 seconds"), (-1.0, "> 0 seconds")]:
        with pytest.raises(BadInput, match=msg):
            ctl.focus(timeout_s=bad)
    with pytest.raises(BadInput, match=r"^start: position 2000.0 is outside the lens range \[0, 960\]$"):
        ctl.focus(start=2000.0)
    assert r.lens.commands == []
    res = ctl.focus(timeout_s=0.05)  # 10 ms a move: the budget runs out in the coarse pass
    assert res.reason.startswith("time budget exceeded") and ctl.limits.time_budget_s == 10.0
    r.source.statistics_only = True
    with pytest.raises(BadInput, match="^method pe2 needs dual-pixel views; .* use one of cdaf, cdaf-libcamera, "
                                       "cdaf-fast$"):
        ctl.focus(method="pe2")


def test_frame_contrast_averages_the_statistics_regions_under_each_window():
    L = np.full(HW, 500.0)
    f = DualPixelFrame(L, L, metadata={"focus_regions": [[1.0, 2.0], [3.0, 4.0]]})
    rois = np.array([[0, 0, 16, 16], [8, 8, 16, 16], [0, 0, 32, 16], [16, 16, 16, 16]])
    assert frame_contrast(f, rois, HW).tolist() == [1.0, 2.5, 1.5, 4.0]
    f.metadata["stats_region"] = (16, 16, 16, 16)  # 8 x 8 regions in the bottom-right quarter
    assert frame_contrast(f, np.array([[0, 0, 8, 8], [24, 16, 8, 8]]), HW).tolist() == [2.5, 2.0]
    f.metadata.pop("stats_region")  # regions tile the whole view: (W, H) = (32, 16) here
    assert frame_contrast(f, np.array([[0, 8, 16, 8]]), (16, 32)).tolist() == [3.0]  # region (1, 0)
    g = DualPixelFrame(L, L, metadata={"focus_fom": 7.0})
    assert frame_contrast(g, rois[:2], HW).tolist() == [7.0, 7.0]


# -- cdaf-libcamera ------------------------------------------------------------------------
def dioptre_parabola(peak_d: float, floor: float):
    """20 - (d - peak)^2 in dioptres (80 codes a dioptre here), never below ``floor``."""
    return lambda p: max(floor, 20.0 - (p / 80.0 - peak_d) ** 2)


def test_libcamera_scan_coarse_up_until_the_contrast_drops_then_three_fine_steps_back():
    r = rig(dioptre_parabola(5.3, floor=12.0), position=960.0)
    res = Controller(r, method="cdaf-libcamera").focus()
    steps = [(t["libcamera"], round(t["dioptres"], 6)) for t in res.trace if "libcamera" in t]
    # coarse 0, 1, ... until 8 D (12.71 < 0.75 x 19.91); the parabola through 4, 5, 6 D peaks at 5.3 D
    assert steps == [("coarse", float(d)) for d in range(9)] + [("fine", 5.55), ("fine", 5.3), ("fine", 5.05)]
    # from 12 D to 0 D at 1.5 D a frame (one frame each), then step_frames = 5 skipped + 1 measured per step
    assert r.source.exposed_at[:13] == [840.0, 720.0, 600.0, 480.0, 360.0, 240.0, 120.0] + [0.0] * 6
    slews = 7 + 1  # 7 to the scan's start, 1 from 8 D towards 5.55 D
    assert res.captures == slews + 6 * (9 + 3 + 1) and res.verify_frames == 0
    assert res.position == pytest.approx(424.0) and res.state is AFState.FOCUSED
    assert res.confidence == pytest.approx((20.0 / 12.0 - 1.0) / 2.0)  # (max / min - 1) / 2


def test_libcamera_check_fails_a_scan_that_never_saw_the_contrast_drop():
    r = rig(lambda p: 3.0)
    res = Controller(r, method="cdaf-libcamera").focus()
    assert res.reason == ("no contrast peak (libcamera's check: final contrast 3, scan max 3, min 3, "
                          "contrast_ratio 0.75)")
    coarse = [t["dioptres"] for t in res.trace if t.get("libcamera") == "coarse"]
    assert coarse == [float(d) for d in range(13)]  # up to focusMax: the contrast never fell
    fine = [t["dioptres"] for t in res.trace if t.get("libcamera") == "fine"]
    assert fine == [0.25, 0.0]  # findPeak of a flat curve: the first sample; down to focusMin, and stop there


def test_continuous_retriggers_on_contrast_or_pdaf_defocus_and_holds_within_a_slice(pdaf):
    state = {"truth": 400.0, "scale": 1.0}
    opened = pdaf(IdealPdaf(lambda lens, i: state["truth"], confidence=(0.2,)))  # exactly the 0.2 floor
    r = rig(lambda p: state["scale"], roi_source=True)
    ctl = Controller(r, method="pdaf", calibration="c.json", retrigger_frames=1, hold_slices=1.0)
    ctl.set_mode("continuous")
    assert ctl.continuous_step().position == 400.0 and ctl.continuous_step() is None  # cycle, then reference
    state["scale"] = 1.25  # exactly 25 % more contrast: not more than retrigger_change
    assert ctl.continuous_step() is None
    state.update(scale=1.0, truth=440.0)  # defocus 40 codes > 1.5 slices of 20
    assert ctl.continuous_step().position == 440.0 and ctl.continuous_step() is None
    state.update(scale=2.0, truth=460.0)  # contrast doubles; the new peak exactly one slice away: held
    held = ctl.continuous_step()
    assert held.position == 440.0 and held.reason == "held: peak within hold_slices of the previous focus"
    state["scale"] = 0.1
    assert ctl.continuous_step() is None  # reference 0.1
    state["scale"] = 0.2  # +100 % of a reference under 1
    assert ctl.continuous_step() is not None
    assert opened == [("c.json", None)] and set(r.source.kinds) == {"roi"}
    step = [t for t in held.trace if "pdaf_target_position" in t][0]
    assert step == {"t": step["t"], "pdaf_target_position": 460.0, "confidence": 0.2}
    ctl.roi_decode = False
    ctl.continuous_step()
    assert r.source.kinds[-1] == "whole"


def test_continuous_defocus_is_the_weighted_mean_over_the_confident_rois(pdaf):
    truth = {"t": 400.0}
    pdaf(IdealPdaf(lambda lens, i: (truth["t"], 0.0)[i], confidence=(0.9, 0.1)))  # RoI 1 under the floor
    ctl = Controller(rig(), method="pdaf", calibration="c.json", retrigger_frames=1)
    ctl.set_windows([[0, 0, 8, 8], [8, 8, 8, 8]])
    ctl.set_mode("continuous")
    assert ctl.continuous_step().position == 400.0 and ctl.continuous_step() is None
    truth["t"] = 430.0  # RoI 0 alone (weight 0.5 of 0.5): 30 codes, exactly 1.5 slices: not more
    assert ctl.continuous_step() is None
    truth["t"] = 440.0
    assert ctl.continuous_step().position == 440.0


def test_default_windows_bring_their_weights_and_the_verify_frame_is_not_an_af_step(pdaf):
    pdaf(IdealPdaf(lambda lens, i: (400.0, 900.0)[i]))
    ctl = Controller(rig(), method="pdaf", calibration="c.json")
    ctl.set_windows([[0, 0, 8, 8], [8, 8, 8, 8]], [1, 3])
    assert ctl.focus().position == 900.0  # the set weights
    assert ctl.focus(weights=[3, 1]).position == 400.0  # weights given with the default windows
    assert ctl.focus(rois=[[0, 0, 8, 8]]).position == 400.0  # RoIs given: their own (equal) weights
    pdaf(IdealPdaf(lambda lens, i: lens + 9.9))  # stops at once: 1 step, then the final move and its check
    res = Controller(rig(), method="pdaf", calibration="c.json", limits=Limits(max_steps=1)).focus()
    assert res.state is AFState.FOCUSED and (res.captures, res.verify_frames) == (1, 1)
    assert Controller(rig(), n_slices=25).slice_positions().tolist() == np.linspace(0, 960, 25).tolist()


def test_statistics_regions_of_more_columns_than_rows():
    L = np.full(HW, 500.0)
    f = DualPixelFrame(L, L, metadata={"focus_regions": [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]})
    assert frame_contrast(f, np.array([[8, 16, 8, 16]]), HW).tolist() == [6.0]  # 16 x 8 px cells: region (1, 1)
