"""Flat-field (SPC) gain maps: fit, apply with origin, FLAT.npz store and validation, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hil_af.calibration.flatfield import FlatField, block_ratio, fit_flatfield, load_flatfield
from hil_af.errors import BadInput, FormatError
from hil_af.frames import DualPixelFrame

SENSOR = (120, 160)


def shading(sensor_hw=SENSOR):
    """Per-view vignetting on the full plane: L darker on the right, R on the left, plus a common radial falloff."""
    H, W = sensor_hw
    y, x = np.mgrid[0:H, 0:W] + 0.5
    u, v = 2 * x / W - 1, 2 * y / H - 1
    common = 1 - 0.3 * (u * u + v * v) / 2
    return common * (1 - 0.25 * u), common * (1 + 0.25 * u)


def white_frame(seed=0, dust=True, origin=(0, 0), hw=SENSOR, level=600.0, noise=4.0):
    rng = np.random.default_rng(seed)
    sl, sr = shading()
    y0, x0 = origin
    h, w = hw
    L = level * sl[y0:y0 + h, x0:x0 + w] + rng.normal(0, noise, (h, w))
    R = level * sr[y0:y0 + h, x0:x0 + w] + rng.normal(0, noise, (h, w))
    if dust:  # dark specks and a hot pixel cluster: the per-block median must ignore them
        for _ in range(12):
            cy, cx = rng.integers(3, h - 3), rng.integers(3, w - 3)
            L[cy - 2:cy + 3, cx - 2:cx + 3] *= 0.3
            R[cy - 2:cy + 3, cx - 2:cx + 3] *= 0.3
        L[10:12, 20:22] = 4000
    return DualPixelFrame(left=L.astype(np.float32), right=R.astype(np.float32), sensor_hw=SENSOR, origin=origin,
                          white_level=4095.0)


def test_fit_flattens_the_left_right_ratio_despite_dust_and_noise():
    white = white_frame()
    ff = fit_flatfield(white, grid=(8, 12))
    before = block_ratio(white, (6, 8))
    after = block_ratio(ff.apply(white_frame(seed=1, dust=False)), (6, 8))  # a fresh frame, not the fitted one
    assert before.max() / before.min() > 1.5
    assert after.std() < 0.01 and np.abs(after - 1).max() < 0.03, after
    # the gains keep the brightness of the mean of both views (the common shading is not removed)
    g_l, g_r = ff.gains((0, 0), SENSOR)
    np.testing.assert_allclose(0.5 * (1 / g_l + 1 / g_r)[40:80, 40:120], 1.0, atol=0.02)


def test_apply_honours_the_frame_origin():
    full = white_frame(seed=2, dust=False)
    ff = fit_flatfield(full, grid=(6, 8))
    crop = DualPixelFrame(left=full.left[30:78, 50:114], right=full.right[30:78, 50:114], sensor_hw=SENSOR, origin=(30, 50))
    a = ff.apply(crop)
    b = ff.apply(full)
    np.testing.assert_allclose(a.left, b.left[30:78, 50:114], rtol=1e-5)
    # the model-encoding interface: patches + their RoI on the full plane
    lp, rp = ff(full.left[30:62, 50:82], full.right[30:62, 50:82], (50, 30, 32, 32), SENSOR)
    np.testing.assert_allclose(lp, b.left[30:62, 50:82], rtol=1e-5)
    np.testing.assert_allclose(rp, b.right[30:62, 50:82], rtol=1e-5)
    gl, gr = ff.roi_gains(np.array([[50, 30, 32, 32], [0, 0, 32, 32]]))
    assert gl.shape == (2, 32, 32)


def test_a_flat_field_made_from_a_crop_serves_frames_elsewhere_on_the_sensor():
    crop = white_frame(seed=3, dust=False, origin=(20, 20), hw=(80, 120))
    ff = fit_flatfield(crop, grid=(5, 6))
    other = white_frame(seed=4, dust=False, origin=(0, 0), hw=SENSOR)
    r = block_ratio(ff.apply(other), (6, 8))
    assert np.abs(r[1:-1, 1:-1] - 1).max() < 0.02  # inside the knots
    assert np.abs(r - 1).max() < 0.08  # a little beyond them: linear extrapolation


def test_sensor_mismatch_and_bad_white_frames_are_rejected():
    ff = fit_flatfield(white_frame(dust=False), grid=(4, 4))
    other = DualPixelFrame(left=np.ones((10, 10), np.float32), right=np.ones((10, 10), np.float32), sensor_hw=(10, 10))
    with pytest.raises(BadInput, match="sensor"):
        ff.apply(other)
    dark = DualPixelFrame(left=np.zeros((40, 40), np.float32), right=np.zeros((40, 40), np.float32), white_level=1000.0)
    with pytest.raises(BadInput, match="too dark"):
        fit_flatfield(dark, grid=(4, 4))
    sat = DualPixelFrame(left=np.full((40, 40), 1000, np.float32), right=np.full((40, 40), 1000, np.float32), white_level=1000.0)
    with pytest.raises(BadInput, match="saturated"):
        fit_flatfield(sat, grid=(4, 4))
    with pytest.raises(BadInput, match="grid"):
        fit_flatfield(white_frame(dust=False), grid=(100, 4))


def test_save_load_round_trip(tmp_path):
    ff = fit_flatfield(white_frame(), grid=(6, 8), source="test white")
    p = ff.save(tmp_path / "FLAT.npz")
    back = load_flatfield(p)
    assert back.meta["format"] == "hil-af-flatfield" and back.meta["version"] == 1 and back.meta["source"] == "test white"
    assert back.sensor_hw == SENSOR and back.origin == (0, 0) and back.view_hw == SENSOR
    a = ff.gains((5, 7), (20, 30))
    b = back.gains((5, 7), (20, 30))
    np.testing.assert_allclose(a[0], b[0], rtol=1e-6)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-6)
    assert not list(tmp_path.glob(".*tmp*"))  # atomic write left no temp file


def _arrays(ff: FlatField):
    return {"gain_left": np.asarray(ff.gain_left, np.float32), "gain_right": np.asarray(ff.gain_right, np.float32),
            "knot_y": ff.knot_y, "knot_x": ff.knot_x, "sensor_hw": np.array(SENSOR, np.int32),
            "origin": np.array([0, 0], np.int32), "view_hw": np.array(SENSOR, np.int32),
            "meta": np.array(json.dumps({"format": "hil-af-flatfield", "version": 1}))}


@pytest.mark.parametrize("damage, message", [
    ("truncate", "not an .npz file"),
    ("garbage", "not an .npz file"),
    ("missing", "missing required key"),
    ("version", "unknown version"),
    ("format", "expected 'hil-af-flatfield'"),
    ("nan", "finite"),
    ("knots", "strictly increasing"),
    ("shape", "do not match"),
    ("placement", "inside sensor_hw"),
    ("meta", "'meta' does not parse as JSON"),
    ("gain", "plausible range"),
])
def test_corrupt_flat_field_files_name_the_file_and_the_rule(tmp_path, damage, message):
    ff = fit_flatfield(white_frame(dust=False), grid=(4, 6))
    p = tmp_path / f"bad_{damage}.npz"
    if damage == "truncate":
        ff.save(p)
        data = p.read_bytes()
        p.write_bytes(data[: len(data) // 2])
    elif damage == "garbage":
        p.write_bytes(b"this is not a zip archive at all")
    else:
        a = _arrays(ff)
        if damage == "missing":
            del a["knot_x"]
        elif damage == "version":
            a["meta"] = np.array(json.dumps({"format": "hil-af-flatfield", "version": 7}))
        elif damage == "format":
            a["meta"] = np.array(json.dumps({"format": "frame", "version": 1}))
        elif damage == "nan":
            a["gain_left"][1, 1] = np.nan
        elif damage == "knots":
            a["knot_x"] = a["knot_x"][::-1].copy()
        elif damage == "shape":
            a["knot_y"] = a["knot_y"][:-1]
        elif damage == "placement":
            a["origin"] = np.array([50, 0], np.int32)
        elif damage == "meta":
            a["meta"] = np.array("{not json")
        elif damage == "gain":
            a["gain_right"][0, 0] = 1e6
        np.savez(p, **a)
    with pytest.raises(FormatError) as e:
        load_flatfield(p)
    assert str(p) in str(e.value) and message in str(e.value)


def test_calibrate_flatfield_from_a_frame_file_and_disparity_uses_it(tmp_path, capsys):
    from hil_af.cli import main
    from hil_af.stacks import save_frame

    save_frame(tmp_path / "white.npz", white_frame(dust=False), black_level=64.0, dtype="float32")
    assert main(["calibrate", "flatfield", "--frame", str(tmp_path / "white.npz"), "--out", str(tmp_path / "FLAT.npz"),
                 "--grid", "6x8", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["path"] == str(tmp_path / "FLAT.npz") and out["lr_ratio_max"] / out["lr_ratio_min"] > 1.4
    assert load_flatfield(tmp_path / "FLAT.npz").gain_left.shape == (6, 8)
    assert main(["disparity", str(tmp_path / "white.npz"), "--grid", "2x2", "--flatfield", str(tmp_path / "FLAT.npz"), "--json"]) == 0
    cells = json.loads(capsys.readouterr().out)["cells"]
    assert all(c["confidence"] < 0.3 for c in cells)  # a white target has nothing to correlate
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04broken")
    assert main(["disparity", str(tmp_path / "white.npz"), "--flatfield", str(tmp_path / "bad.npz")]) == 2
    assert "bad.npz" in capsys.readouterr().err
    assert main(["calibrate", "flatfield", "--out", str(tmp_path / "x.npz")]) == 2  # neither RIG nor --frame
    assert "--frame" in capsys.readouterr().err


def test_calibrate_flatfield_on_the_sim_undoes_its_per_view_vignetting(tmp_path, capsys):
    from hil_af.cli import main
    from hil_af.clock import SimClock
    from hil_af.drivers.registry import open_rig

    url = "sim://?seed=2&profile=sim-wide"
    assert main(["calibrate", "flatfield", url, "--out", str(tmp_path / "FLAT.npz"), "--clock", "sim", "--frames", "2"]) == 0
    capsys.readouterr()
    ff = load_flatfield(tmp_path / "FLAT.npz")
    with open_rig(url, clock=SimClock()) as rig:
        rig.source.set_scene("white", 99)
        white = rig.source.capture()
    before = block_ratio(white, (4, 6))
    after = block_ratio(ff.apply(white), (4, 6))
    assert before.max() / before.min() > 1.3  # sim-wide: vignette_lr 0.30
    assert after.std() < 0.01 and np.abs(after - 1).max() < 0.03
