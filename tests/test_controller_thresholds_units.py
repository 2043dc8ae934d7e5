"""Thresholds at their exact values: pe/pe2/hybrid confidence floors (MethodConfig, then the model
card's fitted ``controller`` block), the views-structure gate, and cdaf-fast's bracketing ``drop``,
peak ratio and refinement step.

The PE models answer at ``onnxruntime.InferenceSession.run`` (tests/_ctl_fakes.install_network);
a floor equal to a confidence is set from ``hil_af.model.inference.decode`` of the very logits the
stand-in returns, so "at the floor" is tested exactly, not to a tolerance.
"""

from __future__ import annotations

import numpy as np
import pytest
from _ctl_fakes import gaussian, install_network, logits, rig

from hil_af.controller.af_range import DioptreScale
from hil_af.controller.base import AFState, Limits
from hil_af.controller.cdaf_fast import FastSearchParams, run_cdaf_fast
from hil_af.controller.core import Controller
from hil_af.controller.methods import MethodConfig
from hil_af.controller.session import FocusSession
from hil_af.model.inference import decode
from hil_af.paths import models_dir

needs_model = pytest.mark.skipif(not (models_dir() / "step1.onnx").exists(), reason="no shipped model in models/")
OPEN = MethodConfig(pe_min_structure=0.0)  # no structure gate: the fake's views are flat


def textured():
    """32 x 32 views of a random texture, the right one shifted 2 px: structure the gate accepts."""
    t = np.random.default_rng(0).random((32, 40)).astype(np.float32) * 400 + 300
    return t[:, 2:34].copy(), t[:, 0:32].copy()


@needs_model
@pytest.mark.parametrize("method", ["pe", "pe2"])
def test_the_structure_gate_zeroes_a_sure_answer_on_flat_views(monkeypatch, method):
    plan, _ = install_network(monkeypatch)
    plan += [(30, 0.99), (30, 0.99)]
    res = Controller(rig(), method=method).focus()  # default gate 0.05; the card's floors 0.26 / 0.28
    assert res.state is AFState.FAILED and res.reason.startswith("low confidence: 0.00 < 0.2")
    plan[:] = [(30, 0.99), (30, 0.99)]
    res = Controller(rig(script=[textured(), textured()]), method=method).focus()
    assert res.state is AFState.FOCUSED and res.position == 600.0


def test_views_structure_counts_saturation_and_searches_8_px_either_way():
    from hil_af.controller.methods import views_structure
    from hil_af.frames import DualPixelFrame

    roi = np.array([[0, 0, 32, 32]])
    L, R = textured()
    assert views_structure(DualPixelFrame(L, R, white_level=1023.0), roi)[0] > 0.5
    L[:, :16] = R[:, :16] = 1023.0  # half the pixels at white: saturation term 1 - 2 x 0.5 = 0
    assert views_structure(DualPixelFrame(L, R, white_level=1023.0), roi)[0] == 0.0
    t = np.random.default_rng(1).random((32, 60)).astype(np.float32) * 400 + 300
    far = DualPixelFrame(t[:, 9:41].copy(), t[:, 0:32].copy(), white_level=1023.0)  # 9 px: outside +-8
    assert views_structure(far, roi)[0] < MethodConfig.pe_min_structure


@needs_model
def test_hybrid_gates_each_step_on_its_own_frame(monkeypatch):
    plan, seen = install_network(monkeypatch)
    plan += [(30, 0.99)]
    res = Controller(rig(gaussian(500.0, 60.0)), method="hybrid").focus()  # flat views: step 1 gated to 0
    assert res.fallback == "cdaf" and [s[0] for s in seen] == ["step1.onnx"]
    plan[:] = [(30, 0.99), (30, 0.99)]
    res = Controller(rig(gaussian(500.0, 60.0), script=[textured()]), method="hybrid").focus()
    assert res.fallback == "cdaf" and len(seen) == 3  # step 1 textured and sure; step 2's flat frame: 0


@needs_model
def test_pe_floors_come_from_the_model_card_per_method(monkeypatch):
    plan, _ = install_network(monkeypatch)  # models/card.json: controller pe 0.26, pe2 0.28
    plan += [(30, 0.27)]
    assert Controller(rig(), method="pe", config=OPEN).focus().state is AFState.FOCUSED
    plan += [(30, 0.23)]  # above the 0.2 default, below pe's fitted 0.26
    assert Controller(rig(), method="pe", config=OPEN).focus().reason.startswith("low confidence: 0.23 < 0.26")
    plan += [(30, 0.9), (31, 0.27)]
    res = Controller(rig(), method="pe2", config=OPEN).focus()
    assert res.reason.startswith("low confidence: 0.27 < 0.28")
    plan += [(30, 0.9), (31, 0.27)]
    res = Controller(rig(gaussian(500.0, 60.0)), method="hybrid", config=OPEN).focus()
    assert res.fallback == "cdaf"


@needs_model
def test_a_confidence_equal_to_the_floor_or_the_hybrid_threshold_passes(monkeypatch):
    plan, _ = install_network(monkeypatch)
    at = float(decode(logits(30, 0.5), 49).confidence[0])  # what the controller will see for (30, 0.5)
    plan += [(30, 0.5)]
    res = Controller(rig(), method="pe", config=MethodConfig(pe_min_structure=0.0, min_confidence=at)).focus()
    assert res.state is AFState.FOCUSED and res.confidence == at
    plan += [(30, 0.5), (31, 0.9)]  # step 1 exactly at the hybrid threshold: step 2 runs
    cfg = MethodConfig(pe_min_structure=0.0, hybrid_threshold=at, min_confidence=0.3)
    res = Controller(rig(), method="hybrid", config=cfg).focus()
    assert res.fallback is None and res.position == 620.0
    plan += [(30, 0.9), (31, 0.5)]  # step 2 exactly at the pe2 floor: kept
    res = Controller(rig(), method="hybrid", config=MethodConfig(pe_min_structure=0.0, min_confidence=at)).focus()
    assert res.fallback is None and res.position == 620.0 and res.confidence == at


# -- cdaf-fast thresholds ------------------------------------------------------------------
def table(values: dict[float, float]):
    """Contrast by dioptre (80 codes a dioptre on the fake rig), linear in between."""
    return lambda p: float(np.interp(p / 80.0, list(values), list(values.values())))


@pytest.mark.parametrize("curve, first5", [
    # 6 D at exactly half the best (4 D): not bracketed, the walk goes on to 12 D
    ({0: 1.0, 2: 2.0, 4: 4.0, 6: 2.0, 8: 1.0, 10: 1.0, 12: 1.0}, [0.0, 160.0, 320.0, 480.0, 640.0]),
    # both neighbours under half: bracketed at 6 D, next the refinement at 4 - 0.6 D
    ({0: 0.1, 2: 1.0, 4: 4.0, 6: 1.0, 8: 0.1, 10: 0.1, 12: 0.1}, [0.0, 160.0, 320.0, 480.0, 272.0]),
])
def test_cdaf_fast_brackets_only_below_half_the_best(curve, first5):
    r = rig(table(curve))
    Controller(r, method="cdaf-fast").focus()
    assert r.source.exposed_at[:5] == pytest.approx(first5)


def test_cdaf_fast_needs_both_grid_neighbours_even_at_the_first_grid_point():
    r = rig(gaussian(184.0, 56.0), position=960.0)  # peak 2.3 D, walked from 12 D down
    Controller(r, method="cdaf-fast").focus()
    assert r.source.exposed_at[:7] == [960.0, 800.0, 640.0, 480.0, 320.0, 160.0, 0.0]  # 0 D brackets 2 D


@pytest.mark.parametrize("base, spike, reason", [
    (1.0, 1.15, None),  # best / median exactly 1.15: a peak
    (0.5, 0.55, "no contrast peak: best/median contrast 1.100 < 1.15 over 7 coarse samples (flat or dark RoI)"),
])
def test_cdaf_fast_peak_ratio_at_and_under_1_15(base, spike, reason):
    res = Controller(rig(lambda p: spike if p == 480.0 else base), method="cdaf-fast").focus()
    assert res.reason == reason and (res.state is AFState.FOCUSED) == (reason is None)


def test_cdaf_fast_refines_at_half_the_coarse_step_when_that_is_under_0_6_dioptres():
    r = rig(gaussian(424.0, 56.0))
    s = FocusSession(r, Limits(), r.af_positions, settle="model")
    ctx = Controller(r, method="cdaf-fast").estimators
    run_cdaf_fast(s, ctx, np.array([[0, 0, 32, 32]]), np.array([1.0]), params=FastSearchParams(coarse_step=1.0))
    coarse = [80.0 * d for d in range(13)]  # 1 D grid: 6 D stays above half of 5 D, so all 13 points
    assert r.source.exposed_at[:15] == pytest.approx(coarse + [360.0, 440.0])  # 5 -+ 0.5 D


def test_dioptre_scale_of_one_or_two_slices_and_default_window_weights():
    assert DioptreScale(None, np.array([100.0])).to_dioptres(104.0) == 1.0  # 1 code a "slice"
    assert DioptreScale(None, np.array([100.0, 140.0])).to_dioptres(260.0) == 1.0  # 4 slices of 40 codes
    ctl = Controller(rig(), method="cdaf")
    ctl.set_windows([[0, 0, 8, 8], [8, 8, 8, 8]], [1, 3])
    assert ctl.weights.tolist() == [0.25, 0.75]


# -- wider windows and the RoI-only PE path ------------------------------------------------
def test_grown_windows_stay_inside_the_view_at_every_edge():
    from hil_af.controller.methods import _grown

    out = _grown(np.array([[2, 2, 4, 4], [10, 28, 4, 4]]), (32, 32))
    assert out.tolist() == [[0, 0, 12, 12], [6, 20, 12, 12]] and out.dtype == np.int32


@needs_model
def test_hybrid_follows_a_window_three_times_a_textureless_roi(monkeypatch):
    plan, _ = install_network(monkeypatch)
    plan += [(30, 0.1)]  # step 1 unsure: no calibration, so contrast search

    def regions(p):  # 4 x 4 statistics regions of 8 x 8 px; region (1, 1) is flat, the rest peak at 400
        g = np.full((4, 4), gaussian(400.0, 60.0)(p))
        g[1, 1] = 1.0
        return g

    res = Controller(rig(regions), method="hybrid", config=OPEN).focus(rois=[[8, 8, 8, 8]])
    assert res.state is AFState.FOCUSED and res.fallback == "cdaf-wide" and abs(res.position - 400.0) <= 10.0


@needs_model
def test_pe_on_roi_frames_groups_rois_by_size_and_keeps_each_answer_with_its_roi(monkeypatch):
    plan, seen = install_network(monkeypatch)
    plan += [(30, 0.9), (20, 0.9)]  # one call per RoI size: 16 x 16 first, then 8 x 8
    r = rig(roi_source=True)
    res = Controller(r, method="pe", config=OPEN).focus(rois=[[0, 0, 16, 16], [16, 16, 8, 8], [16, 0, 16, 16]],
                                                       weights=[1, 5, 1])
    assert len(seen) == 2 and set(r.source.kinds) == {"roi"}
    assert res.position == 400.0  # the 8 x 8 RoI (slice 20) carries 5 of the 7 weights
    plan += [(30, 0.9), (20, 0.9)]
    res = Controller(rig(roi_source=True), method="pe", config=OPEN).focus(
        rois=[[0, 0, 16, 16], [16, 16, 8, 8], [16, 0, 16, 16]], weights=[5, 1, 1])
    assert res.position == 600.0
    plan += [(25, 0.9), (35, 0.9)]  # 16 x 8 and 8 x 8: two sizes though equally high
    res = Controller(rig(roi_source=True), method="pe", config=OPEN).focus(rois=[[0, 0, 16, 8], [16, 16, 8, 8]],
                                                                         weights=[1, 5])
    assert res.position == 700.0 and not plan
    plan += [(22, 0.9)]  # one size: one call
    res = Controller(rig(roi_source=True), method="pe", config=OPEN).focus(rois=[[0, 0, 8, 8], [8, 8, 8, 8]])
    assert res.position == 440.0 and len(seen) == 7  # 2 + 2 + 2 calls before, 1 here


@needs_model
def test_pe_reads_the_lens_slice_from_the_frame_else_from_the_lens(monkeypatch):
    plan, seen = install_network(monkeypatch)
    plan += [(30, 0.9), (30, 0.9)]
    r = rig(position=200.0)  # slice 10
    r.source.report = lambda p: 240.0  # the frame says slice 12
    Controller(r, method="pe", config=OPEN).focus()
    r = rig(position=200.0)
    r.source.report = lambda p: float("nan")  # no position in the frame: the lens's
    res = Controller(r, method="pe", config=OPEN).focus()
    assert [k for _, k in seen] == [12, 10]
    step = [t for t in res.trace if "predict_slice" in t]
    assert step == [{"t": 0.0, "predict_slice": 30.0, "confidence": pytest.approx(0.9, abs=1e-3), "from_slice": 10}]


@needs_model
def test_a_structure_exactly_at_the_gate_passes(monkeypatch):
    from hil_af.controller.methods import views_structure
    from hil_af.frames import DualPixelFrame

    plan, _ = install_network(monkeypatch)
    plan += [(30, 0.9)]
    L, R = textured()
    at = float(views_structure(DualPixelFrame(L, R, white_level=1023.0), np.array([[0, 0, 32, 32]]))[0])
    res = Controller(rig(script=[(L, R)]), method="pe", config=MethodConfig(pe_min_structure=at)).focus()
    assert res.state is AFState.FOCUSED


def test_the_pe_models_come_from_the_controllers_model_dir_and_flat_field(tmp_path):
    from hil_af.errors import BadInput

    with pytest.raises(BadInput, match=f"model card {tmp_path}"):
        Controller(rig(), method="pe", model_dir=str(tmp_path)).focus()
    with pytest.raises(BadInput, match="missing.npz: no such flat-field file"):
        Controller(rig(), method="pe", flatfield=str(tmp_path / "missing.npz")).focus()


@needs_model
def test_a_rig_flat_field_reaches_both_pe_models(tmp_path):
    # Controller(flatfield=FILE): the PE models of both steps correct their patches with that file's
    # gains (core.Estimators.pe), not with none and not with the model's own
    from hil_af.calibration.flatfield import FlatField

    gl = np.array([[1.0, 1.5, 2.0], [1.0, 1.5, 2.0]])
    gr = np.array([[2.0, 1.0, 0.5], [2.0, 1.0, 0.5]])
    path = FlatField(gain_left=gl, gain_right=gr, knot_y=np.array([8.0, 24.0]), knot_x=np.array([4.0, 16.0, 28.0]),
                     sensor_hw=(32, 32)).save(tmp_path / "ff.npz")
    est = Controller(rig(), method="pe", flatfield=str(path)).estimators
    for step in (1, 2):
        ff = est.pe(step).flatfield
        assert ff is not None, f"step {step}: the rig's flat field did not reach the model"
        np.testing.assert_array_equal(ff.gain_left, gl)
        np.testing.assert_array_equal(ff.gain_right, gr)
