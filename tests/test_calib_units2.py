"""The predictor's far-from-focus second look, its defaults and messages, and the track fits'
confidence weights, on hand-made frames and tracks.  Expected values come from the rules in
hil_af/calibration/predict.py and fit.py: the second look's windows are worked out by hand
(``grow`` x the RoI's width, centred on it, clipped into the frame; a search ``grow`` x longer,
capped at ``(width - 4) // 2``, the widest the estimator takes), then measured with the estimator
itself; seconds in all."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest

from hil_af.calibration.flatfield import FlatField
from hil_af.calibration.predict import PdafPredictor
from hil_af.errors import BadInput
from hil_af.pdaf import estimate_rois, estimate_windows
from test_calib_fit import SENSOR, _cal_for_predictor, _textured_frame
from test_calib_units import _flat, _track_samples, _vignetted_frame


@functools.lru_cache(maxsize=1)
def _base_cal():
    return _cal_for_predictor([[-0.02] * 4] * 3, [[0.0] * 4] * 3)  # fits synthetic samples: once per module


def _cal():
    """gain -0.02 px/unit, offset 0 everywhere; estimator xcorr, max_shift 12, refine upsample; limit 4 px."""
    return copy.deepcopy(_base_cal())


def _measure(fr, windows, max_shift, method="xcorr", refine="upsample", gains=None):
    return estimate_windows(fr.patches, np.array(windows, np.int64), method=method, max_shift=max_shift,
                            refine=refine, white_level=fr.white_level, gains=gains)


def test_second_look_window_is_grow_times_wider_centred_and_clipped_with_a_longer_search():
    """A 20 px disparity is beyond a 64-px RoI's +-12 px search.  grow 3 (the default): windows 192 px
    wide centred on the RoI (x + 32 - 96), clipped into the 320-px frame, same rows; search 36 px.
    grow 2: 128 px (x + 32 - 64), search 24 px."""
    fr = _textured_frame(20.0, 600.0)
    rois = np.array([[0, 10, 64, 64], [256, 150, 64, 48], [100, 90, 64, 64]], np.int32)  # left edge, right edge (h 48), middle
    narrow = PdafPredictor(_cal(), grow=1).predict(fr, rois)
    assert np.all(np.abs(narrow.disparity_px - 20) > 5)
    est = PdafPredictor(_cal()).predict(fr, rois)
    want = _measure(fr, [[0, 10, 192, 64], [128, 150, 192, 48], [36, 90, 192, 64]], 36)
    np.testing.assert_allclose(want.disparity_px, 20.0, atol=0.05)
    np.testing.assert_allclose(est.disparity_px, want.disparity_px, atol=1e-9)
    np.testing.assert_allclose(est.confidence, want.confidence, atol=1e-9)
    np.testing.assert_allclose(est.target_position, 600.0 + want.disparity_px / 0.02, rtol=1e-12)
    two = PdafPredictor(_cal(), grow=2).predict(fr, rois)
    want2 = _measure(fr, [[0, 10, 128, 64], [192, 150, 128, 48], [68, 90, 128, 64]], 24)
    np.testing.assert_allclose(want2.disparity_px, 20.0, atol=0.05)
    np.testing.assert_allclose(two.disparity_px, want2.disparity_px, atol=1e-9)
    np.testing.assert_allclose(two.confidence, want2.confidence, atol=1e-9)


def test_a_frame_narrower_than_the_wide_window_caps_the_search():
    """A 60-px-wide crop: the window is the whole width (60 < 3 x 40) and the search (60 - 4) // 2 = 28 px."""
    fr = _textured_frame(20.0, 600.0, origin=(50, 100), view_hw=(100, 60))
    est = PdafPredictor(_cal()).predict(fr, np.array([[10, 20, 40, 40]]))
    want = _measure(fr, [[0, 20, 60, 40]], 28)
    assert want.disparity_px[0] == pytest.approx(20.0, abs=0.2)
    assert est.disparity_px[0] == pytest.approx(want.disparity_px[0], abs=1e-9)
    assert est.confidence[0] == pytest.approx(want.confidence[0], abs=1e-9)


def test_second_look_is_kept_only_where_it_is_more_confident():
    """11.5 px: both RoIs peak within 1 px of their +-12 px search edge, so both get the second look;
    each keeps whichever of its two measurements is the more confident (here one of each)."""
    fr = _textured_frame(11.5, 600.0)
    rois = np.array([[120, 80, 64, 64], [20, 150, 64, 64]], np.int32)
    own = estimate_rois(fr.left, fr.right, rois, method="xcorr", max_shift=12, refine="upsample", white_level=4000.0)
    assert np.all(np.abs(own.disparity_px) >= 11)
    wide = _measure(fr, [[56, 80, 192, 64], [0, 150, 192, 64]], 36)
    better = wide.confidence > own.confidence
    assert better.tolist() == [True, False]  # the case this test is about: one of each
    est = PdafPredictor(_cal()).predict(fr, rois)
    np.testing.assert_allclose(est.disparity_px, np.where(better, wide.disparity_px, own.disparity_px), atol=1e-9)
    np.testing.assert_allclose(est.confidence, np.where(better, wide.confidence, own.confidence), atol=1e-9)


def test_a_textureless_roi_near_focus_gets_the_second_look():
    """A flat RoI (confidence < 0.3) with texture around it: the 192-px window sees the texture and
    measures its 3 px disparity, although the RoI's own peak is nowhere near its search edge."""
    fr = _textured_frame(3.0, 600.0)
    fr.left[:, 128:192] = 300.0
    fr.right[:, 128:192] = 300.0
    roi = np.array([[128, 90, 64, 64]], np.int32)
    own = estimate_rois(fr.left, fr.right, roi, method="xcorr", max_shift=12, refine="upsample", white_level=4000.0)
    assert own.confidence[0] < 0.3 and abs(own.disparity_px[0]) < 11
    est = PdafPredictor(_cal()).predict(fr, roi)
    want = _measure(fr, [[64, 90, 192, 64]], 36)
    assert want.confidence[0] > 0.3 and want.disparity_px[0] == pytest.approx(3.0, abs=0.2)
    assert est.disparity_px[0] == pytest.approx(want.disparity_px[0], abs=1e-9)
    assert est.confidence[0] == pytest.approx(want.confidence[0], abs=1e-9)


def test_second_look_applies_the_flat_field():
    """Vignetted views (left / gain_left, right / gain_right): the flat field gives back the exact pair
    in the wide windows too, so the 20 px disparity is measured with full confidence."""
    H, W = SENSOR
    ff = FlatField(gain_left=np.array([[0.6, 1.0, 1.4, 1.8], [1.2, 0.8, 0.7, 1.5]], np.float32),
                   gain_right=np.array([[1.0, 1.3, 0.9, 1.0], [0.8, 1.0, 1.2, 1.1]], np.float32),
                   knot_y=np.array([H / 4, 3 * H / 4]), knot_x=(np.arange(4) + 0.5) * W / 4, sensor_hw=SENSOR)
    fr = _vignetted_frame(20.0, 600.0, ff)
    rois = np.array([[20, 20, 64, 64], [200, 150, 64, 64], [130, 90, 64, 64]], np.int32)
    est = PdafPredictor(_cal(), flatfield=ff).predict(fr, rois)
    np.testing.assert_allclose(est.disparity_px, 20.0, atol=0.01)
    assert np.all(est.confidence > 0.9)
    want = _measure(fr, [[0, 20, 192, 64], [128, 150, 192, 64], [66, 90, 192, 64]], 36, gains=ff.gains((0, 0), SENSOR))
    np.testing.assert_allclose(est.disparity_px, want.disparity_px, atol=1e-9)
    np.testing.assert_allclose(est.confidence, want.confidence, atol=1e-9)


@pytest.mark.parametrize("method, refine", [("zncc", "upsample"), ("xcorr", "parabola")])
def test_second_look_uses_the_calibrations_estimator_and_the_white_level(method, refine):
    cal = _cal()
    cal["estimator"].update(method=method, refine=refine)
    fr = _textured_frame(20.0, 600.0)
    fr.left[20:40, 100:140] = 4000.0  # saturated in the wide window (white level 4000)
    fr.right[20:40, 100:140] = 4000.0
    est = PdafPredictor(cal).predict(fr, np.array([[20, 20, 64, 64]], np.int32))
    want = _measure(fr, [[0, 20, 192, 64]], 36, method=method, refine=refine)
    assert est.disparity_px[0] == pytest.approx(want.disparity_px[0], abs=1e-9)
    assert est.confidence[0] == pytest.approx(want.confidence[0], abs=1e-9)


def test_disparity_limit_defaults_to_the_search_range_and_slice_spacing_is_read():
    """A calibration written without ``disparity_limit_px`` flags disparities beyond max_shift (12 px)."""
    cal = _cal()
    del cal["disparity_limit_px"]
    pr = PdafPredictor(cal, grow=1)
    assert pr.limit == 12.0 and pr.slice_spacing == 16.0  # synthetic_samples' spacing
    rois = np.array([[120, 80, 64, 64]], np.int32)
    assert pr.predict(_textured_frame(8.0, 600.0), rois).in_range.tolist() == [True]  # 8 <= 12 (4 with the limit)
    assert PdafPredictor(_cal(), grow=1).predict(_textured_frame(8.0, 600.0), rois).in_range.tolist() == [False]


def test_a_flat_field_for_another_sensor_is_refused_by_name():
    ff = FlatField(gain_left=np.ones((2, 2), np.float32), gain_right=np.ones((2, 2), np.float32),
                   knot_y=np.array([120.0, 360.0]), knot_x=np.array([160.0, 480.0]), sensor_hw=(480, 640))
    with pytest.raises(BadInput, match=r"^flat field is for a \(480, 640\) sensor, rig-7\.json for \(240, 320\)$"):
        PdafPredictor(_cal(), flatfield=ff, name="rig-7.json")


def test_recorded_flat_field_mismatch_lists_every_candidate(tmp_path):
    """Recorded as ff/rec.npz: both candidates (ff/rec.npz and rec.npz beside CAL.json) hold another flat field."""
    from hil_af.calibration.flatfield import file_sha256
    from hil_af.calibration.store import save_calibration

    rec = _flat(tmp_path, "rec.npz")
    (tmp_path / "cal" / "ff").mkdir(parents=True)
    other = _flat(tmp_path / "cal" / "ff", "rec.npz", left=600.0)
    (tmp_path / "cal" / "rec.npz").write_bytes(other.read_bytes())
    cp = save_calibration(tmp_path / "cal" / "CAL.json",
                          dict(_cal(), flatfield={"path": "ff/rec.npz", "sha256": file_sha256(rec)}))
    d = tmp_path / "cal"
    with pytest.raises(BadInput, match=rf"^{cp} was fitted with the flat field ff/rec\.npz \(sha256 {file_sha256(rec)[:12]}"
                                       rf"\.\.\.\), but {d / 'ff' / 'rec.npz'}, {d / 'rec.npz'} has other contents: "
                                       r"pass --flatfield FLAT\.npz$"):
        PdafPredictor.from_file(cp)


def test_track_fits_weigh_points_by_confidence():
    """Track 3 has 5 points on the cell's line (confidence 1) and 12 on another line with confidence 0:
    weighted, its fit is the cell's line and it is kept; the other line has no weight."""
    from hil_af.calibration.fit import track_consensus

    five = [0.0, 8.0, 16.0, 24.0, 32.0]
    s, cell = _track_samples([(0, five, -0.015, 0.2), (0, five, -0.015, 0.25), (0, five, -0.015, 0.15),
                              (0, five + list(np.linspace(1.0, 31.0, 12)), -0.015, 0.2), (0, five, -0.05, 2.0)])
    t3 = np.flatnonzero(s.stack == 3)[5:]
    s.disparity[t3] = -0.05 * s.defocus[t3] + 2.0
    s.confidence[t3] = 0.0
    keep = track_consensus(s, np.ones(s.defocus.size, bool), cell)
    assert sorted(set(s.stack[keep].tolist())) == [0, 1, 2, 3]
    assert keep[s.stack == 3].all()


def test_track_consensus_finds_the_winner_beyond_the_first_blocks_of_64():
    """134 judged tracks in one cell: 128 on lines of their own (slope -0.015, offsets 1.0, 1.5, ...
    64.5 px, 0.5 px apart) and, last in track order, 6 on one common line (offsets 0.3 ... 0.35 px):
    those 6 are kept, nothing else."""
    from hil_af.calibration.fit import track_consensus

    five = [0.0, 8.0, 16.0, 24.0, 32.0]
    tracks = [(0, five, -0.015, 1.0 + 0.5 * t) for t in range(128)] + [(0, five, -0.015, 0.3 + 0.01 * t) for t in range(6)]
    s, cell = _track_samples(tracks)
    keep = track_consensus(s, np.ones(s.defocus.size, bool), cell)
    assert sorted(set(s.stack[keep].tolist())) == list(range(128, 134))


def test_track_consensus_judges_a_cell_of_exactly_three_tracks_and_skips_flat_ones():
    """Cell 0: exactly 3 judged tracks, one an outlier: it is dropped.  Cell 1: 2 tracks on a line and
    3 whose disparity does not change with defocus (slope 0): those are not judged, so the cell has
    fewer than 3 judged tracks and keeps everything."""
    from hil_af.calibration.fit import track_consensus

    five = [0.0, 8.0, 16.0, 24.0, 32.0]
    s, cell = _track_samples([(0, five, -0.015, 0.2), (0, five, -0.015, 0.3), (0, five, -0.015, 3.0),
                              (1, five, -0.015, 0.2), (1, five, -0.015, 0.3),
                              (1, five, 0.0, 1.0), (1, five, 0.0, 1.1), (1, five, 0.0, 1.2)])
    keep = track_consensus(s, np.ones(s.defocus.size, bool), cell)
    assert sorted(set(s.stack[keep].tolist())) == [0, 1, 3, 4, 5, 6, 7]


def test_decorate_adds_the_dcc_and_the_gain_per_slice_rounded_to_six_digits():
    from hil_af.calibration.fit import _decorate

    f = _decorate({"gain_px_per_unit": 1.0, "offset_px": 0.123456789, "n_points": 7}, 16.0)
    assert f == {"gain_px_per_unit": 1.0, "offset_px": 0.123457, "n_points": 7, "dcc_units_per_px": 1.0,
                 "gain_px_per_slice": 16.0}
    f = _decorate({"gain_px_per_unit": -0.04}, 12.5)
    assert f["dcc_units_per_px"] == -25.0 and f["gain_px_per_slice"] == -0.5
