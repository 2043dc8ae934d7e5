"""import-l2af on a tiny tree the test builds in the Learning-to-Autofocus release layout.

The ground truth is recomputed here from the convention (p = png / 255 is normalised
inverse depth, near 0.1 m, far 100 m, p = 0 the near plane; median depth in dioptres
placed on the slice dioptres by linear interpolation of the index and rounded;
RoIs whose median confidence is < 0.99 have none), with its own arithmetic.
"""

import json

import numpy as np
import pytest

PIL = pytest.importorskip("PIL.Image", reason="Pillow (extra [l2af]) is needed to write the PNG fixture")

from hil_af.cli import main  # noqa: E402
from hil_af.l2af import make_rois  # noqa: E402
from hil_af.stacks import load_stack  # noqa: E402

# focus distances of the 49 slices from the dataset's readme (k = 0 farthest), written out again here
MM = [3910.92, 2289.27, 1508.71, 1185.83, 935.91, 801.09, 700.37, 605.39, 546.23, 486.87, 447.99, 407.40,
      379.91, 350.41, 329.95, 307.54, 291.72, 274.13, 261.53, 247.35, 237.08, 225.41, 216.88, 207.10,
      198.18, 191.60, 183.96, 178.29, 171.69, 165.57, 160.99, 155.61, 150.59, 146.81, 142.35, 138.98,
      134.99, 131.23, 127.69, 124.99, 121.77, 118.73, 116.40, 113.63, 110.99, 108.47, 106.54, 104.23, 102.01]
H, W = 48, 72  # PD views; depth / confidence maps are 4x smaller (as in the release: 504x378 vs 2016x1512)
ROWS, COLS = 2, 3  # RoI grid: 24 px cells, 16 px RoIs centred; one depth value per cell


def expected_slice(p8: int) -> int:
    p = p8 / 255.0
    depth = 0.1 * 100.0 / (100.0 - (100.0 - 0.1) * p)  # metres
    dpt = 1.0 / depth
    dk = [1000.0 / m for m in MM]  # increasing with k
    if dpt <= dk[0]:
        return 0
    if dpt >= dk[-1]:
        return 48
    for j in range(48):
        if dk[j] <= dpt <= dk[j + 1]:
            return int(round(j + (dpt - dk[j]) / (dk[j + 1] - dk[j])))
    raise AssertionError


def write_scene(split_dir, scene, variant, p8_cells, conf_cells, rng):
    left_dir, right_dir, name = {
        "up": ("raw_up_left_pd", "raw_up_right_pd", "result_up_pd_{}_center.png"),
        "raw": ("raw_left_pd", "raw_right_pd", "result_pd_{}_center.png"),
    }[variant]
    for k in range(49):
        for side, folder in (("left", left_dir), ("right", right_dir)):
            d = split_dir / folder / scene / str(k)
            d.mkdir(parents=True, exist_ok=True)
            img = (rng.random((H, W)) * 1000 + 1000 * k).astype(np.uint16)
            PIL.fromarray(img).save(d / name.format(side))
    h, w = H // 4, W // 4
    depth = np.zeros((h, w), np.uint8)
    conf = np.zeros((h, w), np.uint16)
    ch, cw = h // ROWS, w // COLS
    for r in range(ROWS):
        for c in range(COLS):
            depth[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = p8_cells[r][c]
            conf[r * ch:(r + 1) * ch, c * cw:(c + 1) * cw] = round(conf_cells[r][c] * 65535)
    for folder, arr, fname in (("merged_depth", depth, "result_merged_depth_center.png"),
                               ("merged_conf", conf, "result_merged_conf_center.png")):
        (split_dir / folder / scene).mkdir(parents=True, exist_ok=True)
        PIL.fromarray(arr).save(split_dir / folder / scene / fname)


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    """root/train1 (raw_up_*_pd, 2 scenes) and root/test (raw_*_pd, 2 scenes); returns (root, truth)."""
    root = tmp_path_factory.mktemp("l2af")
    rng = np.random.default_rng(0)
    truth = {}
    for split, variant in (("train1", "up"), ("test", "raw")):
        for s in range(2):
            scene = f"{split}_scene{s}"
            p8 = rng.integers(0, 256, (ROWS, COLS))
            p8[0, 0] = 0 if s == 0 else 255  # the near plane / the far plane
            conf = np.where(rng.random((ROWS, COLS)) < 0.3, 0.5, 1.0)
            conf[1, 2] = conf[0, 0] = 1.0
            write_scene(root / split, scene, variant, p8.tolist(), conf.tolist(), rng)
            truth[(split, scene)] = [expected_slice(int(v)) if cf >= 0.99 else -1
                                     for v, cf in zip(p8.ravel(), conf.ravel())]
    return root, truth


def test_root_with_splits_and_both_pd_variants_gives_the_convention_ground_truth(tree, tmp_path, capsys):
    root, truth = tree
    out = tmp_path / "stacks"
    assert main(["import-l2af", str(root), "--out", str(out), "--rois", "grid:2x3", "--roi-size", "16"]) == 0
    assert "wrote 4 focal stacks" in capsys.readouterr().out
    confident = 0
    for (split, scene), gt in truth.items():
        s = load_stack(out / split / f"{scene}.npz")
        assert s.gt_index.tolist() == gt, (split, scene)
        confident += sum(g >= 0 for g in gt)
        assert s.left.shape == (49, H, W) and s.meta["pd"] == ("up" if split == "train1" else "raw")
        assert 7000 <= s.left[7].min() and s.left[7].max() < 8000  # slice 7 is the PNG of folder 7
        assert list(s.lens_positions) == list(range(49))
        np.testing.assert_allclose(s.meta["lens_dioptres"], [1000.0 / m for m in MM])
    assert confident >= 12
    near = load_stack(out / "train1" / "train1_scene0.npz").gt_index[0]
    far = load_stack(out / "train1" / "train1_scene1.npz").gt_index[0]
    assert (near, far) == (48, 0)  # p = 0 is the near plane (0.1 m: beyond the nearest slice)


def test_one_split_folder_split_filter_and_resume(tree, tmp_path, capsys):
    root, truth = tree
    out = tmp_path / "one"
    assert main(["import-l2af", str(root / "test"), "--out", str(out), "--rois", "grid:2x3", "--roi-size", "16"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["test_scene0.npz", "test_scene1.npz"]
    assert load_stack(out / "test_scene1.npz").gt_index.tolist() == truth[("test", "test_scene1")]
    out2 = tmp_path / "sel"
    args = ["import-l2af", str(root), "--out", str(out2), "--split", "train*", "--rois", "grid:2x3", "--roi-size", "16",
            "--json", str(tmp_path / "r.json")]
    assert main(args) == 0
    assert [p.name for p in out2.iterdir()] == ["train1"]
    first = (out2 / "train1" / "train1_scene0.npz").stat().st_mtime_ns
    (out2 / "train1" / "train1_scene1.npz").write_bytes(b"truncated")  # an import killed mid-write
    assert main(args + ["--resume"]) == 0
    res = json.loads((tmp_path / "r.json").read_text())
    assert [p.split("/")[-1] for p in res["written"]] == ["train1_scene1.npz"]
    assert [p.split("/")[-1] for p in res["kept"]] == ["train1_scene0.npz"]
    assert (out2 / "train1" / "train1_scene0.npz").stat().st_mtime_ns == first
    assert load_stack(out2 / "train1" / "train1_scene1.npz").gt_index.tolist() == truth[("train1", "train1_scene1")]
    assert "import-l2af" not in capsys.readouterr().err  # no progress bar when stderr is not a terminal


def test_near_plane_option_and_no_confidence_mask(tree, tmp_path):
    root, truth = tree
    out = tmp_path / "n"
    assert main(["import-l2af", str(root), "--split", "test", "--out", str(out), "--rois", "grid:2x3",
                 "--roi-size", "16", "--min-conf", "0"]) == 0
    gt = load_stack(out / "test" / "test_scene0.npz").gt_index.tolist()
    assert -1 not in gt  # no mask: every RoI has a ground truth
    assert all(g == t for g, t in zip(gt, truth[("test", "test_scene0")]) if t >= 0)


def test_paper_patches_are_the_patchify_grid():
    # generate_trainingset.py: patchify(2016 x 1512 view, (128, 128), step=40) -> (48, 35) patches
    r = make_rois((2016, 1512), ("patches", 128, 40), 64)
    assert len(r) == 48 * 35
    assert r[0].tolist() == [0, 0, 128, 128] and r[1].tolist() == [40, 0, 128, 128]
    assert r[35].tolist() == [0, 40, 128, 128] and r[-1].tolist() == [34 * 40, 47 * 40, 128, 128]


def test_missing_files_and_bad_trees_are_one_line_errors(tree, tmp_path, capsys):
    root, _ = tree
    assert main(["import-l2af", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "raw_up_left_pd" in err and "train1" in err
    assert main(["import-l2af", str(root), "--split", "train9", "--out", str(tmp_path / "o")]) == 2
    assert "train9" in capsys.readouterr().err
    assert main(["import-l2af", str(root), "--rois", "grid:3", "--out", str(tmp_path / "o")]) == 2
    assert "grid:RxC" in capsys.readouterr().err
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(root / "test", broken)
    (broken / "raw_right_pd/test_scene0/12/result_pd_right_center.png").unlink()
    assert main(["import-l2af", str(broken), "--out", str(tmp_path / "o2")]) == 2
    assert "12/result_pd_right_center.png" in capsys.readouterr().err
    shutil.copy(root / "test/raw_right_pd/test_scene0/12/result_pd_right_center.png",
                broken / "raw_right_pd/test_scene0/12/result_pd_right_center.png")
    (broken / "merged_conf/test_scene1/result_merged_conf_center.png").unlink()
    assert main(["import-l2af", str(broken), "--out", str(tmp_path / "o3")]) == 2
    assert "result_merged_conf_center.exr" in capsys.readouterr().err
