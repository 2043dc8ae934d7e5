"""``hil-af calibrate`` end to end on the sim: capture -> flatfield -> fit -> report; bad inputs exit 2."""

from __future__ import annotations

import json
import sys

import pytest

from hil_af.calibration.flatfield import file_sha256
from hil_af.calibration.predict import PdafPredictor
from hil_af.calibration.store import load_calibration
from hil_af.cli import main

URL = "sim://?seed=8&profile=sim-wide"


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory):
    d = tmp_path_factory.mktemp("cal") / "sweeps"
    assert main(["calibrate", "capture", URL, "--out", str(d), "--scenes", "3", "--slices", "13", "--clock", "sim",
                 "--no-progress"]) == 0
    return d


def _json(capsys):
    return json.loads(capsys.readouterr().out)


def test_fit_per_position_global_and_with_flatfield(sweeps, tmp_path, capsys):
    cal = tmp_path / "CAL.json"
    assert main(["calibrate", "fit", "--stacks", str(sweeps), "--out", str(cal), "--grid", "2x2",
                 "--disparity-limit", "10", "--no-progress", "--json"]) == 0
    out = _json(capsys)
    assert out["kind"] == "per-position" and out["grid"] == [2, 2] and out["stacks"] == 3 and len(out["cells"]) == 4
    c = load_calibration(cal)
    assert c["lens_units"] == "vcm_code" and c["sensor_hw"] == [256, 384] and c["flatfield"] is None
    assert all(cell["gain_px_per_unit"] < 0 and cell["n_points"] > 20 for cell in c["cells"])
    # the per-block offsets differ across the field (sim-wide: 0.5 px per unit x)
    offs = {(cell["row"], cell["col"]): cell["offset_px"] for cell in c["cells"]}
    assert offs[(0, 1)] + offs[(1, 1)] > offs[(0, 0)] + offs[(1, 0)]

    glob_ = tmp_path / "GLOBAL.json"
    assert main(["calibrate", "fit", "--stacks", str(sweeps), "--out", str(glob_), "--global", "--no-progress"]) == 0
    capsys.readouterr()
    assert load_calibration(glob_)["kind"] == "global"

    flat = tmp_path / "FLAT.npz"
    assert main(["calibrate", "flatfield", URL, "--out", str(flat), "--clock", "sim", "--frames", "1"]) == 0
    calf = tmp_path / "CAL_FF.json"
    assert main(["calibrate", "fit", "--stacks", str(sweeps), "--out", str(calf), "--grid", "2x2", "--disparity-limit", "10",
                 "--flatfield", str(flat), "--no-progress"]) == 0
    capsys.readouterr()
    rec = load_calibration(calf)["flatfield"]
    assert rec["path"] == "FLAT.npz" and rec["sha256"] == file_sha256(flat)  # relative to CAL.json's folder
    pr = PdafPredictor.from_file(calf)  # picks the recorded flat field up by itself
    assert pr.flatfield is not None and pr.flatfield.path.resolve() == flat.resolve()
    moved = tmp_path / "bundle"
    moved.mkdir()
    calf.rename(moved / calf.name)
    flat.rename(moved / flat.name)
    assert PdafPredictor.from_file(moved / calf.name).flatfield is not None  # the bundle moves as a whole


def test_report_writes_pngs_and_an_index(sweeps, tmp_path, capsys):
    cal = tmp_path / "CAL.json"
    assert main(["calibrate", "fit", "--stacks", str(sweeps), "--out", str(cal), "--grid", "2x2", "--disparity-limit", "10",
                 "--no-progress"]) == 0
    capsys.readouterr()
    rep = tmp_path / "report"
    assert main(["calibrate", "report", str(cal), "--out", str(rep), "--json"]) == 0
    files = _json(capsys)["files"]
    assert sorted(p.split("/")[-1] for p in files) == ["fits.png", "index.html", "maps.png", "residuals.png"]
    for name in ("fits.png", "maps.png", "residuals.png"):
        data = (rep / name).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    html = (rep / "index.html").read_text()
    for name in ("fits.png", "maps.png", "residuals.png", "DCC", "offset"):
        assert name in html
    rep2 = tmp_path / "report2"
    assert main(["calibrate", "report", str(cal), "--out", str(rep2), "--stacks", str(sweeps)]) == 0
    assert (rep2 / "fits.png").stat().st_size > 10_000


def test_report_without_matplotlib_says_what_to_install(sweeps, tmp_path, capsys, monkeypatch):
    cal = tmp_path / "CAL.json"
    assert main(["calibrate", "fit", "--stacks", str(sweeps), "--out", str(cal), "--global", "--no-progress"]) == 0
    capsys.readouterr()
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if the [report] extra were not installed
    assert main(["calibrate", "report", str(cal), "--out", str(tmp_path / "r")]) == 2
    assert "hil-af[report]" in capsys.readouterr().err


def test_bad_inputs_exit_2_naming_the_problem(sweeps, tmp_path, capsys):
    bad = tmp_path / "CAL.json"
    bad.write_text('{"format": "hil-af-calibration", "version": 1, "kind": "per-pos')
    assert main(["calibrate", "report", str(bad), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert str(bad) in err and "not JSON" in err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["calibrate", "fit", "--stacks", str(empty), "--out", str(tmp_path / "x.json")]) == 2
    assert "no focal stacks" in capsys.readouterr().err
    assert main(["calibrate", "fit", "--stacks", str(sweeps), "--out", str(tmp_path / "x.json"), "--grid", "0x3"]) == 2
    assert "--grid" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "sweep_0000.npz").write_bytes(b"PK\x03\x04 not really")
    assert main(["calibrate", "fit", "--stacks", str(broken), "--out", str(tmp_path / "x.json")]) == 2
    assert "sweep_0000.npz" in capsys.readouterr().err
    assert main(["calibrate", "capture", URL, "--out", str(sweeps), "--scenes", "3", "--clock", "sim"]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["calibrate", "fit", "--stacks", str(sweeps), "--out", str(tmp_path / "x.json"), "--method", "magic"]) == 2
    assert "--method" in capsys.readouterr().err
