"""Robust per-block DCC fits, CAL.json store/validation and the PdafPredictor (synthetic data)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hil_af.calibration.fit import Samples, cell_index, fit_calibration, robust_line
from hil_af.calibration.predict import PdafPredictor
from hil_af.calibration.store import load_calibration, save_calibration
from hil_af.errors import BadInput, FormatError
from hil_af.frames import DualPixelFrame

SENSOR = (240, 320)


def true_gain_offset(cx, cy):
    u = 2 * np.asarray(cx) / SENSOR[1] - 1
    v = 2 * np.asarray(cy) / SENSOR[0] - 1
    return -0.015 * (1 + 0.2 * u - 0.1 * v * v), 0.4 * u + 0.2 * v


def synthetic_samples(seed=0, outliers=0.15, skip_cells=(), n_per_roi=40, n_rois=150):
    """Measurements of RoIs at random places: d = g(x, y) * defocus + o(x, y) + noise, plus
    outlier lines (RoIs straddling another depth) and low-confidence junk."""
    rng = np.random.default_rng(seed)
    H, W = SENSOR
    rows = {k: [] for k in ("stack", "roi", "cx", "cy", "lp", "x", "d", "c")}
    for r in range(n_rois):
        cx, cy = rng.uniform(8, W - 8), rng.uniform(8, H - 8)
        rr, cc = cell_index(np.array([cx]), np.array([cy]), SENSOR, (3, 4))
        if (int(rr[0]), int(cc[0])) in skip_cells:
            continue
        g, o = true_gain_offset(cx, cy)
        x = rng.uniform(-300, 300, n_per_roi)
        d = g * x + o + rng.normal(0, 0.04, n_per_roi)
        conf = rng.uniform(0.5, 1.0, n_per_roi)
        if rng.random() < outliers:  # this RoI's texture sits at another depth: a parallel line
            d = g * (x + rng.choice([-200, 200])) + o
        junk = rng.random(n_per_roi) < 0.1
        d[junk] = rng.uniform(-8, 8, junk.sum())
        conf[junk] = rng.uniform(0, 0.1, junk.sum())
        for k, v in (("stack", np.zeros(n_per_roi)), ("roi", np.full(n_per_roi, r)), ("cx", np.full(n_per_roi, cx)),
                     ("cy", np.full(n_per_roi, cy)), ("lp", x + 500), ("x", x), ("d", d), ("c", conf)):
            rows[k].append(v)
    a = {k: np.concatenate(v) for k, v in rows.items()}
    return Samples(stack=a["stack"].astype(int), roi=a["roi"].astype(int), cx=a["cx"], cy=a["cy"], lens_position=a["lp"],
                   defocus=a["x"], disparity=a["d"], confidence=a["c"], sensor_hw=SENSOR, slice_spacing=16.0,
                   lens_units="vcm_code", files=["a.npz"])


def test_robust_line_ignores_a_third_of_outliers():
    rng = np.random.default_rng(1)
    x = rng.uniform(-300, 300, 600)
    y = -0.02 * x + 0.3 + rng.normal(0, 0.05, 600)
    bad = rng.random(600) < 0.33
    y[bad] = rng.uniform(-10, 10, bad.sum())
    f = robust_line(x, y)
    assert f["gain_px_per_unit"] == pytest.approx(-0.02, rel=0.02)
    assert f["offset_px"] == pytest.approx(0.3, abs=0.03)
    assert f["residual_rms_px"] < 0.1 and f["r2"] > 0.95
    assert 0.6 < f["inlier_fraction"] < 0.75
    plain = np.polyfit(x, y, 1)
    assert abs(plain[0] + 0.02) > 0.002  # least squares is wrecked, the robust fit is not
    assert robust_line(np.ones(10), np.arange(10.0)) is None
    assert robust_line(np.array([1.0, 2.0]), np.array([1.0, 2.0])) is None


def test_per_cell_fits_recover_the_field_dependent_gain_and_offset():
    s = synthetic_samples()
    cal = fit_calibration(s, (3, 4), max_shift=12, disparity_limit=10)
    assert cal["kind"] == "per-position" and cal["grid"] == [3, 4] and len(cal["cells"]) == 12
    for c in cal["cells"]:
        cx, cy = (c["x0"] + c["x1"]) / 2, (c["y0"] + c["y1"]) / 2
        g, o = true_gain_offset(cx, cy)
        assert c["gain_px_per_unit"] == pytest.approx(g, rel=0.12), c
        assert c["offset_px"] == pytest.approx(o, abs=0.12), c
        assert c["dcc_units_per_px"] == pytest.approx(1 / c["gain_px_per_unit"], rel=1e-4)
        assert c["gain_px_per_slice"] == pytest.approx(16 * c["gain_px_per_unit"], rel=1e-4)
        assert c["n_points"] >= 20 and c["r2"] > 0.9 and not c["borrowed"]
    offs = np.array([c["offset_px"] for c in cal["cells"]]).reshape(3, 4)
    assert offs[:, -1].mean() - offs[:, 0].mean() > 0.4  # the offset grows to the right, as simulated
    g = fit_calibration(s, global_fit=True, max_shift=12, disparity_limit=10)
    assert g["kind"] == "global" and g["grid"] == [1, 1] and len(g["cells"]) == 1
    assert g["cells"][0]["gain_px_per_unit"] == pytest.approx(g["global_fit"]["gain_px_per_unit"])


def test_cells_without_data_borrow_from_neighbours_and_say_so():
    s = synthetic_samples(skip_cells={(0, 0), (1, 2)})
    cal = fit_calibration(s, (3, 4), max_shift=12, disparity_limit=10)
    by = {(c["row"], c["col"]): c for c in cal["cells"]}
    assert by[(0, 0)]["borrowed"] and by[(1, 2)]["borrowed"]
    assert sorted(map(tuple, by[(0, 0)]["borrowed_from"])) == [(0, 1), (1, 0)]
    assert by[(0, 0)]["n_points"] == 0
    expect = np.mean([by[(0, 1)]["offset_px"], by[(1, 0)]["offset_px"]])
    assert by[(0, 0)]["offset_px"] == pytest.approx(expect, abs=1e-4)
    assert sum(c["borrowed"] for c in cal["cells"]) == 2


def test_disparity_limit_and_confidence_floor_select_the_points():
    s = synthetic_samples()
    narrow = fit_calibration(s, (3, 4), max_shift=12, disparity_limit=1.5)
    wide = fit_calibration(s, (3, 4), max_shift=12, disparity_limit=10)
    assert narrow["stacks"]["used"] < wide["stacks"]["used"]
    with pytest.raises(BadInput, match="measurements"):
        fit_calibration(s, (3, 4), min_confidence=1.01)


def test_calibration_round_trip_and_readable_json(tmp_path):
    cal = fit_calibration(synthetic_samples(), (3, 4), max_shift=12)
    p = save_calibration(tmp_path / "CAL.json", cal)
    text = p.read_text()
    assert text.count("\n") > 100  # indented, one key per line
    back = load_calibration(p)
    assert back["cells"] == json.loads(json.dumps(cal["cells"]))
    assert back["format"] == "hil-af-calibration" and back["version"] == 1
    assert len(back["samples"]["defocus"]) == len(back["samples"]["cell"]) > 0


def _damage(cal, how):
    c = json.loads(json.dumps(cal))
    if how == "version":
        c["version"] = 2
    elif how == "format":
        c["format"] = "something-else"
    elif how == "missing":
        del c["cells"]
    elif how == "count":
        c["cells"] = c["cells"][:-1]
    elif how == "nan":
        c["cells"][3]["offset_px"] = float("nan")
    elif how == "zero":
        c["cells"][0]["gain_px_per_unit"] = 0.0
    elif how == "order":
        c["cells"][0], c["cells"][1] = c["cells"][1], c["cells"][0]
    elif how == "method":
        c["estimator"]["method"] = "magic"
    elif how == "grid":
        c["grid"] = [3, "4"]
    return c


@pytest.mark.parametrize("how, message", [
    ("version", "unknown version"), ("format", "expected 'hil-af-calibration'"), ("missing", "missing key 'cells'"),
    ("count", "cells must be a list of 3x4"), ("nan", "cells[3].offset_px must be a finite number"),
    ("zero", "gain_px_per_unit is 0"), ("order", "row-major"), ("method", "estimator.method"), ("grid", "grid must be"),
])
def test_invalid_calibrations_name_the_file_and_the_problem(tmp_path, how, message):
    cal = fit_calibration(synthetic_samples(), (3, 4), max_shift=12)
    p = tmp_path / f"CAL_{how}.json"
    p.write_text(json.dumps(_damage(cal, how)).replace("NaN", "NaN"))
    with pytest.raises(FormatError) as e:
        load_calibration(p)
    assert str(p) in str(e.value) and message in str(e.value)


def test_truncated_or_missing_calibration_files(tmp_path):
    cal = fit_calibration(synthetic_samples(), (3, 4), max_shift=12)
    p = save_calibration(tmp_path / "CAL.json", cal)
    data = p.read_text()
    t = tmp_path / "truncated.json"
    t.write_text(data[: len(data) // 3])
    with pytest.raises(FormatError, match="truncated.json: not a valid calibration file: not JSON"):
        load_calibration(t)
    with pytest.raises(FormatError, match="truncated.json"):
        PdafPredictor.from_file(t)
    with pytest.raises(BadInput, match="no such calibration file"):
        load_calibration(tmp_path / "nope.json")
    b = tmp_path / "binary.json"
    b.write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(FormatError, match="binary.json"):
        load_calibration(b)


def _cal_for_predictor(gain_grid, offset_grid, kind="per-position"):
    cal = fit_calibration(synthetic_samples(), (3, 4), max_shift=12)
    R, C = np.shape(gain_grid)
    cal["grid"] = [R, C]
    cal["kind"] = kind
    cal["disparity_limit_px"] = 4.0
    base = cal["cells"][0]
    cal["cells"] = [dict(base, row=r, col=c, gain_px_per_unit=float(gain_grid[r][c]), offset_px=float(offset_grid[r][c]))
                    for r in range(R) for c in range(C)]
    return cal


def test_predictor_coefficients_bilinear_and_nearest():
    cal = _cal_for_predictor([[-0.01, -0.02], [-0.01, -0.02]], [[0.0, 1.0], [0.0, 1.0]])
    bil = PdafPredictor(cal)
    near = PdafPredictor(cal, interpolation="nearest")
    H, W = SENSOR
    xs = np.array([0.0, W / 4, W / 2, 3 * W / 4, W])  # cell centres at W/4 and 3W/4
    g, o = bil.coefficients(xs, np.full(5, H / 2))
    np.testing.assert_allclose(o, [0, 0, 0.5, 1, 1])
    np.testing.assert_allclose(g, [-0.01, -0.01, -0.015, -0.02, -0.02])
    g, o = near.coefficients(xs[[1, 3]], np.full(2, H / 2))
    np.testing.assert_allclose(o, [0, 1])
    with pytest.raises(BadInput, match="interpolation"):
        PdafPredictor(cal, interpolation="cubic")


def _textured_frame(d_px, lens_position, seed=0, origin=(0, 0), view_hw=SENSOR):
    rng = np.random.default_rng(seed)
    H, W = view_hw
    a = rng.standard_normal((H, W + 64))
    f = np.fft.rfftfreq(W + 64)
    fy = np.fft.fftfreq(H)
    G = np.exp(-2 * (np.pi * 1.5) ** 2 * (f[None, :] ** 2 + fy[:, None] ** 2))
    img = np.fft.irfft2(np.fft.rfft2(a) * G, s=(H, W + 64))
    img = 300 + 60 * img / img.std()
    sh = np.fft.irfft(np.fft.rfft(img, axis=1) * np.exp(-2j * np.pi * f * d_px), n=W + 64, axis=1)
    return DualPixelFrame(left=img[:, 32:32 + W].astype(np.float32), right=sh[:, 32:32 + W].astype(np.float32),
                          lens_position=lens_position, sensor_hw=SENSOR, origin=origin, white_level=4000.0)


def test_predict_gives_the_target_from_the_disparity_and_predict_patches_agrees():
    cal = _cal_for_predictor([[-0.02] * 4] * 3, [[0.5] * 4] * 3)
    pr = PdafPredictor(cal)
    fr = _textured_frame(2.5, lens_position=400.0)  # d = -0.02 * defocus + 0.5 -> defocus = -100
    rois = np.array([[20, 20, 64, 64], [200, 150, 64, 64]], np.int32)
    est = pr.predict(fr, rois)
    np.testing.assert_allclose(est.disparity_px, 2.5, atol=0.05)
    np.testing.assert_allclose(est.defocus, -100, atol=3)
    np.testing.assert_allclose(est.target_position, 500, atol=3)
    assert np.all(est.confidence > 0.8)
    # the batch form, with RoI centres in the RoI-PE convention
    L = np.stack([fr.left[y:y + h, x:x + w] for x, y, w, h in rois])
    R = np.stack([fr.right[y:y + h, x:x + w] for x, y, w, h in rois])
    cen = np.stack([2 * (rois[:, 0] + 32) / SENSOR[1] - 1, 2 * (rois[:, 1] + 32) / SENSOR[0] - 1], 1)
    est2 = pr.predict_patches(L, R, cen, [400.0, 400.0], white_level=4000.0)
    np.testing.assert_allclose(est2.target_position, est.target_position, atol=1e-6)
    assert np.all(est.in_range)
    # outside the fitted disparity range the linear model is extrapolated and flagged
    far = pr.predict(_textured_frame(8.0, lens_position=400.0), rois)
    assert not np.any(far.in_range) and np.all(far.confidence > 0.5)
    np.testing.assert_allclose(far.target_position, 400 + 375, atol=4)
    with pytest.raises(BadInput, match="lens position"):
        pr.predict(_textured_frame(1.0, lens_position=float("nan")), rois)


def test_predict_uses_the_roi_place_on_the_full_sensor():
    """A cropped frame: the RoI's cell comes from origin + RoI, not from the view coordinates."""
    cal = _cal_for_predictor([[-0.02, -0.02]], [[0.0, 1.0]])
    pr = PdafPredictor(cal, interpolation="nearest")
    crop = _textured_frame(1.0, 300.0, origin=(100, 200), view_hw=(100, 100))
    est = pr.predict(crop, np.array([[10, 10, 64, 64]]))  # centre x = 200 + 42 -> right cell (offset 1)
    assert est.defocus[0] == pytest.approx(0.0, abs=3)


def test_recorded_flatfield_is_used_or_its_absence_reported(tmp_path):
    from hil_af.calibration.flatfield import file_sha256, fit_flatfield

    white = DualPixelFrame(left=np.full(SENSOR, 500, np.float32), right=np.full(SENSOR, 400, np.float32), white_level=4000.0)
    ffp = fit_flatfield(white, grid=(3, 4)).save(tmp_path / "FLAT.npz")
    cal = fit_calibration(synthetic_samples(), (3, 4), max_shift=12,
                          flatfield={"path": str(ffp), "sha256": file_sha256(ffp)})
    cp = save_calibration(tmp_path / "CAL.json", cal)
    pr = PdafPredictor.from_file(cp)
    assert pr.flatfield is not None and pr.flatfield.path == ffp
    ffp.rename(tmp_path / "elsewhere.npz")
    with pytest.raises(BadInput, match="--flatfield"):
        PdafPredictor.from_file(cp)
    assert PdafPredictor.from_file(cp, flatfield_path=tmp_path / "elsewhere.npz").flatfield is not None


def test_whole_track_outliers_are_dropped_by_track_consensus():
    """40 % of the RoI tracks follow lines of their own (RoIs straddling two depths): the
    consensus keeps exactly the tracks on the common line."""
    from hil_af.calibration.fit import track_consensus

    rng = np.random.default_rng(3)
    rows = {k: [] for k in ("stack", "roi", "x", "d")}
    for t in range(10):
        x = np.linspace(-250, 250, 30)
        if t < 4:
            d = -0.005 * x + rng.uniform(-1.5, 1.5)  # a flat, shifted line of its own
        else:
            d = -0.015 * x + 0.2 + rng.normal(0, 0.03, x.size)
        rows["stack"].append(np.full(x.size, t))
        rows["roi"].append(np.zeros(x.size))
        rows["x"].append(x)
        rows["d"].append(d)
    a = {k: np.concatenate(v) for k, v in rows.items()}
    N = a["x"].size
    s = Samples(stack=a["stack"].astype(int), roi=a["roi"].astype(int), cx=np.full(N, 100.0), cy=np.full(N, 100.0),
                lens_position=a["x"], defocus=a["x"], disparity=a["d"], confidence=np.ones(N), sensor_hw=SENSOR,
                slice_spacing=16.0, lens_units="vcm_code")
    keep = track_consensus(s, np.ones(N, bool), np.zeros(N, int))
    assert set(np.unique(s.stack[keep])) == set(range(4, 10))
    cal = fit_calibration(s, (1, 1), max_shift=12, disparity_limit=10)
    assert cal["cells"][0]["gain_px_per_unit"] == pytest.approx(-0.015, rel=0.02)
    assert cal["cells"][0]["offset_px"] == pytest.approx(0.2, abs=0.03)


def test_far_from_focus_a_wider_second_look_measures_beyond_the_roi_search_range():
    """A 20 px disparity does not fit a 64-px RoI's +-12 px search; the predictor's wider window does."""
    cal = _cal_for_predictor([[-0.02] * 4] * 3, [[0.0] * 4] * 3)
    cal["estimator"]["max_shift_px"] = 12.0
    fr = _textured_frame(20.0, lens_position=600.0)
    rois = np.array([[120, 80, 64, 64]], np.int32)
    narrow = PdafPredictor(cal, grow=1).predict(fr, rois)
    wide = PdafPredictor(cal).predict(fr, rois)
    assert abs(narrow.disparity_px[0] - 20) > 5
    assert wide.disparity_px[0] == pytest.approx(20.0, abs=0.3)
    assert wide.target_position[0] == pytest.approx(600 + 1000, abs=20)
    assert not wide.in_range[0]
    # near focus the RoI alone is used: same answer with or without the second look
    near = _textured_frame(1.0, lens_position=600.0)
    assert PdafPredictor(cal).predict(near, rois).disparity_px[0] == pytest.approx(
        PdafPredictor(cal, grow=1).predict(near, rois).disparity_px[0])
