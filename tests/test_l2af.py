"""import-l2af on a tiny tree built in the Learning-to-Autofocus layout."""

import numpy as np
import pytest

PIL = pytest.importorskip("PIL.Image", reason="Pillow (extra [l2af]) is needed to write the PNG fixture")

from hil_af.cli import main  # noqa: E402
from hil_af.l2af import SLICE_DIOPTRES  # noqa: E402
from hil_af.stacks import load_stack  # noqa: E402


def write_tree(root, scene="scene_a", H=40, W=48, depth_value=None):
    rng = np.random.default_rng(0)
    for k in range(49):
        for side, folder in (("left", "raw_up_left_pd"), ("right", "raw_up_right_pd")):
            d = root / folder / scene / str(k)
            d.mkdir(parents=True, exist_ok=True)
            img = (rng.random((H, W)) * 1000 + 1000 * k).astype(np.uint16)
            PIL.fromarray(img).save(d / f"result_up_pd_{side}_center.png")
    # depth: left half near (full scale), right half far (0)
    depth = np.zeros((H // 2, W // 2), np.uint16)  # half resolution: the importer resamples
    depth[:, : W // 4] = 65535
    if depth_value is not None:
        depth[:] = depth_value
    (root / "merged_depth" / scene).mkdir(parents=True, exist_ok=True)
    PIL.fromarray(depth).save(root / "merged_depth" / scene / "result_merged_depth_center.png")


def test_import_tree_writes_valid_stacks_with_depth_gt(tmp_path):
    write_tree(tmp_path / "l2af")
    out = tmp_path / "stacks"
    assert main(["import-l2af", str(tmp_path / "l2af"), "--out", str(out), "--rois", "grid:1x2", "--roi-size", "16"]) == 0
    s = load_stack(out / "scene_a.npz")
    assert s.left.shape == (49, 40, 48) and s.left.dtype == np.uint16
    assert list(s.lens_positions) == list(range(49))
    # slice 7's left view holds what the test wrote for k = 7
    assert 7000 <= s.left[7].min() and s.left[7].max() < 8000
    assert s.gt_index.tolist() == [48, 0]  # near half -> last slice (0.102 m), far half -> first (3.91 m)
    assert np.allclose(s.meta["lens_dioptres"], SLICE_DIOPTRES)


def test_mid_depth_snaps_to_nearest_slice_in_dioptres(tmp_path):
    write_tree(tmp_path / "l2af", depth_value=32768)
    out = tmp_path / "stacks"
    assert main(["import-l2af", str(tmp_path / "l2af"), "--out", str(out), "--rois", "grid:1x1", "--roi-size", "16"]) == 0
    d = SLICE_DIOPTRES[0] + (32768 / 65535) * (SLICE_DIOPTRES[-1] - SLICE_DIOPTRES[0])
    assert load_stack(out / "scene_a.npz").gt_index[0] == int(np.argmin(np.abs(SLICE_DIOPTRES - d)))


def test_missing_slice_names_the_file(tmp_path, capsys):
    write_tree(tmp_path / "l2af")
    (tmp_path / "l2af/raw_up_right_pd/scene_a/12/result_up_pd_right_center.png").unlink()
    assert main(["import-l2af", str(tmp_path / "l2af"), "--out", str(tmp_path / "o")]) == 2
    assert "12/result_up_pd_right_center.png" in capsys.readouterr().err


def test_not_a_tree_is_bad_input(tmp_path, capsys):
    assert main(["import-l2af", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "raw_up_left_pd" in capsys.readouterr().err
