"""doctor's "lens driver" check on prepared sysfs trees."""

from __future__ import annotations

from pathlib import Path

from hil_af.commands import doctor_lens_advice as adv


def _client(root: Path, name: str, chip: str, bound: bool) -> None:
    d = root / "bus" / "i2c" / "devices" / name
    d.mkdir(parents=True)
    (d / "name").write_text(chip + "\n")
    if bound:
        (d / "driver").mkdir()


def _subdev(root: Path, n: int, name: str) -> None:
    d = root / "class" / "video4linux" / f"v4l-subdev{n}"
    d.mkdir(parents=True)
    (d / "name").write_text(name + "\n")


def test_imx519_with_bound_ak7375_gets_v4l2(tmp_path):
    _client(tmp_path, "10-001a", "imx519", True)
    _client(tmp_path, "10-000c", "ak7375", True)
    _subdev(tmp_path, 0, "imx519 10-001a")
    _subdev(tmp_path, 2, "ak7375 10-000c")
    status, detail, fix = adv.lens_advice(tmp_path)
    assert status == "OK" and "v4l2:///dev/v4l-subdev2" in detail and "no rpi.af" in detail
    assert "calibrate lensmap" in fix and "imx519.json" in fix


def test_imx708_is_libcameras(tmp_path):
    _client(tmp_path, "10-001a", "imx708", True)
    _client(tmp_path, "10-000c", "dw9807", True)
    status, detail, _ = adv.lens_advice(tmp_path)
    assert status == "OK" and "libcamera-lens://0" in detail and "picamera2-fom://0" in detail


def test_unbound_ad5398_gets_raw_i2c(tmp_path):
    _client(tmp_path, "1-0010", "ov5647", True)
    _client(tmp_path, "1-000c", "ad5398", False)
    status, detail, _ = adv.lens_advice(tmp_path)
    assert "i2c://1/0x0c?chip=dw9714" in detail and "no kernel driver bound" in detail


def test_no_camera_warns(tmp_path):
    assert adv.lens_advice(tmp_path)[0] == "WARN"
    _client(tmp_path, "10-0010", "imx219", True)
    status, detail, _ = adv.lens_advice(tmp_path)
    assert status == "WARN" and "no lens chip" in detail


def test_doctor_reports_it(tmp_path, monkeypatch, capsys):
    import json

    from hil_af.cli import main

    _client(tmp_path, "10-001a", "imx519", True)
    _client(tmp_path, "10-000c", "ak7375", False)
    monkeypatch.setattr(adv, "SYS", tmp_path)
    main(["doctor", "--json"])
    checks = {c["name"]: c for c in json.loads(capsys.readouterr().out)["checks"]}
    assert "i2c://10/0x0c?chip=ak7375" in checks["lens driver"]["detail"]
