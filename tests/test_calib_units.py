"""Calibration bookkeeping on hand-made stacks: in-focus positions, measure_stacks' columns and
refusals, predict_patches with a flat field, one_shot_errors (expected values from the definitions
in hil_af/calibration/fit.py and predict.py; seconds in all)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hil_af.calibration.fit import in_focus_positions, measure_stacks
from hil_af.calibration.flatfield import FlatField
from hil_af.calibration.predict import PdafPredictor, one_shot_errors
from hil_af.errors import BadInput
from hil_af.pdaf import estimate_rois
from hil_af.stacks import FocalStack, save_stack
from test_calib_fit import SENSOR, _cal_for_predictor, _textured_frame

LP = np.array([100.0, 110.0, 120.0, 130.0, 140.0])  # lens positions, native units (spacing 10)


def _stripes(amplitudes: np.ndarray, width: int = 16, h: int = 16, mean: float = 200.0) -> np.ndarray:
    """[n, h, width] float32: mean + a_k x vertical stripes of period 4 (+1 +1 -1 -1).  Over any RoI
    whose width is a multiple of 4 the mean is ``mean`` and the Sobel energy is proportional to a_k^2,
    so contrast_curve is K a_k^2 (K the same for every slice)."""
    t = np.where((np.arange(width) // 2) % 2 == 0, 1.0, -1.0)
    return (mean + amplitudes[:, None, None] * t[None, None, :] * np.ones((1, h, 1))).astype(np.float32)


def _curve_stack(curves, gt_index, meta=None, origin=(0, 0)) -> FocalStack:
    """One 16 x 16 RoI per curve side by side; the RoI's contrast over the slices is proportional to its curve."""
    views = np.concatenate([_stripes(np.sqrt(np.asarray(c, np.float64))) for c in curves], axis=2)
    P = len(curves)
    rois = np.array([[16 * i, 0, 16, 16] for i in range(P)], np.int32)
    return FocalStack(views, views.copy(), LP.copy(), rois, np.asarray(gt_index, np.int16), (64, 16 * P + 32), origin,
                      {"format": "focal-stack", "version": 1, "black_level": 0, "white_level": 4095,
                       "lens_units": "vcm_code", **(meta or {})})


def _parabola(vertex: float) -> list[float]:
    return [100.0 - (k - vertex) ** 2 for k in range(LP.size)]


def test_in_focus_position_exact_then_contrast_peak_then_the_gt_slice():
    curves = [_parabola(2.0),                # 0: exact value given (123.0)
              _parabola(2.25),               # 1: no exact value: contrast vertex 2.25 -> 100 + 22.5
              _parabola(3.0),                # 2: vertex exactly one slice from gt 2: still the contrast peak, 130
              _parabola(3.0),                # 3: vertex two slices from gt 1: the gt slice's position, 110
              _parabola(2.0),                # 4: exact 131 (an int) wins over the curve
              [50.0, 4, 3, 2, 1],            # 5: gt slice 0 is a known slice: peak at slice 0 -> 100
              _parabola(2.0)]                # 6: gt -1 and no exact value: unknown
    exact = [123.0, None, float("nan"), "x", 131, float("inf"), None]
    st = _curve_stack(curves, [2, 2, 2, 1, 3, 0, -1], {"gt_lens_positions": exact})
    out = in_focus_positions(st)
    assert out.dtype == np.float64 and out.shape == (7,)
    np.testing.assert_allclose(out[:6], [123.0, 122.5, 130.0, 110.0, 131.0, 100.0], atol=1e-3)
    assert math.isnan(out[6])
    # a list of the wrong length is ignored: every RoI from its curve or gt slice
    st.meta["gt_lens_positions"] = exact[:6]
    np.testing.assert_allclose(in_focus_positions(st)[:6], [120.0, 122.5, 130.0, 110.0, 120.0, 100.0], atol=1e-3)
    st.meta["gt_lens_positions"] = "123"
    assert in_focus_positions(st)[0] == pytest.approx(120.0, abs=1e-3)


def _save(path, st):
    return save_stack(path, st, compressed=False)


def test_measure_stacks_columns(tmp_path):
    """One row per (stack, known RoI, slice): stack and RoI numbers, full-plane centres, lens position,
    defocus = lens position - in-focus position, and the estimator's disparity and confidence."""
    rng = np.random.default_rng(0)
    tex = (300 + 40 * rng.standard_normal((5, 24, 80))).astype(np.float32)
    tex[:, :6, 4:14] = 1000  # saturated (white level 1000): the confidence's saturation term
    right = np.roll(tex, 2, axis=2)
    rois = np.array([[0, 0, 24, 20], [28, 0, 24, 20], [52, 0, 24, 20]], np.int32)  # w != h
    meta = {"format": "focal-stack", "version": 1, "black_level": 16, "white_level": 1000, "lens_units": "um",
            "gt_lens_positions": [105.0, 125.0, 135.0]}
    a = _save(tmp_path / "a.npz", FocalStack(tex, right, LP.copy(), rois, np.array([-1, -1, -1], np.int16), (100, 200),
                                             (10, 30), {**meta, "gt_lens_positions": [None, None, None]}))
    b = _save(tmp_path / "b.npz", FocalStack(tex, right, LP.copy(), rois, np.array([1, -1, 3], np.int16), (100, 200),
                                             (10, 30), meta))
    c = _save(tmp_path / "c.npz", FocalStack(tex, right, 2 * LP, rois[:1], np.array([2], np.int16), (100, 200),
                                             (0, 0), {**meta, "gt_lens_positions": [250.0]}))
    s = measure_stacks([a, b, c], method="zncc", max_shift=5, refine="parabola")
    # stack a has no known RoI: skipped; b: all three (exact values); c: its one RoI
    n = LP.size
    assert s.stack.tolist() == [1] * 3 * n + [2] * n
    assert s.roi.tolist() == [0, 1, 2] * n + [0] * n
    assert s.stack.dtype == np.int64 and s.roi.dtype == np.int64
    np.testing.assert_array_equal(s.cx, [30 + 12, 30 + 40, 30 + 64] * n + [12] * n)
    np.testing.assert_array_equal(s.cy, [10 + 10] * 3 * n + [10] * n)
    np.testing.assert_array_equal(s.lens_position, np.concatenate([np.repeat(LP, 3), 2 * LP]))
    np.testing.assert_array_equal(s.defocus, np.concatenate([np.repeat(LP, 3) - np.tile([105.0, 125.0, 135.0], n),
                                                             2 * LP - 250.0]))
    want = [estimate_rois(tex[k] - 16, right[k] - 16, rois, method="zncc", max_shift=5, refine="parabola",
                          white_level=1000 - 16) for k in range(n)]
    want_c = [estimate_rois(tex[k] - 16, right[k] - 16, rois[:1], method="zncc", max_shift=5, refine="parabola",
                            white_level=1000 - 16) for k in range(n)]
    np.testing.assert_allclose(s.disparity, np.concatenate([w.disparity_px for w in want + want_c]))
    np.testing.assert_allclose(s.confidence, np.concatenate([w.confidence for w in want + want_c]))
    assert np.all(np.abs(s.disparity) > 1)  # the pair is shifted: not a trivial 0
    assert s.sensor_hw == (100, 200) and s.lens_units == "um"
    assert s.slice_spacing == 10.0  # median of the stacks' spacings 10, 10, 20
    assert s.files == [str(a), str(b), str(c)]
    # with a flat field each frame is flat-fielded (its own origin) before the estimator
    ff = FlatField(gain_left=np.array([[0.7, 1.3], [1.1, 0.9]], np.float32), gain_right=np.ones((2, 2), np.float32),
                   knot_y=np.array([25.0, 75.0]), knot_x=np.array([50.0, 150.0]), sensor_hw=(100, 200))
    f = measure_stacks([b], method="xcorr", max_shift=5, refine="parabola", flatfield=ff)  # not xcorr's default refine
    gl, gr = ff.gains((10, 30), (24, 80))
    want = [estimate_rois((tex[k] - 16) * gl, (right[k] - 16) * gr, rois, method="xcorr", max_shift=5,
                          refine="parabola", white_level=1000 - 16) for k in range(n)]
    np.testing.assert_allclose(f.disparity, np.concatenate([w.disparity_px for w in want]), rtol=1e-6)
    np.testing.assert_allclose(f.confidence, np.concatenate([w.confidence for w in want]), rtol=1e-6)
    assert not np.allclose(f.confidence, s.confidence[:3 * n])


def test_measure_stacks_refusals(tmp_path):
    st = _curve_stack([_parabola(2.0)], [2])
    p = _save(tmp_path / "p.npz", st)
    with pytest.raises(BadInput, match="^no focal stacks to fit$"):
        measure_stacks([])
    other = _curve_stack([_parabola(2.0)], [2])
    other.sensor_hw = (64, 64)
    q = _save(tmp_path / "q.npz", other)
    with pytest.raises(BadInput, match=r"^the stacks come from sensors of different sizes \[\(64, 48\), \(64, 64\)\]: "
                                       "fit them separately$"):
        measure_stacks([p, q])
    other = _curve_stack([_parabola(2.0)], [2], {"lens_units": "dioptre"})
    q = _save(tmp_path / "u.npz", other)
    with pytest.raises(BadInput, match=r"^the stacks use different lens units \['dioptre', 'vcm_code'\]: "
                                       "fit them separately$"):
        measure_stacks([p, q])
    blind = _save(tmp_path / "blind.npz", _curve_stack([_parabola(2.0)], [-1]))
    with pytest.raises(BadInput, match=r"^none of the stacks has a RoI with a known in-focus position \(gt_index all -1\)$"):
        measure_stacks([blind])


def _vignetted_frame(d_px, lens_position, ff):
    """A shifted texture pair whose left view is divided by the flat field's left gain: applying the
    flat field gives back the exact pair."""
    fr = _textured_frame(d_px, lens_position)
    gl, gr = ff.gains((0, 0), SENSOR)
    fr.left = (fr.left / gl).astype(np.float32)
    fr.right = (fr.right / gr).astype(np.float32)
    return fr


def test_predict_patches_takes_the_flat_field_gains_at_each_roi_place():
    H, W = SENSOR
    ff = FlatField(gain_left=np.array([[0.6, 1.0, 1.4, 1.8], [1.2, 0.8, 0.7, 1.5]], np.float32),
                   gain_right=np.array([[1.0, 1.3, 0.9, 1.0], [0.8, 1.0, 1.2, 1.1]], np.float32),
                   knot_y=np.array([H / 4, 3 * H / 4]), knot_x=(np.arange(4) + 0.5) * W / 4, sensor_hw=SENSOR)
    cal = _cal_for_predictor([[-0.02] * 4] * 3, [[0.5] * 4] * 3)
    pr = PdafPredictor(cal, flatfield=ff, grow=1)
    fr = _vignetted_frame(2.5, 400.0, ff)
    rois = np.array([[20, 20, 64, 64], [200, 150, 64, 64], [130, 90, 64, 64]], np.int32)
    est = pr.predict(fr, rois)
    np.testing.assert_allclose(est.disparity_px, 2.5, atol=0.05)  # the flat field undoes the vignetting
    assert np.all((est.confidence > 0.5) & (est.confidence < 1))  # the texture term is < 1 on any texture
    L = np.stack([fr.left[y:y + h, x:x + w] for x, y, w, h in rois])
    R = np.stack([fr.right[y:y + h, x:x + w] for x, y, w, h in rois])
    cen = np.stack([2 * (rois[:, 0] + 32) / W - 1, 2 * (rois[:, 1] + 32) / H - 1], 1)
    est2 = pr.predict_patches(L, R, cen, [400.0] * 3, white_level=4000.0)
    np.testing.assert_allclose(est2.disparity_px, est.disparity_px, atol=1e-5)
    np.testing.assert_allclose(est2.confidence, est.confidence, atol=1e-5)
    np.testing.assert_allclose(est2.target_position, est.target_position, atol=1e-3)
    np.testing.assert_allclose(est2.defocus, (est2.disparity_px - 0.5) / -0.02)


def test_one_shot_errors_in_slices_from_each_start():
    """The calibration's offset is 2 px too high: every prediction lands 2 / 0.02 = 100 units (one
    slice of 100) before the truth, from every start; a RoI without truth is NaN."""
    lp = np.array([300.0, 400.0, 500.0])
    g, truth = -0.02, 400.0
    frames = [_textured_frame(g * (p - truth), p) for p in lp]
    rois = np.array([[40, 40, 64, 64], [180, 120, 64, 64]], np.int32)
    st = FocalStack(np.stack([f.left for f in frames]), np.stack([f.right for f in frames]), lp, rois,
                    np.array([1, -1], np.int16), SENSOR, (0, 0),
                    {"black_level": 0, "white_level": 4000, "gt_lens_positions": [truth, None]})
    pr = PdafPredictor(_cal_for_predictor([[g] * 4] * 3, [[2.0] * 4] * 3))
    e = one_shot_errors(pr, st)
    assert e.shape == (3, 2)
    np.testing.assert_allclose(e[:, 0], 1.0, atol=0.05)
    assert np.all(np.isnan(e[:, 1]))
    e2 = one_shot_errors(pr, st, start_slices=[2, 0])
    assert e2.shape == (2, 2)
    np.testing.assert_allclose(e2[:, 0], e[[2, 0], 0])


def _flat(tmp_path, name, left=500.0):
    from hil_af.calibration.flatfield import fit_flatfield
    from hil_af.frames import DualPixelFrame

    white = DualPixelFrame(left=np.full(SENSOR, left, np.float32), right=np.full(SENSOR, 400, np.float32),
                           white_level=4000.0)
    return fit_flatfield(white, grid=(3, 4)).save(tmp_path / name)


def test_from_file_flat_field_choice_and_warnings(tmp_path):
    """The flat field passed wins (with a warning when it is not the recorded one, or none is
    recorded); else the recorded one, found by its path or by its name beside CAL.json."""
    import warnings

    from hil_af.calibration.flatfield import file_sha256
    from hil_af.calibration.store import save_calibration

    rec, other = _flat(tmp_path, "rec.npz"), _flat(tmp_path, "other.npz", left=600.0)
    base = _cal_for_predictor([[-0.02] * 4] * 3, [[0.5] * 4] * 3)
    cp = save_calibration(tmp_path / "CAL.json", dict(base, flatfield={"path": "rec.npz", "sha256": file_sha256(rec)}))
    bare = save_calibration(tmp_path / "BARE.json", dict(base, flatfield=None))
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pr = PdafPredictor.from_file(cp, interpolation="nearest")   # relative path, beside CAL.json
        assert pr.flatfield is not None and pr.flatfield.path == rec and pr.name == str(cp)
        assert pr.interpolation == "nearest"
        assert PdafPredictor.from_file(cp, flatfield_path=rec).flatfield.path == rec
        assert PdafPredictor.from_file(bare).flatfield is None
    assert w == []
    with pytest.warns(UserWarning, match=rf"^{other} differs from the flat field {cp} was fitted with \(rec\.npz\)$"):
        assert PdafPredictor.from_file(cp, flatfield_path=other).flatfield.path == other
    with pytest.warns(UserWarning, match=rf"^{bare} was fitted without a flat field; applying {other} anyway$"):
        assert PdafPredictor.from_file(bare, flatfield_path=other).flatfield.path == other
    # an absolute recorded path that moved: its name beside CAL.json is taken
    sub = tmp_path / "sub"
    sub.mkdir()
    cp2 = save_calibration(sub / "CAL.json", dict(base, flatfield={"path": str(tmp_path / "gone" / "rec.npz"),
                                                                   "sha256": file_sha256(rec)}))
    (sub / "rec.npz").write_bytes(rec.read_bytes())
    assert PdafPredictor.from_file(cp2).flatfield.path == sub / "rec.npz"
    # a relative recorded path with a folder resolves beside CAL.json (not against the working directory)
    (sub / "ff").mkdir()
    (sub / "ff" / "rec.npz").write_bytes(rec.read_bytes())
    cp3 = save_calibration(sub / "CAL3.json", dict(base, flatfield={"path": "ff/rec.npz", "sha256": file_sha256(rec)}))
    assert PdafPredictor.from_file(cp3).flatfield.path == sub / "ff" / "rec.npz"
    # only files with other contents: named in the message
    (sub / "rec.npz").write_bytes(other.read_bytes())
    with pytest.raises(BadInput, match=rf"^{cp2} was fitted with the flat field {tmp_path / 'gone' / 'rec.npz'} "
                                       rf"\(sha256 {file_sha256(rec)[:12]}\.\.\.\), but {sub / 'rec.npz'} has other "
                                       r"contents: pass --flatfield FLAT\.npz$"):
        PdafPredictor.from_file(cp2)


def test_predict_refuses_another_sensor_and_an_unknown_lens_position():
    pr = PdafPredictor(_cal_for_predictor([[-0.02] * 4] * 3, [[0.5] * 4] * 3))
    fr = _textured_frame(1.0, 400.0)
    fr.sensor_hw = (240, 400)
    with pytest.raises(BadInput, match=r"^calibration is for a \(240, 320\) sensor, the frame's sensor_hw is \(240, 400\)$"):
        pr.predict(fr, np.array([[0, 0, 64, 64]]))
    with pytest.raises(BadInput, match="^the frame does not say its lens position: PDAF cannot give a target$"):
        pr.predict(_textured_frame(1.0, float("nan")), np.array([[0, 0, 64, 64]]))
    old = _cal_for_predictor([[-0.02] * 4] * 3, [[0.5] * 4] * 3)
    del old["estimator"]["refine"]  # a calibration written before refine was recorded: xcorr's default
    assert PdafPredictor(old).refine == "upsample"
    from hil_af.errors import FormatError

    with pytest.raises(FormatError, match=r"^rig-7\.json\b.*format"):  # an invalid object is refused under its name
        PdafPredictor(dict(pr.cal, format="nope"), name="rig-7.json")


@pytest.mark.parametrize("method, refine", [("zncc", "upsample"), ("xcorr", "parabola")])
def test_predictor_passes_its_method_and_the_white_level_to_the_estimator(method, refine):
    """A zncc calibration, or an xcorr one with parabola refinement, on a frame with saturated pixels:
    predict and predict_patches give the estimator's own disparity and confidence for that method,
    refinement and white level."""
    from hil_af.pdaf import estimate

    cal = _cal_for_predictor([[-0.02] * 4] * 3, [[0.5] * 4] * 3)
    cal["estimator"].update(method=method, refine=refine)
    pr = PdafPredictor(cal, grow=1)
    fr = _textured_frame(2.0, 400.0)
    fr.left[20:40, 20:60] = 4000.0
    fr.right[20:40, 20:60] = 4000.0
    rois = np.array([[20, 20, 64, 64], [200, 150, 64, 64]], np.int32)
    L = np.stack([fr.left[y:y + h, x:x + w] for x, y, w, h in rois])
    R = np.stack([fr.right[y:y + h, x:x + w] for x, y, w, h in rois])
    want = estimate(L, R, method=method, max_shift=12, refine=refine, white_level=4000.0)
    assert want.confidence[0] < want.confidence[1] - 0.1  # the saturated RoI is distrusted
    est = pr.predict(fr, rois)
    np.testing.assert_allclose(est.disparity_px, want.disparity_px, atol=1e-9)
    np.testing.assert_allclose(est.confidence, want.confidence, atol=1e-9)
    cen = np.stack([2 * (rois[:, 0] + 32) / SENSOR[1] - 1, 2 * (rois[:, 1] + 32) / SENSOR[0] - 1], 1)
    est2 = pr.predict_patches(L, R, cen, [400.0, 400.0], white_level=4000.0)
    np.testing.assert_allclose(est2.disparity_px, want.disparity_px, atol=1e-9)
    np.testing.assert_allclose(est2.confidence, want.confidence, atol=1e-9)


def test_coefficients_bilinear_between_cell_centres_held_at_the_edges_and_nearest():
    """3 x 4 grid on 240 x 320: centres at y 40, 120, 200 and x 40, 120, 200, 280; offsets
    10 r + c^2 (not linear in c), gains -0.01 (1 + c).  Values worked by hand."""
    gain = [[-0.01 * (1 + c) for c in range(4)] for _ in range(3)]
    off = [[10 * r + c * c for c in range(4)] for r in range(3)]
    pr = PdafPredictor(_cal_for_predictor(gain, off))
    cx = np.array([40, 80, 260, 0, 320, 100, 180])
    cy = np.array([40, 40, 200, 0, 240, 80, 150])
    g, o = pr.coefficients(cx, cy)
    np.testing.assert_allclose(o, [0, 0.5, 27.75, 0, 29, 5.75, 17.0], atol=1e-12)
    np.testing.assert_allclose(g, [-0.01, -0.015, -0.0375, -0.01, -0.04, -0.0175, -0.0275], atol=1e-12)
    g, o = PdafPredictor(_cal_for_predictor(gain, off), interpolation="nearest").coefficients(
        np.array([0, 319, 100, 79.9, 80]), np.array([0, 239, 170, 79.9, 80]))
    np.testing.assert_allclose(o, [0, 29, 21, 0, 11])
    np.testing.assert_allclose(g, [-0.01, -0.04, -0.02, -0.01, -0.02])
    # one cell (a global fit): the same everywhere; one row / one column: along the other axis only
    g, o = PdafPredictor(_cal_for_predictor([[-0.02]], [[0.5]])).coefficients(np.array([0, 160, 319]), np.array([5, 120, 239]))
    assert g.shape == o.shape == (3,)
    np.testing.assert_allclose(g, -0.02)
    np.testing.assert_allclose(o, 0.5)
    g, o = PdafPredictor(_cal_for_predictor([[-0.01, -0.03]], [[0.0, 2.0]])).coefficients(np.array([160, 0, 200]),
                                                                                          np.array([10, 239, 120]))
    np.testing.assert_allclose(o, [1.0, 0.0, 1.5])
    np.testing.assert_allclose(g, [-0.02, -0.01, -0.025])
    g, o = PdafPredictor(_cal_for_predictor([[-0.01], [-0.03]], [[0.0], [2.0]])).coefficients(np.array([300, 10, 5]),
                                                                                              np.array([120, 0, 150]))
    np.testing.assert_allclose(o, [1.0, 0.0, 1.5])
    np.testing.assert_allclose(g, [-0.02, -0.01, -0.025])


def test_predict_reads_the_coefficients_at_each_rois_centre_on_the_full_plane():
    gain = [[-0.01 * (1 + c) for c in range(4)] for _ in range(3)]
    off = [[10 * r + c * c for c in range(4)] for r in range(3)]
    pr = PdafPredictor(_cal_for_predictor(gain, off), grow=1)
    fr = _textured_frame(1.0, 400.0, origin=(30, 50), view_hw=(200, 260))
    rois = np.array([[10, 20, 64, 40], [150, 100, 48, 80]], np.int32)  # w != h
    est = pr.predict(fr, rois)
    g, o = pr.coefficients(np.array([50 + 10 + 32, 50 + 150 + 24]), np.array([30 + 20 + 20, 30 + 100 + 40]))
    np.testing.assert_allclose(est.defocus, (est.disparity_px - o) / g, rtol=1e-12)
    np.testing.assert_allclose(est.target_position, 400.0 - est.defocus, rtol=1e-12)


def _track_samples(tracks):
    """Samples from (cell, defocus list, gain, offset) tracks, one stack each: disparity = gain x defocus + offset."""
    from hil_af.calibration.fit import Samples

    st, x, d, cell = [], [], [], []
    for t, (c, xs, g, o) in enumerate(tracks):
        xs = np.asarray(xs, np.float64)
        st.append(np.full(xs.size, t))
        x.append(xs)
        d.append(g * xs + o)
        cell.append(np.full(xs.size, c))
    x_ = np.concatenate(x)
    N = x_.size
    s = Samples(stack=np.concatenate(st), roi=np.zeros(N, np.int64), cx=np.full(N, 100.0), cy=np.full(N, 100.0),
                lens_position=x_, defocus=x_, disparity=np.concatenate(d), confidence=np.ones(N), sensor_hw=SENSOR,
                slice_spacing=16.0, lens_units="vcm_code")
    return s, np.concatenate(cell)


def test_track_consensus_per_cell_with_the_size_and_spread_rules():
    """Slice spacing 16: a track is judged with >= 5 points spread over >= 2 spacings (32 units); only
    judged tracks that agree with the best-supported one are kept, per cell; a cell with fewer than 3
    judged tracks keeps everything."""
    from hil_af.calibration.fit import track_consensus

    five = [0.0, 8.0, 16.0, 24.0, 32.0]  # exactly 5 points spread over exactly 2 spacings: judged
    s, cell = _track_samples([
        (0, five, -0.015, 0.2), (0, five, -0.015, 0.25), (0, five, -0.015, 0.15),   # cell 0: the common line
        (0, five, -0.05, 2.0),                                                        # an outlier track
        (0, [0.0, 4.0, 8.0, 12.0, 16.0], -0.015, 0.2),   # on the line but spread 16 < 32: not judged, dropped
        (0, [10.0], -0.015, 0.2),                        # one point: not judged, dropped
        (1, five, -0.03, 1.0), (1, five, -0.03, 1.1), (1, five, -0.03, 0.9), (1, five, -0.03, 1.05),  # cell 1: its own line
        (2, five, -0.015, 0.2), (2, five, -0.05, 2.0),   # cell 2: two judged tracks: all kept
    ])
    keep = track_consensus(s, np.ones(s.defocus.size, bool), cell)
    assert sorted(set(s.stack[keep].tolist())) == [0, 1, 2, 6, 7, 8, 9, 10, 11]
    kept_part = np.ones(s.defocus.size, bool)
    kept_part[s.stack == 1] = False  # points outside ``use`` are never kept
    keep = track_consensus(s, kept_part, cell)
    assert sorted(set(s.stack[keep].tolist())) == [0, 2, 6, 7, 8, 9, 10, 11]
