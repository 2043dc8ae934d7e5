"""``hil-af doctor``: each check's verdict on prepared environments (a fake /dev tree,
model and profile folders, a calibration file, the sim rig, a broken rig)."""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path

import pytest

from hil_af.cli import main
from hil_af.commands import doctor


@pytest.fixture
def env(tmp_path, monkeypatch):
    dev = tmp_path / "dev"
    dev.mkdir()
    models = tmp_path / "models"
    models.mkdir()
    rigs = tmp_path / "rigs"
    rigs.mkdir()
    (rigs / "good.toml").write_text('[rig]\nsource = "sim://?seed=1"\n')
    shipped = Path(__file__).resolve().parents[1] / "calibration" / "rigs" / "sim-default.toml"
    if shipped.exists():  # the sim's default profile, looked up through HIL_AF_RIGS
        shutil.copy(shipped, rigs / "sim-default.toml")
    monkeypatch.setattr(doctor, "DEV", dev)
    monkeypatch.setenv("HIL_AF_MODELS", str(models))
    monkeypatch.setenv("HIL_AF_RIGS", str(rigs))
    return tmp_path


def run(capsys, *argv):
    rc = main(["doctor", *argv, "--json"])
    out = json.loads(capsys.readouterr().out)
    return rc, {c["name"]: c for c in out["checks"]}, out


def test_bare_machine_warns_and_passes(env, capsys):
    rc, checks, out = run(capsys)
    assert rc == 0 and out["ok"] is True and out["fails"] == 0
    for fam in ("i2c", "v4l-subdev", "video", "serial"):
        assert checks[f"devices {fam}"]["status"] == "WARN"
    assert checks["model step1.onnx"]["status"] == "WARN" and "hil-af train" in checks["model step1.onnx"]["fix"]
    assert checks["profile good"]["status"] == "OK"
    assert checks["import onnxruntime"]["status"] == "OK"
    assert checks["calibration"]["status"] == "WARN"


def test_device_nodes_found_and_permissions_checked(env, capsys, monkeypatch):
    for name in ("i2c-1", "i2c-10", "v4l-subdev0", "video0", "ttyACM0"):
        (env / "dev" / name).touch()
    rc, checks, _ = run(capsys)
    assert checks["devices i2c"] == {"name": "devices i2c", "status": "OK", "detail": "i2c-1, i2c-10", "fix": ""}
    assert checks["devices serial"]["detail"] == "ttyACM0"
    # now pretend this user may not open the i2c nodes
    real = doctor.check_devices
    monkeypatch.setattr(doctor, "check_devices",
                        lambda needs: real(needs, access=lambda p, mode: "i2c" not in os.path.basename(p)))
    rc, checks, _ = run(capsys)
    c = checks["devices i2c"]
    assert c["status"] == "WARN" and "i2c-1, i2c-10" in c["detail"] and "udev" in c["fix"]
    assert rc == 0


def test_rig_needing_missing_things_fails(env, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "picamera2", None)
    rc, checks, out = run(capsys, "picamera2://0?layout=columns", "--lens", "i2c://1/0x0c?chip=dw9807")
    assert rc == 1 and out["ok"] is False
    assert checks["import picamera2"]["status"] == "FAIL"
    assert checks["devices i2c"]["status"] == "FAIL"      # the lens URL needs /dev/i2c-*
    assert checks["devices serial"]["status"] == "WARN"   # not needed by this rig
    assert checks["rig open"]["status"] == "FAIL" and "picamera2" in checks["rig open"]["detail"]


def test_broken_profile_and_model_fail(env, capsys):
    (env / "rigs" / "bad.toml").write_text("[rig]\nname = 'no source'\n")
    (env / "models" / "step1.onnx").write_bytes(b"not an onnx model")
    rc, checks, _ = run(capsys)
    assert rc == 1
    assert checks["profile bad"]["status"] == "FAIL" and "source" in checks["profile bad"]["detail"]
    assert checks["model step1.onnx"]["status"] == "FAIL"
    assert checks["profile good"]["status"] == "OK"


def test_calibration_file_checked(env, capsys):
    from hil_af.paths import REPO_ROOT

    cal = env / "cal.json"
    cal.write_text((REPO_ROOT / "calibration/examples/sim-default/cal-global.json").read_text())
    _, checks, _ = run(capsys, "--calibration", str(cal))
    assert checks["calibration"]["status"] == "OK" and "global calibration" in checks["calibration"]["detail"]
    cal.write_text('{"version": 1, "cells": []}')  # JSON, but not a calibration: the loader says what is wrong
    rc, checks, _ = run(capsys, "--calibration", str(cal))
    assert rc == 1 and checks["calibration"]["status"] == "FAIL" and "calibrate fit" in checks["calibration"]["fix"]
    cal.write_text("{oops")
    rc, checks, _ = run(capsys, "--calibration", str(cal))
    assert rc == 1 and checks["calibration"]["status"] == "FAIL"


def test_sim_rig_opens_captures_and_moves(env, capsys):
    rc, checks, _ = run(capsys, "good")  # a profile name from HIL_AF_RIGS
    assert checks["rig open"]["status"] == "OK"
    assert checks["rig capture"]["status"] == "OK" and "views" in checks["rig capture"]["detail"]
    lens = checks["rig lens move"]
    assert lens["status"] == "OK" and "changed" in lens["detail"] and "sharpness" in lens["detail"]


def _fake_picamera2_rig(env, mocker, image, **kw):
    from hil_af.drivers.fakes import fake_picamera2_module

    mod = fake_picamera2_module(raw_size=(64, 32), image=image, **kw)
    mocker.patch.dict(sys.modules, {"picamera2": mod})
    prof = env / "rigs" / "cam.toml"
    prof.write_text('[rig]\nsource = "picamera2://0?layout=columns"\nlens = "libcamera-lens://0"\n'
                    '[sensor]\ndual_pixel = true\ncfa = "mono"\n')
    return str(prof)


def test_lens_check_sees_sharpness_follow_the_lens(env, capsys, mocker):
    """A camera whose image blurs away from 4 dioptres: the two positions differ, a repeat agrees."""
    import numpy as np

    rng = np.random.default_rng(0)
    texture = rng.integers(0, 400, (32, 64)).astype(np.float64)

    def image(d, n):
        k = 1 + int(round(abs(d - 4.0)))  # box blur width grows with defocus
        blurred = np.stack([np.convolve(row, np.ones(k) / k, mode="same") for row in texture])
        return (100 + blurred).astype(np.uint16)

    rc, checks, _ = run(capsys, _fake_picamera2_rig(env, mocker, image, max_slew=1.5))
    lens = checks["rig lens move"]
    assert lens["status"] == "OK", lens
    assert re.search(r"at 3\.75, .* at 11\.25", lens["detail"])


def test_lens_check_says_when_it_cannot_tell(env, capsys, mocker):
    """The lens is commanded and reports arriving, but the image never changes: not proven."""
    import numpy as np

    still = np.random.default_rng(1).integers(100, 500, (32, 64)).astype(np.uint16)
    rc, checks, _ = run(capsys, _fake_picamera2_rig(env, mocker, lambda d, n: still))
    lens = checks["rig lens move"]
    assert lens["status"] == "WARN" and "could not tell" in lens["detail"]


def test_human_output_lists_fixes_and_summary(env, capsys):
    rc = main(["doctor"])
    text = capsys.readouterr().out
    assert rc == 0
    assert "WARN  devices i2c" in text and "fix: enable the bus" in text
    assert re.fullmatch(r"\d+ checks: 0 FAIL, \d+ WARN", text.strip().splitlines()[-1])


def test_profile_calibration_table_files_checked(env, capsys):
    rigs = env / "rigs"
    import shutil

    from hil_af.paths import REPO_ROOT

    ex = REPO_ROOT / "calibration/examples/sim-default"
    shutil.copy(ex / "cal.json", rigs / "cal.json")
    shutil.copy(ex / "flat.npz", rigs / "flat.npz")
    (rigs / "calrig.toml").write_text('[rig]\nsource = "sim://?seed=1"\n'
                                      '[calibration]\nper_position = "cal.json"\nflatfield = "flat.npz"\n'
                                      'global = "missing.json"\n')
    rc, checks, _ = run(capsys, str(rigs / "calrig.toml"))
    assert checks["calibration per_position"]["status"] == "OK"
    assert checks["calibration flatfield"]["status"] == "OK" and "flat field" in checks["calibration flatfield"]["detail"]
    assert checks["calibration global"]["status"] == "FAIL" and rc == 1
