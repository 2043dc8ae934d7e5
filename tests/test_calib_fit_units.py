"""fit_calibration on hand-made samples that lie exactly on known lines: every key of the CAL.json
object, the point selection (confidence floor, disparity limit, unknown defocus), the per-cell
rules (enough points, enough spread, the global fit's sign, inliers) and borrowing, all worked out
by hand from the rules in hil_af/calibration/fit.py (seconds)."""

from __future__ import annotations

import re

import numpy as np
import pytest

from hil_af.calibration.fit import Samples, fit_calibration
from hil_af.calibration.store import MODEL_TEXT
from hil_af.errors import BadInput

SENSOR = (240, 320)
A = (-0.02, 0.5)  # gain px/unit, offset px
B = (-0.01, -0.3)


def _samples(parts, spacing=10.0, sensor=SENSOR):
    """Samples from (cx, defocus list, disparity list or (g, o), confidence[, cy]) parts; each part is
    one track (its own RoI number, stack 0) at (cx, cy) px, cy 120 unless given."""
    cols = {k: [] for k in ("roi", "cx", "cy", "x", "d", "c")}
    for r, (cx, xs, d, c, *cy) in enumerate(parts):
        xs = np.asarray(xs, np.float64)
        d = d[0] * xs + d[1] if isinstance(d, tuple) else np.asarray(d, np.float64)
        for k, v in (("roi", np.full(xs.size, r)), ("cx", np.full(xs.size, float(cx))), ("x", xs), ("d", d),
                     ("cy", np.full(xs.size, float(cy[0] if cy else 120.0))), ("c", np.full(xs.size, float(c)))):
            cols[k].append(v)
    a = {k: np.concatenate(v) for k, v in cols.items()}
    N = a["x"].size
    return Samples(stack=np.zeros(N, np.int64), roi=a["roi"].astype(np.int64), cx=a["cx"], cy=a["cy"],
                   lens_position=a["x"] + 500, defocus=a["x"], disparity=a["d"], confidence=a["c"], sensor_hw=sensor,
                   slice_spacing=spacing, lens_units="vcm_code", files=["/data/sweeps/a.npz", "/data/sweeps/b.npz"])


X1 = np.linspace(-60, 60, 13)  # 13 points over 120 units (12 slices of 10)
X2 = np.linspace(-55.12345, 64.87655, 13)  # 5 decimals: the plot subsample's rounding shows


def _three_cell_samples():
    """1 x 3 grid (cells 106.67 px wide): lines A in cell 0 and B in cell 2 (two tracks each, 26 points);
    cell 1 only low-confidence junk; one point beyond the 2.04 px limit (cell 0), one of unknown defocus (cell 2)."""
    return _samples([(50, X1, A, 0.9), (60, X2, A, 0.61234),
                     (50, [10.0], [3.0], 1.0),                          # |d| 3 > 2.04 px: not used
                     (160, np.arange(10.0), 0.03 * np.arange(10.0), 0.1),  # confidence 0.1 < 0.2: not used
                     (160, [5.0], [2.04], 0.2),                         # exactly at the floor and the limit: used
                     (170, [5.0], [2.1], 0.2),                          # at the floor, beyond the limit: not used
                     (270, X1, B, 0.8), (260, X2, B, 0.7),
                     (270, [np.nan], [0.0], 1.0)])                      # unknown defocus: not used


def test_fit_calibration_writes_every_key_from_exact_lines():
    s = _three_cell_samples()
    ff = {"path": "flat.npz", "sha256": "ab" * 32}
    cal = fit_calibration(s, (1, 3), method="zncc", refine="parabola", flatfield=ff, stacks_dir="sweeps")
    assert cal["format"] == "hil-af-calibration" and cal["version"] == 1 and cal["kind"] == "per-position"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", cal["created_utc"])
    assert cal["lens_units"] == "vcm_code" and cal["sensor_hw"] == [240, 320] and cal["grid"] == [1, 3]
    assert cal["model"] == MODEL_TEXT
    assert cal["estimator"] == {"method": "zncc", "max_shift_px": 12.0, "refine": "parabola", "min_confidence": 0.2}
    assert cal["slice_spacing"] == 10.0 and cal["disparity_limit_px"] == 2.04  # 0.17 x 12
    assert cal["flatfield"] == ff
    assert cal["stacks"] == {"dir": "sweeps", "count": 2, "files": ["a.npz", "b.npz"], "measurements": 66, "used": 53}
    c0, c1, c2 = cal["cells"]
    bounds = [(0.0, 106.667), (106.667, 213.333), (213.333, 320.0)]
    for i, (c, (x0, x1)) in enumerate(zip(cal["cells"], bounds)):
        assert (c["row"], c["col"], c["y0"], c["y1"], c["x0"], c["x1"]) == (0, i, 0.0, 240.0, x0, x1)
    for c, (g, o) in ((c0, A), (c2, B)):
        assert (c["gain_px_per_unit"], c["offset_px"]) == (g, o)
        assert c["dcc_units_per_px"] == 1 / g and c["gain_px_per_slice"] == pytest.approx(10 * g, abs=1e-12)
        assert c["residual_rms_px"] == pytest.approx(0, abs=1e-9) and c["r2"] == 1.0
        assert (c["n_points"], c["n_total"], c["inlier_fraction"]) == (26, 26, 1.0)
        assert not c["borrowed"] and c["borrowed_from"] == []
    # cell 1 has one usable point (< 20): the mean of its two nearest cells (both one cell away)
    assert c1["borrowed"] and c1["borrowed_from"] == [[0, 0], [0, 2]] and c1["n_points"] == 0
    assert c1["gain_px_per_unit"] == -0.015 and c1["offset_px"] == pytest.approx(0.1, abs=1e-12)
    assert c1["dcc_units_per_px"] == -66.6667 and c1["gain_px_per_slice"] == pytest.approx(-0.15, abs=1e-12)
    assert "n_total" not in c1 and c1["r2"] == 1.0
    assert cal["global_fit"]["gain_px_per_unit"] < 0 and cal["global_fit"]["n_total"] == 53
    # every point is in the plot subsample (fewer than 150 per cell), cell by cell, rounded
    order = np.concatenate([np.flatnonzero(s.cx < 106.667), np.flatnonzero((s.cx > 106.667) & (s.cx < 213.333)),
                            np.flatnonzero(s.cx > 213.333)])
    sm = cal["samples"]
    assert sm["cell"] == [0] * 27 + [1] * 12 + [2] * 27
    np.testing.assert_array_equal(sm["defocus"], np.round(s.defocus[order], 3))
    np.testing.assert_array_equal(sm["disparity_px"], np.round(s.disparity[order], 4))
    np.testing.assert_array_equal(sm["confidence"], np.round(s.confidence[order], 3))


def test_fit_calibration_controller_block_is_read_from_the_fitted_cells():
    """predicted defocus (d - o) / g with each point's cell; ``near``: used or below the confidence
    floor, known defocus, |g x defocus| <= 2.04 px."""
    from hil_af.calibration.thresholds import controller_thresholds

    s = _three_cell_samples()
    cal = fit_calibration(s, (1, 3))
    assert cal["stacks"]["used"] == 53
    col = np.floor(s.cx / (320 / 3)).astype(int)
    g = np.array([-0.02, -0.015, -0.01])[col]
    o = np.array([0.5, 0.1, -0.3])[col]
    rows = (s.confidence < 0.2) | ((np.abs(s.disparity) <= 2.04) & np.isfinite(s.defocus))
    near = rows & np.isfinite(s.defocus) & (np.abs(g * s.defocus) <= 2.04)
    assert near.sum() == 53 + 10  # every used point and the junk (|g x defocus| <= 1.3 px on A and B, 0.135 on the junk)
    assert cal["controller"] == controller_thresholds(s.defocus, (s.disparity - o) / g, s.confidence, near, 10.0)


def test_fit_calibration_cell_rules():
    """1 x 5 grid (64 px cells).  Col 0: line A.  Col 1: a rising line (the global fit falls): refused.
    Col 2: spread 30 < 4 spacings: refused.  Col 3: spread exactly 40: fitted.  Col 4: 20 points, 2 of
    them 1 px off the line, so 18 inliers < 20: refused.  Refused cells borrow from the nearest fitted ones."""
    x40 = np.linspace(0, 40, 13)
    x30 = np.linspace(0, 30, 13)
    x18 = np.linspace(-60, 60, 18)
    d4 = np.concatenate([A[0] * x18 + A[1], A[0] * np.array([-20.0, 0.0]) + A[1] + 1.0])
    s = _samples([(30, X1, A, 0.9), (40, X2, A, 0.9), (100, X1, (0.02, 0.0), 0.9), (110, X2, (0.02, 0.0), 0.9),
                  (150, x30, A, 0.9), (160, x30, A, 0.9), (220, x40, A, 0.9), (230, x40, A, 0.9),
                  (290, np.concatenate([x18, [-20.0, 0.0]]), d4, 0.9)])
    cal = fit_calibration(s, (1, 5))
    assert cal["global_fit"]["gain_px_per_unit"] < 0
    cells = cal["cells"]
    assert [c["borrowed"] for c in cells] == [False, True, True, False, True]
    assert [c["borrowed_from"] for c in cells] == [[], [[0, 0]], [[0, 3]], [], [[0, 3]]]
    assert [c["n_points"] for c in cells] == [26, 0, 0, 26, 0]
    assert all((c["gain_px_per_unit"], c["offset_px"]) == A for c in cells)
    # with min_points 18, col 4's 18 inliers are enough; a global fit is the one line
    cal = fit_calibration(s, (1, 5), min_points=18)
    assert [c["borrowed"] for c in cal["cells"]] == [False, True, True, False, False]
    assert cal["cells"][4]["n_points"] == 18 and cal["cells"][4]["n_total"] == 20


def test_fit_calibration_global_kind_and_refusals():
    s = _samples([(50, X1, A, 0.9), (60, X2, A, 0.6), (270, X1, A, 0.8)])
    g = fit_calibration(s, (3, 4), global_fit=True, max_shift=20, disparity_limit=1.05)
    assert g["kind"] == "global" and g["grid"] == [1, 1] and len(g["cells"]) == 1
    assert g["disparity_limit_px"] == 1.05 and g["estimator"]["max_shift_px"] == 20.0
    c = g["cells"][0]
    assert (c["gain_px_per_unit"], c["offset_px"], c["x1"], c["y1"]) == (A[0], A[1], 320.0, 240.0)
    assert c["n_points"] == g["stacks"]["used"] == 28  # |d| <= 1.05 on line A: defocus >= -27.5 (9 of X1, 10 of X2, 9)
    with pytest.raises(BadInput, match=r"^grid must be at least 1x1, got \(0, 2\)$"):
        fit_calibration(s, (0, 2))
    with pytest.raises(BadInput, match=r"^only 2 measurements with confidence >= 0\.95 and \|disparity\| <= 2\.04 px: "
                                       r"the stacks lack texture or in-focus labels$"):
        fit_calibration(_samples([(50, [0.0, 10.0], A, 1.0), (50, [20.0], A, 0.9)]), (1, 1), min_confidence=0.95)
    flat = _samples([(50, X1, (0.0, 0.3), 0.9), (60, X2, (0.0, 0.3), 0.9)])
    with pytest.raises(BadInput, match="^the disparity does not change with defocus in these stacks: cannot calibrate$"):
        fit_calibration(flat, (1, 1))
    with pytest.raises(BadInput, match=r"^no cell of the 1x3 grid has 30 usable measurements: use a coarser --grid "
                                       "or more stacks$"):
        fit_calibration(s, (1, 3), min_points=30)


def test_fit_calibration_borrows_by_distance_on_the_grid_and_rounds_the_bounds():
    """A 250 x 320 sensor in 3 x 3 cells (83.333 px tall): data in cells (0, 0) and (2, 2) only.
    Each other cell borrows from the nearest of them by Euclidean distance in cells, both on a tie."""
    s = _samples([(50, X1, A, 0.9, 40), (60, X2, A, 0.9, 30), (270, X1, B, 0.9, 220), (280, X2, B, 0.9, 200)],
                 sensor=(250, 320))
    cal = fit_calibration(s, (3, 3))
    by = {(c["row"], c["col"]): c for c in cal["cells"]}
    assert [(by[(r, 0)]["y0"], by[(r, 0)]["y1"]) for r in range(3)] == [(0.0, 83.333), (83.333, 166.667), (166.667, 250.0)]
    assert [by[(0, c)]["x1"] for c in range(3)] == [106.667, 213.333, 320.0]
    a, b = [0, 0], [2, 2]
    assert {k: c["borrowed_from"] for k, c in by.items()} == {
        (0, 0): [], (0, 1): [a], (0, 2): [a, b], (1, 0): [a], (1, 1): [a, b], (1, 2): [b], (2, 0): [a, b],
        (2, 1): [b], (2, 2): []}
    assert (by[(0, 1)]["gain_px_per_unit"], by[(1, 2)]["gain_px_per_unit"]) == (A[0], B[0])
    assert by[(1, 1)]["gain_px_per_unit"] == -0.015
    assert cal["samples"]["cell"] == [0] * 26 + [8] * 26  # cell id row * 3 + col


def test_fit_calibration_plot_subsample_is_150_distinct_points_per_cell_drawn_by_the_seed():
    x = np.linspace(-60, 60, 100)
    s = _samples([(50, x, A, 0.9), (60, x + 0.5, A, 0.9), (270, X1, B, 0.8)])  # 200 points in cell 0, 13 in cell 3
    cal = fit_calibration(s, (1, 4))
    cells = np.array(cal["samples"]["cell"])
    assert (cells == 0).sum() == 150 and (cells == 3).sum() == 13
    picked = np.array(cal["samples"]["defocus"])[cells == 0]
    assert len(set(picked.tolist())) == 150  # distinct points (x and x + 0.5 never coincide)
    assert set(picked.tolist()) <= set(np.round(np.concatenate([x, x + 0.5]), 3).tolist())
    again = fit_calibration(s, (1, 4), seed=0)
    other = fit_calibration(s, (1, 4), seed=1)
    assert again["samples"] == cal["samples"] and other["samples"] != cal["samples"]


def test_fit_calibration_judges_tracks_per_fit_cell_or_per_3x4_cell_for_a_global_fit():
    """Two tracks on line A' = (-0.02, 1.5) beside three on A, in four places: (70, 70) A, (90, 70) A',
    (200, 70) A and (200, 90) A'.  On the 3 x 4 grid each place is its own cell (80 px wide, 80 tall),
    so every track is kept; as one cell (a 1 x 1 per-position fit) A' is outvoted (6 tracks to 4)."""
    A2 = (-0.02, 1.5)
    s = _samples([(70, X1, A, 0.9, 70)] * 3 + [(90, X1, A2, 0.9, 70)] * 2 + [(200, X1, A, 0.9, 70)] * 3
                 + [(200, X1, A2, 0.9, 90)] * 2)
    assert fit_calibration(s, (1, 1), global_fit=True, disparity_limit=10.0)["stacks"]["used"] == 10 * 13
    assert fit_calibration(s, (1, 1), disparity_limit=10.0)["stacks"]["used"] == 6 * 13


def test_fit_calibration_cell_ids_of_the_consensus_are_distinct():
    """3 x 2 grid: lines A, A' and A'' = (-0.02, -1.0) in cells (0, 1), (1, 0), (2, 0), two tracks
    each: no cell has 3 judged tracks, so all 78 points are used."""
    s = _samples([(240, X1, A, 0.9, 40)] * 2 + [(80, X1, (-0.02, 1.5), 0.9, 120)] * 2
                 + [(80, X1, (-0.02, -1.0), 0.9, 200)] * 2)
    cal = fit_calibration(s, (3, 2), disparity_limit=10.0, min_points=20)
    assert cal["stacks"]["used"] == 78


def test_fit_calibration_weighs_points_by_confidence_and_defaults():
    """Two parallel tracks, offsets 0.5 (confidence 1) and 0.52 (0.25): the fit's offset is their
    confidence-weighted mean, (0.5 + 0.25 x 0.52) / 1.25 = 0.504 (the biweight moves it < 0.001)."""
    s = _samples([(50, X1, A, 1.0), (60, X1, (A[0], 0.52), 0.25)])
    cal = fit_calibration(s, (1, 1), max_shift=12.3456)
    assert cal["cells"][0]["offset_px"] == pytest.approx(0.504, abs=0.001)
    assert cal["global_fit"]["offset_px"] == pytest.approx(0.504, abs=0.001)
    assert cal["disparity_limit_px"] == 2.0988  # 0.17 x 12.3456 = 2.098752, to 4 decimals
    assert cal["estimator"] == {"method": "xcorr", "max_shift_px": 12.3456, "refine": "upsample", "min_confidence": 0.2}


def test_fit_calibration_edge_cases_that_still_fit():
    """Exactly 3 usable points (min_points 3) spread over 4 slices; a cell with exactly min_points
    points; a fitted gain of exactly 1 px/unit (slice spacing 0.1, |d| <= 0.75) is a gain like any other."""
    three = _samples([(50, [0.0, 20.0, 40.0], A, 0.9)])
    assert fit_calibration(three, (1, 1), min_points=3)["cells"][0]["n_points"] == 3
    cal = fit_calibration(_samples([(50, X1, A, 0.9), (60, X2, A, 0.9)]), (1, 1), min_points=26)
    assert cal["cells"][0]["n_points"] == 26 and not cal["cells"][0]["borrowed"]
    x = np.arange(-12, 13) / 16.0  # multiples of 1/16 with weights 1: every sum of the fit is exact
    one = fit_calibration(_samples([(50, x, (1.0, 0.0), 1.0)], spacing=0.1), (1, 1))
    assert one["cells"][0]["gain_px_per_unit"] == 1.0 and one["cells"][0]["dcc_units_per_px"] == 1.0


def test_robust_line_fit_quality_by_hand():
    """y = 0.1 x + 0.5 + 0.1 e on x = 0..7, e = (+ - - + + - - +): e sums to 0 and is orthogonal to x,
    and every |residual| is 0.1, so the biweights are equal and the fit is the line itself:
    rms 0.1, r2 = 1 - 8 x 0.01 / (0.01 x 42 + 0.08) = 0.84.  A ninth point 1.5 px off (beyond
    4.685 x 1.4826 x MAD 0.2 = 1.389 px) is rejected: n_points 8 of n_total 9, same line and quality."""
    from hil_af.calibration.fit import robust_line

    x = np.arange(8.0)
    y = 0.1 * x + 0.5 + 0.1 * np.array([1, -1, -1, 1, 1, -1, -1, 1.0])
    f = robust_line(x, y)
    want = {"gain_px_per_unit": 0.1, "offset_px": 0.5, "residual_rms_px": 0.1, "n_points": 8, "r2": 0.84,
            "n_total": 8, "inlier_fraction": 1.0}
    assert f == pytest.approx(want, abs=1e-9)
    f = robust_line(np.append(x, 3.5), np.append(y, 0.1 * 3.5 + 0.5 + 1.5), np.ones(9))
    assert f == pytest.approx(dict(want, n_total=9, inlier_fraction=8 / 9), abs=1e-9)
    # a spread below 1 unit is still a spread; weights <= 0 drop points; fewer than 3 points: None
    assert robust_line(np.array([0, 0.25, 0.5]), np.array([1.0, 1.5, 2.0])) == pytest.approx(
        {"gain_px_per_unit": 2.0, "offset_px": 1.0, "residual_rms_px": 0.0, "n_points": 3, "r2": 1.0, "n_total": 3,
         "inlier_fraction": 1.0}, abs=1e-12)
    assert robust_line(x[:4], y[:4], np.array([1.0, 0.0, -1.0, 1.0])) is None
    flat = robust_line(x, np.full(8, 0.5))  # no variance in y: gain 0 and r2 0 (not 1)
    # 3 points, one off the Theil-Sen line (slope: median of 0, 0.5, 1): MAD 0, so it is rejected and,
    # with fewer than 3 points left, the iteration stops there: the line through the other two
    f = robust_line(np.array([0.0, 1.0, 2.0]), np.array([0.0, 0.0, 1.0]))
    assert f == pytest.approx({"gain_px_per_unit": 0.5, "offset_px": 0.0, "residual_rms_px": 0.0, "n_points": 2,
                               "r2": 1.0, "n_total": 3, "inlier_fraction": 2 / 3}, abs=1e-12)
    assert (flat["gain_px_per_unit"], flat["offset_px"], flat["r2"]) == (0.0, 0.5, 0.0)


def test_robust_line_starts_from_theil_sen_so_a_45_percent_outlier_line_does_not_pull_it():
    """45 % of the points lie on another line (0.002 x + 4.0, a RoI's other depth): started from the
    median of pairwise slopes, the biweight IRLS ends on the true line (-0.02 x + 0.3); a least-squares
    start sits between the two lines, where the MAD scale keeps both as inliers."""
    from hil_af.calibration.fit import robust_line

    rng = np.random.default_rng(5)
    x = rng.uniform(-300, 300, 200)
    y = -0.02 * x + 0.3 + rng.normal(0, 0.03, 200)
    out = rng.random(200) < 0.45
    y[out] = 0.002 * x[out] + 4.0
    f = robust_line(x, y)
    assert f["gain_px_per_unit"] == pytest.approx(-0.02, rel=0.02) and f["offset_px"] == pytest.approx(0.3, abs=0.03)
    assert f["n_points"] < 200 - 0.4 * out.sum()  # the other line is (mostly) rejected
