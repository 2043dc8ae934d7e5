"""PDAF thresholds calibrated from the sweeps (hil_af.calibration.thresholds) and the zncc2 reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hil_af.calibration.thresholds import controller_thresholds
from hil_af.cli import main

from synthetic import make_stack


def _synthetic(n=4000, seed=0, bad_conf=(0.0, 0.15), noise=0.3):
    """True defocus in slices (spacing 1), predictions with small noise, and 20 % gross errors whose
    confidence lies in ``bad_conf``."""
    rng = np.random.default_rng(seed)
    d = rng.uniform(-10, 10, n)
    pred = d + rng.normal(0, noise, n)
    conf = rng.uniform(0.3, 0.9, n)
    bad = rng.random(n) < 0.2
    pred[bad] += rng.choice([-1, 1], bad.sum()) * rng.uniform(6, 15, bad.sum())
    conf[bad] = rng.uniform(*bad_conf, bad.sum())
    return d, pred, conf


def test_threshold_rises_above_the_confidence_of_gross_errors():
    d, pred, conf = _synthetic()
    block = controller_thresholds(d, pred, conf, np.ones_like(d, bool), 1.0)
    assert 0.05 <= block["min_confidence"] <= 0.16  # enough of the gross errors (conf < 0.15) dropped
    assert block["outlier_fraction"] <= 0.1


def test_threshold_stays_low_when_confidence_does_not_predict_the_errors():
    d, pred, conf = _synthetic(bad_conf=(0.3, 0.9))
    assert controller_thresholds(d, pred, conf, np.ones_like(d, bool), 1.0)["min_confidence"] == 0.02


def test_stop_rule_follows_the_near_focus_spread():
    quiet = controller_thresholds(*_synthetic(noise=0.1), np.ones(4000, bool), 1.0)
    noisy = controller_thresholds(*_synthetic(noise=1.5), np.ones(4000, bool), 1.0)
    assert quiet["stop_slices"] == 0.5  # clipped at half a slice
    assert 1.5 <= noisy["stop_slices"] <= 3.0


def test_fit_writes_the_controller_block_and_pdaf_uses_it(tmp_path, capsys):
    from hil_af.calibration.store import load_calibration

    (tmp_path / "sw").mkdir()
    for s in range(3):
        make_stack(tmp_path / "sw" / f"s{s}.npz", n=25, gts=(5, 9, 14, 19), size=64, seed=s)
    assert main(["calibrate", "fit", "--stacks", str(tmp_path / "sw"), "--out", str(tmp_path / "cal.json"), "--grid", "1x2",
                 "--no-progress"]) == 0
    cal = load_calibration(tmp_path / "cal.json")
    block = cal["controller"]
    assert 0.02 <= block["min_confidence"] <= 0.5 and 0.5 <= block["stop_slices"] <= 3.0
    # the pdaf method reads the calibration's own thresholds
    from hil_af.controller.methods import MethodConfig, pdaf_thresholds
    from hil_af.calibration.predict import PdafPredictor

    class Ctx:
        config = MethodConfig()

    assert pdaf_thresholds(Ctx, PdafPredictor(cal)) == (block["min_confidence"], block["stop_slices"])
    cal.pop("controller")
    assert pdaf_thresholds(Ctx, PdafPredictor(cal)) == (MethodConfig.pdaf_min_confidence, MethodConfig.pdaf_stop_slices)
    capsys.readouterr()


def test_zncc2_takes_exactly_two_steps_through_its_own_calibration(tmp_path, capsys):
    sw = tmp_path / "sw"
    sw.mkdir()
    for s in range(3):
        make_stack(sw / f"s{s}.npz", n=25, gts=(5, 9, 14, 19), size=64, seed=s)
    calz = tmp_path / "calz.json"
    assert main(["calibrate", "fit", "--stacks", str(sw), "--out", str(calz), "--grid", "1x2", "--method", "zncc", "--disparity-limit", "3",
                 "--max-shift", "6", "--refine", "parabola", "--no-progress"]) == 0
    est = json.loads(calz.read_text())["estimator"]
    assert (est["method"], est["max_shift_px"], est["refine"]) == ("zncc", 6.0, "parabola")
    test = tmp_path / "t.npz"
    make_stack(test, n=25, gts=(7, 12, 16, 20), size=64, seed=9)
    capsys.readouterr()
    rc = main(["focus", f"replay://{test}", "--method", "zncc2", "--zncc-calibration", str(calz), "--clock", "sim",
               "--roi", "8,8,64,64", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["method"] == "zncc2"
    assert out["captures"] == 2 and out["moves"] <= 3  # the start move of the replay is not the method's
    assert abs(out["slice_index"] - 7) <= 2
    rc = main(["focus", f"replay://{test}", "--method", "zncc2", "--clock", "sim", "--json"])
    assert rc == 2 and "zncc2 needs a ZNCC calibration" in capsys.readouterr().err
