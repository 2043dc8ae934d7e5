"""calibrate lensmap: the dioptres -> code fit and the libcamera tuning file it writes."""

from __future__ import annotations

import json

import pytest

from hil_af.calibration.lensmap import fit_lens_map, tuning_with_map, validate_tuning
from hil_af.cli import main
from hil_af.errors import FormatError


def test_lensmap_on_the_sim_recovers_its_lens_map(tmp_path, capsys):
    out = tmp_path / "af.json"
    rc = main(["calibrate", "lensmap", "sim://?seed=1", "--distances", "0.25,1,inf", "--steps", "40",
               "--out", str(out), "--clock", "sim", "--json"])
    fit = json.loads(capsys.readouterr().out)
    assert rc == 0
    doc = json.loads(out.read_text())
    validate_tuning(doc)
    (af,) = [a["rpi.af"] for a in doc["algorithms"] if "rpi.af" in a]
    d0, c0, d1, c1 = af["map"]
    # sim-default's lens: 0 D -> code 100, 12 D -> 900 (66.7 codes per dioptre)
    assert d0 == 0.0 and abs(c0 - 100) <= 4 and abs((c1 - c0) / (d1 - d0) - 800 / 12) <= 2
    assert abs(fit["codes_per_dioptre"] - 800 / 12) <= 2 and fit["rms_codes"] < 3
    assert af["speeds"]["normal"]["pdaf_gain"] == 0.0  # CDAF only: startAF goes straight to the scan
    assert max(r["max"] for r in af["ranges"].values()) <= d1  # ranges inside the map's domain


def test_tuning_keeps_the_base_and_replaces_only_the_map():
    base = {"version": 2.0, "target": "pisp", "algorithms": [
        {"rpi.black_level": {"black_level": 4096}},
        {"rpi.af": {"speeds": {"normal": {"step_frames": 4}}, "map": [0.0, 445, 15.0, 925]}}]}
    doc = tuning_with_map([0.0, 120.0, 10.0, 800.0], base)
    assert doc["algorithms"][0] == base["algorithms"][0] and doc["target"] == "pisp"
    assert doc["algorithms"][1]["rpi.af"]["map"] == [0.0, 120, 10.0, 800]
    assert doc["algorithms"][1]["rpi.af"]["speeds"] == {"normal": {"step_frames": 4}}
    assert base["algorithms"][1]["rpi.af"]["map"] == [0.0, 445, 15.0, 925]  # the base is not modified
    imx519_like = {"version": 2.0, "target": "bcm2835", "algorithms": [{"rpi.agc": {}}]}  # no rpi.af at all
    added = tuning_with_map([0.0, 120.0, 10.0, 800.0], imx519_like)
    assert [list(a)[0] for a in added["algorithms"]] == ["rpi.agc", "rpi.af"]


@pytest.mark.parametrize("doc,msg", [
    ({"version": 2.0, "algorithms": [{"rpi.af": {"map": [0.0, 445, 15.0]}}]}, "pairs"),
    ({"version": 2.0, "algorithms": [{"rpi.af": {"map": [0.0, 445, 0.0, 925]}}]}, "increase strictly"),
    ({"version": 2.0, "algorithms": [{"rpi.af": {"map": [0.0, "445", 1.0, 925]}}]}, "finite numbers"),
    ({"version": 2.0, "rpi.af": {"map": [0.0, 445, 15.0, 925]}}, "algorithms"),
    ({"version": 3.0, "algorithms": []}, "unrecognised version"),
    ({"version": 2.0, "algorithms": [{"rpi.af": {"map": [0, 1, 2, 3]}}, {"x.af": {}}]}, "appears twice"),
    ({"version": 2.0, "algorithms": [{"rpi.agc": {}}]}, "no rpi.af"),
])
def test_validate_tuning_rejects_what_libcamera_would_not_load(doc, msg):
    with pytest.raises(FormatError, match=msg):
        validate_tuning(doc)


def test_fit_reports_residuals_and_spans_the_lens():
    fit = fit_lens_map([0.0, 1.0, 4.0], [100.0, 167.0, 367.0], (0.0, 1023.0))
    assert fit.slope == pytest.approx(66.7, abs=0.2) and fit.rms_codes < 0.5
    assert fit.knots[0] == 0.0 and fit.knots[3] <= 1023 and fit.knots[2] == pytest.approx(13.84, abs=0.05)


@pytest.mark.parametrize("distances", ["1", "1,abc", "0,1", "1,1"])
def test_bad_distances_exit_2(tmp_path, distances):
    assert main(["calibrate", "lensmap", "sim://", "--distances", distances, "--out", str(tmp_path / "x.json")]) == 2
