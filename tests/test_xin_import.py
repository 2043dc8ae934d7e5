"""import-xin: the Xin et al. (ICCV 2021) Pixel 4 release -> frame files, checked against the repo's real
test captures (tests/_data.py REALDP) and on broken trees."""

from __future__ import annotations

import json

import numpy as np
import pytest

PIL = pytest.importorskip("PIL.Image", reason="Pillow (extra [l2af]) is needed to write the PNG fixture")

from hil_af import xin  # noqa: E402
from hil_af.cli import main  # noqa: E402
from hil_af.errors import BadInput, FormatError  # noqa: E402
from hil_af.stacks import load_frame  # noqa: E402

from _data import REALDP  # noqa: E402


def _png(path, a):
    path.parent.mkdir(parents=True, exist_ok=True)
    PIL.fromarray(a).save(path)


def _release(root, scene, left_crop, right_crop, gt, pad=1024):
    """A DP_data_pixel_4 scene whose full 1512 x 2016 views hold the crops at the release's origin."""
    y, x = xin.ORIGIN
    h, w = xin.CROP_HW
    for side, crop in (("left", left_crop), ("right", right_crop)):
        full = np.full(xin.SENSOR_HW, pad, dtype=np.uint16)
        full[y:y + h, x:x + w] = crop
        _png(root / f"{scene}_{side}.png", full)
    _png(root / "gt_defocus_map" / f"{scene}_gt.png", gt)


def test_scene_001_rebuilt_from_the_release_layout_equals_the_test_capture_bit_for_bit(tmp_path, capsys):
    if not (REALDP / "001.npz").exists():
        pytest.skip(f"needs the real captures at {REALDP} (HIL_AF_REALDP)")
    ref = np.load(REALDP / "001.npz", allow_pickle=False)
    gt = np.load(REALDP / "001_gt.npz", allow_pickle=False)["defocus"]
    root = tmp_path / "DP_data_pixel_4"
    _release(root, "001", ref["left"], ref["right"], gt, pad=0)  # the pad is cropped away
    assert main(["import-xin", str(root), "--out", str(tmp_path / "o")]) == 0
    assert "wrote 1 scene (001..001)" in capsys.readouterr().out
    got = np.load(tmp_path / "o" / "001.npz", allow_pickle=False)
    for k in ("left", "right", "sensor_hw", "origin"):
        assert got[k].dtype == ref[k].dtype and np.array_equal(got[k], ref[k]), k
    meta, rmeta = json.loads(str(got["meta"])), json.loads(str(ref["meta"]))
    assert {k: float(meta[k]) for k in ("black_level", "white_level")} == {k: float(rmeta[k]) for k in ("black_level", "white_level")}
    assert meta["scene"] == "001"
    assert np.array_equal(np.load(tmp_path / "o" / "001_gt.npz")["defocus"], gt)


def test_crop_offsets_black_level_and_scene_filter(tmp_path):
    rng = np.random.default_rng(0)
    root = tmp_path / "DP_data_pixel_4"
    h, w = xin.CROP_HW
    ramp = (1024 + np.arange(h * w, dtype=np.int64) % 15000).reshape(h, w).astype(np.uint16)
    gt = rng.integers(0, 256, (h, w), dtype=np.uint8)
    _release(root, "005", ramp, ramp[::-1].copy(), gt, pad=60000)  # a wrong crop would read the pad
    _release(root, "006", ramp, ramp, gt)
    assert xin.scenes(root) == ["005", "006"]
    assert xin.import_tree(root, tmp_path / "o", ["005"]) == ["005"]
    assert not (tmp_path / "o" / "006.npz").exists()
    fr = load_frame(tmp_path / "o" / "005.npz")
    assert fr.shape == (h, w) and tuple(fr.origin) == (252, 336) and tuple(fr.sensor_hw) == (1512, 2016)
    assert np.array_equal(fr.left, ramp.astype(np.float32) - 1024) and fr.right[0, 0] == float(ramp[-1, 0]) - 1024
    assert fr.white_level == 16383 - 1024


def test_bad_trees_are_one_line_errors(tmp_path, capsys):
    root = tmp_path / "DP_data_pixel_4"
    root.mkdir()
    assert main(["import-xin", str(root), "--out", str(tmp_path / "o")]) == 2
    assert "no NNN_left.png" in capsys.readouterr().err
    h, w = xin.CROP_HW
    crop = np.full((h, w), 2000, np.uint16)
    gt = np.zeros((h, w), np.uint8)
    _release(root, "007", crop, crop, gt)
    assert main(["import-xin", str(root), "--scenes", "009", "--out", str(tmp_path / "o")]) == 2
    assert "no scene 009" in capsys.readouterr().err
    (root / "007_right.png").unlink()
    with pytest.raises(FormatError, match="007_right.png: missing"):
        xin.import_tree(root, tmp_path / "o")
    _png(root / "007_right.png", np.zeros((100, 200), np.uint16))  # wrong size
    with pytest.raises(FormatError, match="100 x 200 px, expected 1512 x 2016"):
        xin.read_scene(root, "007")
    _png(root / "007_right.png", np.zeros(xin.SENSOR_HW, np.uint8))  # 8-bit views
    with pytest.raises(FormatError, match="expected 16-bit"):
        xin.read_scene(root, "007")
    (root / "007_right.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(FormatError, match="not a readable PNG"):
        xin.read_scene(root, "007")
    with pytest.raises(BadInput, match="not a folder"):
        xin.scenes(tmp_path / "nope")
    err = capsys.readouterr().err
    assert err == ""
