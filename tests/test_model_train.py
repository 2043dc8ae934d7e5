"""Training on a few tiny simulated focal stacks: the loss goes down, outputs, --init, CLI."""

import json

import numpy as np
import pytest

from hil_af.cli import main
from hil_af.model.dataset import find_stacks, load_patchset, split_by_stack, step2_pairs
from hil_af.model.encoding import EncodingConfig, encode_frame_rois
from hil_af.model.simdata import make_stack
from hil_af.stacks import load_stack


@pytest.fixture
def torch():
    """torch (extra [train]) for the tests that train; the dataset tests above need numpy only."""
    return pytest.importorskip("torch", reason="torch (extra [train]) trains the models")


@pytest.fixture
def T(torch):
    """hil_af.model.train and nets (they import torch)."""
    import types

    from hil_af.model import nets, train

    return types.SimpleNamespace(build=nets.build, TrainConfig=train.TrainConfig, evaluate_pairs=train.evaluate_pairs,
                                 fit=train.fit, load_weights=train.load_weights, train=train.train,
                                 save_weights=train.save_weights)

N = 9


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    d = tmp_path_factory.mktemp("stacks")
    for s in range(3):
        make_stack(d / f"s{s}.npz", "sim-default", seed=s, n_slices=N, grid=(2, 2))
    return d


def test_patchset_batch_equals_the_inference_encoding(stacks):
    cfg = EncodingConfig()
    ps = load_patchset(find_stacks(stacks), cfg)
    st = load_stack(find_stacks(stacks)[0])
    keep = np.flatnonzero(st.gt_index >= 0)
    assert ps.n == N and ps.n_rois == 12 and set(ps.stack_id.tolist()) == {0, 1, 2}
    f = st.frame(5)
    ref = encode_frame_rois(f.left, f.right, st.rois[keep], st.origin, st.sensor_hw, 5, N, cfg)
    rows = np.flatnonzero(ps.stack_id == 0)
    x, y = ps.batch(np.stack([rows, np.full(len(rows), 5)], axis=1))
    np.testing.assert_allclose(x, ref, atol=2e-2)  # views are stored as float16
    np.testing.assert_array_equal(y, st.gt_index[keep])


def _odd_stack(path, n=5):
    from hil_af.stacks import FocalStack, save_stack

    rng = np.random.default_rng(0)
    left = rng.integers(64, 900, (n, 120, 160)).astype(np.uint16)
    right = rng.integers(64, 900, (n, 120, 160)).astype(np.uint16)
    rois = np.array([[10, 12, 64, 64], [0, 0, 64, 64], [40, 20, 101, 77], [90, 60, 37, 50]], dtype=np.int32)
    st = FocalStack(left, right, np.arange(n, dtype=np.float64) * 10, rois, np.array([1, 2, 3, -1], dtype=np.int16),
                    (300, 400), (50, 30), {"format": "focal-stack", "version": 1, "black_level": 64, "white_level": 1023,
                                           "lens_units": "vcm_code"})
    save_stack(path, st)
    return st


@pytest.mark.parametrize("fit", ["crop", "area"])
def test_jitter_moves_pixels_and_roi_pe_together(tmp_path, fit):
    st = _odd_stack(tmp_path / "odd.npz")
    cfg = EncodingConfig(fit=fit)
    ps = load_patchset([tmp_path / "odd.npz"], cfg)
    assert ps.n_rois == 3  # the RoI without gt is skipped
    # un-augmented batches equal the inference encoding for every RoI shape (cropped, clipped at the border, resampled)
    f = st.frame(2)
    ref = encode_frame_rois(f.left, f.right, st.rois[:3], st.origin, st.sensor_hw, 2, 5, cfg)
    x, y = ps.batch(np.array([[0, 2], [1, 2], [2, 2]]))
    np.testing.assert_allclose(x, ref, atol=2e-2)
    assert y.tolist() == [1, 2, 3]
    # jittered: the encoding of the RoI moved by the drawn shift (RoI 0 lies 10 px from the border)
    rng = np.random.default_rng(5)
    pairs = np.array([[0, 2]] * 40)
    xj, _ = ps.batch(pairs, rng, noise=0.0, jitter=4)
    moved = 0
    for b in range(40):
        dx = int(round((xj[b, 2, 0, 0] - ref[0, 2, 0, 0]) * st.sensor_hw[1] / 2))
        dy = int(round((xj[b, 3, 0, 0] - ref[0, 3, 0, 0]) * st.sensor_hw[0] / 2))
        assert abs(dx) <= 4 and abs(dy) <= 4
        moved += (dx, dy) != (0, 0)
        roi = np.array([[10 + dx, 12 + dy, 64, 64]])
        np.testing.assert_allclose(xj[b], encode_frame_rois(f.left, f.right, roi, st.origin, st.sensor_hw, 2, 5, cfg)[0],
                                   atol=2e-2)
    assert moved > 20  # a 64 x 64 RoI is a plain crop under both fits
    xr, _ = ps.batch(np.array([[2, 2]] * 5), rng, noise=0.0, jitter=4)
    if fit == "area":  # the 101 x 77 RoI is resampled: never shifted
        np.testing.assert_allclose(xr, np.repeat(ref[2:3], 5, axis=0), atol=2e-2)


def test_split_is_by_whole_stack_and_seeded(stacks):
    ps = load_patchset(find_stacks(stacks), EncodingConfig())
    tr, va, ids = split_by_stack(ps, 0.34, seed=1)
    assert len(ids) == 1 and set(va.stack_id.tolist()) == set(ids)
    assert not set(tr.stack_id.tolist()) & set(ids)
    assert split_by_stack(ps, 0.34, seed=1)[2] == ids


def test_a_tiny_training_run_lowers_the_loss(stacks, torch, T):
    torch.manual_seed(0)
    ps = load_patchset(find_stacks(stacks), EncodingConfig())
    model = T.build("mcunet", N)
    pairs = ps.all_pairs()
    before = T.evaluate_pairs(model, ps, pairs, 1.0)
    cfg = T.TrainConfig(batch=27, noise=0.0, lr=1e-2)
    log = []
    T.fit(model, ps, pairs, ps, pairs, 10, cfg.lr, 1.0, cfg, np.random.default_rng(0), "step1", log)
    after = T.evaluate_pairs(model, ps, pairs, 1.0)
    assert after["loss"] < before["loss"] - 0.2
    assert log[-1]["train_loss"] < log[0]["train_loss"]
    assert len(log) == 10 and "val_le1" in log[-1]
    # step-2 samples sit at the step-1 predictions, one per (RoI, start slice)
    model.eval()
    p2 = step2_pairs(ps, lambda x: model(torch.from_numpy(x)).detach().numpy())
    assert p2.shape == pairs.shape and np.all((p2[:, 1] >= 0) & (p2[:, 1] < N))
    np.testing.assert_array_equal(p2[:, 0], pairs[:, 0])


def test_train_writes_a_loadable_model_and_init_fine_tunes(stacks, tmp_path, T):
    cfg = T.TrainConfig(epochs=1, epochs2=1, batch=32, val_frac=0.34, threads=1)
    card = T.train(stacks, tmp_path / "m1", cfg)
    for f in ("step1.onnx", "step2.onnx", "weights.npz", "card.json"):
        assert (tmp_path / "m1" / f).is_file()
    on_disk = json.loads((tmp_path / "m1" / "card.json").read_text())
    assert on_disk["n_slices"] == N and on_disk["encoding"]["roi_pe"] is True
    assert on_disk["val"]["step1"]["le1"] >= 0 and len(on_disk["val"]["history"]) == 2
    assert max(card["onnx_check"]["max_abs_logit_diff"].values()) < 1e-4
    # weights are a plain npz (no pickle) that loads into a fresh model
    with np.load(tmp_path / "m1" / "weights.npz", allow_pickle=False) as z:
        assert any(k.startswith("step1/") for k in z.files) and any(k.startswith("step2/") for k in z.files)
    m = T.build("mcunet", N)
    T.load_weights(m, tmp_path / "m1" / "weights.npz", "step1")
    with np.load(tmp_path / "m1" / "weights.npz", allow_pickle=False) as z:
        np.testing.assert_array_equal(m.state_dict()["classifier.2.weight"].numpy(), z["step1/classifier.2.weight"])
    # --init through the CLI, with the ablation switch and JSON summary
    rc = main(["train", "--stacks", str(stacks), "--out", str(tmp_path / "m2"), "--init", str(tmp_path / "m1"),
               "--epochs", "1", "--threads", "1", "--batch", "32", "--json", str(tmp_path / "s.json")])
    assert rc == 0
    c2 = json.loads((tmp_path / "m2" / "card.json").read_text())
    assert c2["settings"]["init"] == str(tmp_path / "m1")


def test_init_rejects_a_mismatched_model(stacks, tmp_path, T):
    from hil_af.errors import FormatError

    m = T.build("mcunet", 49)

    T.save_weights(tmp_path / "w.npz", {"step1": m})
    with pytest.raises(FormatError, match="does not fit"):
        T.load_weights(T.build("mcunet", N), tmp_path / "w.npz", "step1")


def test_train_cli_bad_input(tmp_path, capsys):
    assert main(["train", "--stacks", str(tmp_path / "none"), "--out", str(tmp_path / "m")]) == 2
    assert "no such file or folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["train", "--stacks", str(tmp_path / "empty"), "--out", str(tmp_path / "m")]) == 2


def test_flatfield_training_ships_the_flat_field_and_inference_applies_it(stacks, tmp_path, capsys, T):
    from hil_af.calibration.flatfield import load_flatfield
    from hil_af.model.inference import PEPredictor

    flat = tmp_path / "flat.npz"
    assert main(["calibrate", "flatfield", "sim://?seed=3&profile=sim-default", "--out", str(flat), "--clock", "sim",
                 "--frames", "1"]) == 0
    # the views the model sees are the flat-fielded ones: patch set == inference encoding with that flat field
    ff = load_flatfield(flat)
    cfg = EncodingConfig()
    ps = load_patchset(find_stacks(stacks), cfg, flatfield=ff)
    plain = load_patchset(find_stacks(stacks), cfg)
    st = load_stack(find_stacks(stacks)[0])
    keep = np.flatnonzero(st.gt_index >= 0)
    f = st.frame(3)
    ref = encode_frame_rois(f.left, f.right, st.rois[keep], st.origin, st.sensor_hw, 3, N, cfg, ff)
    rows = np.flatnonzero(ps.stack_id == 0)
    pairs = np.stack([rows, np.full(len(rows), 3)], axis=1)
    np.testing.assert_allclose(ps.batch(pairs)[0], ref, atol=2e-2)
    assert np.abs(ps.batch(pairs)[0][:, :2] - plain.batch(pairs)[0][:, :2]).max() > 1e-2  # it changed the views
    rc = main(["train", "--stacks", str(stacks), "--out", str(tmp_path / "m"), "--epochs", "1", "--threads", "1",
               "--batch", "32", "--flatfield", str(flat)])
    assert rc == 0
    card = json.loads((tmp_path / "m" / "card.json").read_text())
    assert card["flatfield"]["file"] == "flatfield.npz" and (tmp_path / "m" / "flatfield.npz").is_file()
    pred = PEPredictor(tmp_path / "m", step=1)
    assert pred.flatfield is not None and pred.flatfield.sensor_hw == ff.sensor_hw


def test_init_step2_starts_from_the_new_step1_or_the_init_model_is_kept(stacks, tmp_path, T):
    """Fine-tuning keeps the paper's recipe: step 2 starts from the (new) step 1.  With lr2 = 0 step 2
    cannot move, so its weights equal the fine-tuned step 1's -- unless no epoch beat the init model on
    the held-out sweeps, in which case both steps are the init model's, unchanged."""
    base = tmp_path / "base"
    T.train(stacks, base, T.TrainConfig(epochs=1, epochs2=1, batch=32, val_frac=0.34, threads=1))
    card = T.train(stacks, tmp_path / "ft", T.TrainConfig(epochs=1, epochs2=1, batch=32, val_frac=0.34, threads=1, lr2=0.0),
                   init=base)
    with np.load(base / "weights.npz", allow_pickle=False) as b, np.load(tmp_path / "ft" / "weights.npz", allow_pickle=False) as f:
        key = "classifier.2.weight"
        assert not np.array_equal(b[f"step2/{key}"], b[f"step1/{key}"])
        if card["val"]["kept"] == "trained":
            np.testing.assert_array_equal(f[f"step2/{key}"], f[f"step1/{key}"])
        else:
            assert card["val"]["kept"] == "init"
            assert all(np.array_equal(f[k], b[k]) for k in b.files)




def test_simdata_roi_size_makes_rois_of_that_size(tmp_path):
    """``--roi-size`` sets every RoI's side (dense: still every 32 px; a grid: centred in its cells),
    and the stacks' gt covers them; a side under 8 px is refused."""
    from hil_af.model.simdata import dense_rois, main as simdata_main
    from hil_af.stacks import load_stack

    assert simdata_main(["--out", str(tmp_path / "d"), "--profile", "domain-random", "--scene", "natural",
                         "--seeds", "0:1", "--slices", "3", "--grid", "dense", "--roi-size", "112"]) == 0
    st = load_stack(tmp_path / "d" / "domain-random-s0.npz")
    assert st.view_hw == (256, 384)
    np.testing.assert_array_equal(st.rois, dense_rois((256, 384), 112))
    assert len(st.rois) == 45 and set(st.rois[:, 2]) == {112} and set(st.rois[:, 3]) == {112}
    assert st.rois[:, 0].max() + 112 <= 384 and st.rois[:, 1].max() + 112 <= 256
    assert simdata_main(["--out", str(tmp_path / "g"), "--profile", "domain-random", "--scene", "natural",
                         "--seeds", "0:1", "--slices", "3", "--grid", "2x3", "--roi-size", "112"]) == 0
    g = load_stack(tmp_path / "g" / "domain-random-s0.npz").rois
    np.testing.assert_array_equal(g[:, 2:], 112)
    np.testing.assert_array_equal(g[:, :2], [[8, 8], [136, 8], [264, 8], [8, 136], [136, 136], [264, 136]])
    with pytest.raises(SystemExit, match="at least 8 px"):
        simdata_main(["--out", str(tmp_path / "x"), "--roi-size", "4"])


def test_simdata_takes_a_profile_by_path_and_names_stacks_by_its_file(tmp_path):
    """A rig profile given as a TOML path (a family variant for an experiment) renders with its own
    parameters; its stacks are named after the file, not the path."""
    from hil_af.model.simdata import main as simdata_main
    from hil_af.paths import REPO_ROOT
    from hil_af.stacks import load_stack

    prof = tmp_path / "narrow.toml"
    prof.write_text((REPO_ROOT / "calibration" / "rigs" / "sim-default.toml").read_text().replace(
        "height = 256", "height = 192"))
    assert simdata_main(["--out", str(tmp_path / "d"), "--profile", str(prof), "--seeds", "0:1", "--slices", "3"]) == 0
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["narrow-s0.npz"]
    assert load_stack(tmp_path / "d" / "narrow-s0.npz").view_hw == (192, 384)


def test_cell_rois_lie_inside_one_card_cell():
    """``--grid cells``: 9 RoIs per card cell, each inside its cell (so its truth is one card's)."""
    from hil_af.model.simdata import cell_rois
    from hil_af.sim.scene import cell_edges

    ys, xs = cell_edges((448, 672))
    r = cell_rois((448, 672), 112)
    assert r.shape == (108, 4) and set(r[:, 2]) == {112} and set(r[:, 3]) == {112}
    for x, y, w, h in r:
        i, j = np.searchsorted(ys, y, side="right") - 1, np.searchsorted(xs, x, side="right") - 1
        assert y + h <= ys[i + 1] and x + w <= xs[j + 1], (x, y, w, h)
    assert len({(int(x), int(y)) for x, y, *_ in r}) == 108  # no duplicates
    small = cell_rois((256, 384), 112)  # cells of 84 (88) x 96 px: RoIs as high as the cell, 3 per cell
    assert small.shape == (36, 4) and set(small[:, 2]) == {84, 88} and set(small[:, 1]) == {0, 84, 168}
