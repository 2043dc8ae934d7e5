"""The focus cycle's plumbing on a rig double (tests/_ctl_fakes.py): what the Controller hands the
session (AF range, settle mode, windows, the rig profile's files), the result's timings, the
continuous mode's retrigger state, and the session's edges (reach tolerance with one or two slices,
the 1e-9 same-target rule, the exposure check's sampling grid).

Expected values follow from the definitions in hil_af/controller/core.py, request.py, af_range.py
and session.py, worked by hand.  The only stand-ins are at library boundaries:
``PdafPredictor.from_file`` (which calibration files are opened) and ``time.perf_counter`` as the
session module sees it (estimator CPU time, so per-step compute times are exact).
"""

from __future__ import annotations

import itertools
import math
from types import SimpleNamespace

import numpy as np
import pytest
from _ctl_fakes import gaussian, rig

from hil_af.controller import session as S
from hil_af.controller.af_range import dioptre_map, range_positions
from hil_af.controller.base import AFState, Limits
from hil_af.controller.core import Controller
from hil_af.controller.session import FocusSession, exposure_problem
from hil_af.errors import BadInput, FocusFailed
from hil_af.frames import DualPixelFrame
from hil_af.optics import LensMap
from hil_af.paths import models_dir
from hil_af.roiframe import RoiFrame


def slice_parabola(peak_slice: float, floor: float, spacing: float = 20.0):
    return lambda p: max(floor, 20.0 - (p / spacing - peak_slice) ** 2)


# -- AF range and the lens's units ---------------------------------------------------------
def test_a_lens_addressed_in_dioptres_is_its_own_lens_map():
    r = rig(lo=0.0, hi=15.0, n=61)  # 0.25 D a slice
    assert dioptre_map(r) is None  # native codes and no map given: none known
    r.lens.units = "dioptres"  # as libcamera-lens:// by default
    m = dioptre_map(r)
    assert (m.to_code(3.0), m.to_code(0.25), m.to_dioptres(12.5)) == (3.0, 0.25, 12.5)
    # near = 3..15 D: the positions are the dioptres themselves, at the rig's 0.25 D spacing
    assert np.allclose(range_positions(r, r.af_positions, "near"), np.linspace(3.0, 15.0, 49), rtol=0, atol=1e-12)
    r.lens_map = LensMap((0.0, 12.0), (0.0, 960.0))  # a map given wins
    assert dioptre_map(r) is r.lens_map


def test_focus_with_an_af_range_searches_only_that_ranges_slices():
    r = rig(gaussian(600.0, 100.0), lens_map=LensMap((0.0, 12.0), (0.0, 960.0)))
    res = Controller(r, method="cdaf").focus(af_range="near")  # 3..12 D = codes 240..960: 37 slices of 20
    assert r.source.exposed_at[:10] == [240.0 + 80.0 * k for k in range(10)]  # every 4th of the 37
    # the parabola through slices 17, 18, 19 of a curve symmetric about 600: slice 18 of the range
    assert res.state is AFState.FOCUSED and res.position == pytest.approx(600.0) and res.slice_index == 18


# -- what the controller takes from the rig and hands the session ------------------------
def test_the_rig_profile_names_every_calibration_and_the_pdaf_flat_field(monkeypatch):
    from hil_af.calibration import predict

    opened = []

    def from_file(path, flatfield_path=None):
        opened.append((path, flatfield_path))
        return SimpleNamespace()
    monkeypatch.setattr(predict.PdafPredictor, "from_file", staticmethod(from_file))
    prof = {"calibration": {"per_position": "/cal/p.json", "global": "/cal/g.json", "zncc": "/cal/z.json",
                            "flatfield": "/cal/ff.npz"}}
    ctl = Controller(rig(profile=prof), method="cdaf")
    for which in (False, True, "zncc"):
        ctl.estimators.pdaf(which)
    # zncc2 is the plain reference: its calibration opens without the rig's flat field
    assert opened == [("/cal/p.json", "/cal/ff.npz"), ("/cal/g.json", "/cal/ff.npz"), ("/cal/z.json", None)]
    assert ctl.pe_flatfield is None  # only an explicit flat field reaches the PE models


@pytest.mark.skipif(not (models_dir() / "step1.onnx").exists(), reason="no shipped model in models/")
def test_the_pe_models_run_on_one_intra_op_thread_unless_told():
    def threads(ctl):
        return ctl.estimators.pe(1).session.get_session_options().intra_op_num_threads

    assert threads(Controller(rig(), method="pe")) == 1 and threads(Controller(rig(), method="pe", threads=3)) == 3


def test_the_views_size_is_the_sources_crop_and_names_a_bad_roi():
    r = rig()
    r.source.view_hw = (24, 32)  # 24 rows x 32 columns of the 32 x 32 sensor
    ctl = Controller(r, method="cdaf")
    assert ctl.view_hw() == (24, 32)
    assert ctl._windows(None, None)[0].tolist() == [[4, 0, 24, 24]]  # the centred 24 x 24 default window
    with pytest.raises(BadInput, match=r"^roi\[0\] = \(x=0, y=0, w=32, h=32\) is not inside the 32x24 view$"):
        ctl.focus(rois=[[0, 0, 32, 32]])
    assert r.lens.commands == []


def test_a_zero_weight_is_allowed_a_negative_or_missing_one_is_bad_input():
    ctl = Controller(rig(), method="cdaf")
    two = [[0, 0, 8, 8], [8, 8, 8, 8]]
    assert ctl._windows(two, [1, 0])[1].tolist() == [1.0, 0.0]
    for bad in ([3, -1], [1, None]):  # sum 2 > 0, but one negative; None is not a number
        with pytest.raises(BadInput, match=r"^weights must be 2 finite non-negative numbers with a positive sum"):
            ctl._windows(two, bad)


def test_cdaf_libcamera_skips_frames_instead_of_waiting_for_the_lens():
    r = rig(lambda p: max(12.0, 20.0 - (p / 80.0 - 5.3) ** 2), position=960.0, settle_time_s=0.05)
    res = Controller(r, method="cdaf-libcamera").focus()
    # settle "frames": the session never sleeps, so the rig's clock stands still over the scan's
    # 8 + 6 x 13 captures (test_libcamera_scan_coarse_up_until_the_contrast_drops_then_three_fine_steps_back)
    assert res.state is AFState.FOCUSED and res.captures == 8 + 6 * 13 and res.elapsed_s == 0.0
    res = Controller(rig(slice_parabola(30.3, floor=8.0), settle_time_s=0.05), method="cdaf").focus()
    assert res.elapsed_s == pytest.approx(20 * 0.05)  # cdaf waits the lens's settle time after each of 20 moves


def test_elapsed_time_is_reported_to_the_microsecond():
    r = rig(slice_parabola(30.3, floor=8.0), settle_time_s=0.01000004)
    res = Controller(r, method="cdaf").focus()
    assert res.elapsed_s == 0.200001  # 20 settles: 0.2000008 s, rounded to 6 decimals


@pytest.fixture
def cpu_4ms(monkeypatch):
    """Every estimator step (``FocusSession.compute``) takes exactly 4 ms of CPU time."""
    ticks = (0.004 * k for k in itertools.count())
    monkeypatch.setattr(S, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))


def test_compute_time_per_step_is_the_estimators_cpu_time_over_its_steps(cpu_4ms):
    res = Controller(rig(slice_parabola(30.3, floor=8.0)), method="cdaf").focus()
    assert res.compute_steps == 19 and res.compute_ms_per_step == pytest.approx(4.0)
    res = Controller(rig(), method="cdaf", limits=Limits(max_steps=1)).focus()  # one step, then the limit
    assert res.state is AFState.FAILED and res.compute_steps == 1 and res.compute_ms_per_step == pytest.approx(4.0)
    res = Controller(rig(), method="cdaf", limits=Limits(max_steps=0)).focus()
    assert res.compute_steps == 0 and res.compute_ms_per_step == 0.0


# -- continuous mode's retrigger state -----------------------------------------------------
def scaled_peak():
    scene = {"k": 1.0}
    return scene, lambda p: scene["k"] * (1.0 + math.exp(-0.5 * ((p - 400.0) / 60.0) ** 2))


def test_continuous_retriggers_on_the_third_changed_frame_by_default_and_a_focused_cycle_resets_the_count():
    scene, curve = scaled_peak()
    ctl = Controller(rig(curve), method="cdaf")
    ctl.set_mode("continuous")
    assert ctl.continuous_step().state is AFState.FOCUSED and ctl.continuous_step() is None  # cycle, reference
    scene["k"] = 2.0  # the contrast doubles: +100 % > 25 %
    assert [ctl.continuous_step() for _ in range(2)] == [None, None]
    assert ctl.continuous_step() is not None  # the third frame in a row
    assert ctl.continuous_step() is None  # reference at k = 2
    scene["k"] = 1.0
    assert ctl.continuous_step() is None  # one changed frame counted...
    assert ctl.focus().state is AFState.FOCUSED  # ...then a cycle on request: reference and count start over
    assert ctl.continuous_step() is None  # the new reference, at k = 1
    scene["k"] = 2.0
    assert [ctl.continuous_step() for _ in range(2)] == [None, None]
    assert ctl.continuous_step() is not None


def test_continuous_after_a_failed_single_cycle_takes_a_reference_then_counts_from_zero():
    scene, curve = scaled_peak()
    ctl = Controller(rig(curve), method="cdaf")
    assert ctl.focus(timeout_s=0.05).state is AFState.FAILED  # 10 ms a move: out of time in the coarse pass
    ctl.set_mode("continuous")
    assert ctl.continuous_step() is None  # the reference
    scene["k"] = 2.0
    assert [ctl.continuous_step() for _ in range(2)] == [None, None]
    assert ctl.continuous_step() is not None


# -- the session's edges -------------------------------------------------------------------
@pytest.mark.parametrize("short, ok", [(0.5, True), (0.6, False)])
def test_one_slice_reaches_within_half_of_a_one_code_spacing(short, ok):
    s = FocusSession(rig(short=short), Limits(reach_tolerance=0.1), np.array([100.0]))
    s.move_to(100.0)
    if ok:
        assert s.capture().lens_position == 100.0 - short
    else:
        with pytest.raises(FocusFailed, match=r"\(tolerance 0.51\)$"):
            s.capture()


def test_two_slices_reach_within_half_their_spacing_and_exactly_the_tolerance_passes():
    s = FocusSession(rig(short=50.0), Limits(reach_tolerance=3.0), np.array([0.0, 100.0]))  # 0.51 x 100
    s.move_to(100.0)
    assert s.capture().lens_position == 50.0
    s = FocusSession(rig(short=12.0), Limits(reach_tolerance=12.0), rig().af_positions)  # 12 > 10.2: the limit
    s.move_to(100.0)
    assert s.capture().lens_position == 88.0  # exactly 12 codes short: not more than the tolerance


def test_the_model_settle_time_is_of_the_distance_moved_and_elapsed_counts_from_the_session_start():
    r = rig(position=100.0, settle_time_s=0.05, settle_tau_s=0.01)
    r.clock.sleep(5.0)  # the rig's clock is not at 0 when the cycle starts
    s = FocusSession(r, Limits(time_budget_s=1.0), r.af_positions, settle="model")
    s.move_to(100.0 + 2 * math.e)  # 2e codes from 100: tau x ln(2e / 2)
    s.capture()
    assert r.clock.monotonic() == pytest.approx(5.01) and s.elapsed_s() == pytest.approx(0.01)
    target = 100.0 + 2 * math.e
    assert s.trace == [{"t": 0.0, "move": target}, {"t": pytest.approx(0.01), "capture": target}]


def test_targets_closer_than_1e_9_to_the_commanded_one_are_the_same_move():
    r = rig(position=500.0)
    s = FocusSession(r, Limits(), r.af_positions)
    s.move_to(0.0)
    s.move_to(1e-9)  # exactly 1e-9 from the commanded 0: a new target
    s.move_to(1.5e-9)  # 5e-10 from it: the same
    s.move_to(0.5)
    assert r.lens.commands == [0.0, 1e-9, 0.5] and s.moves == 3
    r = rig(position=0.0)
    s = FocusSession(r, Limits(), r.af_positions)
    s.move_to(1e-9)  # a first move exactly 1e-9 from where the lens is: counted, not a re-command
    assert s.moves == 1 and s.trace == [{"t": 0.0, "move": 1e-9}]


def test_a_recommanded_first_target_is_checked_on_the_next_frame():
    r = rig(position=400.0, short=20.0)  # a VCM that stalls 20 codes short
    s = FocusSession(r, Limits(), r.af_positions)
    s.move_to(400.0)  # where the lens says it is: re-commanded, uncounted
    assert s.moves == 0 and r.lens.position == 380.0
    with pytest.raises(FocusFailed, match=r"^lens did not reach its target: commanded 400, frame exposed at 380 "):
        s.capture()


def dots(h: int, w: int, y0: int = 0, x0: int = 0) -> np.ndarray:
    """100 DN, but 0 on every 4th row and column counted from (y0, x0)."""
    a = np.full((h, w), 100.0)
    a[y0::4, x0::4] = 0.0
    return a


def test_the_exposure_check_samples_every_4th_pixel_from_each_views_or_rois_origin():
    black = "black frame (mean 0.0 DN of 1000)"  # every sample 0; any other grid meets 100 DN pixels
    assert exposure_problem(DualPixelFrame(dots(16, 16), dots(16, 16), white_level=1000.0)) == black
    L = dots(16, 16, 0, 0)

    def decode(keys):
        return (np.stack([L[y:y + h, x:x + w] for x, y, w, h in keys]),
                np.stack([L[y:y + h, x:x + w] for x, y, w, h in keys]))

    for rois in ([[0, 0, 8, 8], [8, 8, 8, 8]], [[0, 0, 8, 8], [8, 4, 8, 12]]):  # one size; two sizes
        assert exposure_problem(RoiFrame(decode, rois, (16, 16), white_level=1000.0)) == black
    assert exposure_problem(RoiFrame(decode, [[1, 0, 8, 8]], (16, 16), white_level=1000.0)) == ""  # off the grid
