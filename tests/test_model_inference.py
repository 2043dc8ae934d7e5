"""ONNX export vs torch, onnxruntime inference (also with torch absent), model-file errors."""

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from hil_af.errors import BadInput, FormatError
from hil_af.frames import DualPixelFrame, grid_rois
from hil_af.model.inference import PEPredictor, decode

ONNX_TOL = 1e-4  # max |onnxruntime - torch| on logits, float32
N = 9


def _export(tmp_path: Path, n: int = N, seed: int = 0) -> Path:
    torch = pytest.importorskip("torch")
    from hil_af.model.card import build_card, write_card
    from hil_af.model.encoding import EncodingConfig
    from hil_af.model.nets import build, count_macs, count_params
    from hil_af.model.train import export_onnx, save_weights

    torch.manual_seed(seed)
    m1, m2 = build("mcunet", n), build("mcunet", n)
    for m in (m1, m2):  # non-trivial BatchNorm statistics so export must carry them
        m.train()
        with torch.no_grad():
            m(torch.randn(16, 5, 64, 64) * 2 + 0.5)
    d = tmp_path / "model"
    d.mkdir()
    export_onnx(m1, d / "step1.onnx", 64)
    export_onnx(m2, d / "step2.onnx", 64)
    save_weights(d / "weights.npz", {"step1": m1, "step2": m2})
    write_card(d, build_card(arch="mcunet", n_slices=n, encoding=EncodingConfig().to_dict(),
                             params=count_params(m1), macs=count_macs(m1)))
    return d


@pytest.fixture
def model_dir(tmp_path):
    return _export(tmp_path)


def _frame(seed=1, hw=(256, 384)):
    rng = np.random.default_rng(seed)
    base = rng.uniform(20, 600, hw).astype(np.float32)
    return DualPixelFrame(left=base, right=np.roll(base, 1, axis=1), sensor_hw=hw)


def test_onnx_matches_torch_on_a_batch(tmp_path):
    torch = pytest.importorskip("torch")
    from hil_af.model.nets import build
    from hil_af.model.train import export_onnx, onnx_max_abs_diff

    torch.manual_seed(3)
    m = build("mcunet", N)
    m.train()
    with torch.no_grad():
        m(torch.randn(32, 5, 64, 64))  # update BN running stats
    export_onnx(m, tmp_path / "m.onnx", 64)
    x = np.random.default_rng(0).standard_normal((17, 5, 64, 64)).astype(np.float32)  # batch != export batch
    assert onnx_max_abs_diff(m, tmp_path / "m.onnx", x) < ONNX_TOL


def test_predict_is_batched_and_matches_predict_patches(model_dir):
    p = PEPredictor(model_dir, step=1)
    f = _frame()
    rois = grid_rois(f.shape, 3, 4)
    pred = p.predict(f, rois, slice_index=4, n_slices=N)
    assert pred.index.shape == (12,) and pred.probs.shape == (12, N) and pred.probs.dtype == np.float32
    np.testing.assert_allclose(pred.probs.sum(1), 1.0, atol=1e-5)
    assert np.all((pred.confidence >= 0) & (pred.confidence <= 1))
    assert np.all((pred.expected >= 0) & (pred.expected <= N - 1))
    # one RoI at a time gives the same answer as the batch
    single = p.predict(f, rois[5:6], 4, N)
    np.testing.assert_allclose(single.probs[0], pred.probs[5], atol=1e-5)
    # the eval-harness entry point: raw patches + full-plane RoIs
    left = np.stack([f.left[y:y + h, x:x + w] for x, y, w, h in rois])
    right = np.stack([f.right[y:y + h, x:x + w] for x, y, w, h in rois])
    pp = p.predict_patches(left, right, rois, f.sensor_hw, np.full(12, 4), N)
    np.testing.assert_allclose(pp.probs, pred.probs, atol=1e-5)
    # the session is reused
    s = p.session
    p.predict(f, rois, 0, N)
    assert p.session is s


def test_a_small_roi_is_read_through_a_window_grown_about_its_centre(model_dir):
    """A crop-fit model reads an RoI smaller than its input through the input-sized window about the
    RoI's centre (pixel scale kept), shifted inside the view at an edge; bigger RoIs are unchanged."""
    from hil_af.model.encoding import model_windows

    rois = np.array([[100, 50, 32, 20], [0, 0, 16, 16], [370, 240, 14, 16], [10, 10, 96, 80]])
    w = model_windows(rois, 64, (256, 384))
    np.testing.assert_array_equal(w, [[84, 28, 64, 64], [0, 0, 64, 64], [320, 192, 64, 64], [10, 10, 96, 80]])
    np.testing.assert_array_equal(model_windows(rois, 64, (256, 384), "area"), rois)
    np.testing.assert_array_equal(model_windows(rois[:1], 64, (40, 384)), [[84, 50, 64, 20]])  # view too short
    p = PEPredictor(model_dir, step=1)
    f = _frame()
    small, grown = p.predict(f, rois[:3], 4, N), p.predict(f, w[:3], 4, N)
    np.testing.assert_allclose(small.probs, grown.probs, atol=1e-6)
    np.testing.assert_array_equal(p.windows(rois, f.shape), w)


def test_slice_index_and_position_change_the_input(model_dir):
    p = PEPredictor(model_dir, step=2)
    f = _frame()
    rois = np.array([[0, 0, 64, 64], [0, 0, 64, 64]])
    a = p.predict(f, rois, 0, N).probs
    b = p.predict(f, rois, 8, N).probs
    assert not np.array_equal(a, b)  # lens-PE reaches the network (random weights: tiny but non-zero change)
    left = np.stack([f.left[:64, :64]] * 2)
    right = np.stack([f.right[:64, :64]] * 2)
    c = p.predict_patches(left, right, np.array([[0, 0, 64, 64], [320, 192, 64, 64]]), f.sensor_hw, 3, N).probs
    assert not np.array_equal(c[0], c[1])  # RoI-PE reaches the network


def test_decode_moves_to_the_rounded_mean_and_confidence_is_mass_within_one_slice_of_it():
    logits = np.log(np.array([[0.05, 0.1, 0.6, 0.2, 0.05], [0.2, 0.2, 0.2, 0.2, 0.2], [0.7, 0.2, 0.05, 0.03, 0.02],
                              [0.45, 0.0001, 0.0001, 0.0998, 0.45]]))
    d = decode(logits)
    # means 2.1, 2.0, 0.47, 2.2 (the last a two-peaked distribution: the mean sits between the peaks)
    np.testing.assert_allclose(d.expected, [2.1, 2.0, 0.47, 0.0001 + 0.0002 + 0.2994 + 1.8], atol=1e-6)
    assert d.index.tolist() == [2, 2, 0, 2]
    assert d.argmax.tolist() == [2, 0, 0, 0]  # the mode (first of equal maxima)
    np.testing.assert_allclose(d.confidence, [0.9, 0.6, 0.9, 0.1], atol=1e-3)  # the two-peaked one is not trusted


def test_unservable_sweep_lengths_and_bad_patches_are_bad_input(model_dir):
    p = PEPredictor(model_dir)
    f = _frame()
    assert p.predict(f, grid_rois(f.shape, 1, 1), 0, 49).probs.shape == (1, 49)  # any sweep length is served
    with pytest.raises(BadInput, match="serves sweeps of 2"):
        p.predict(f, grid_rois(f.shape, 1, 1), 0, 1)
    with pytest.raises(BadInput, match="outside"):
        p.predict(f, grid_rois(f.shape, 1, 1), 9, N)
    with pytest.raises(BadInput, match="rois_full_xywh"):
        p.predict_patches(np.zeros((2, 64, 64)), np.zeros((2, 64, 64)), np.zeros((1, 4)), (256, 384), 0, N)


def test_missing_and_corrupt_model_files_name_the_file(model_dir, tmp_path):
    (model_dir / "step2.onnx").unlink()
    with pytest.raises(BadInput, match="step2.onnx"):
        PEPredictor(model_dir, step=2)
    (model_dir / "step1.onnx").write_bytes(b"not an onnx model")
    with pytest.raises(FormatError, match="step1.onnx"):
        PEPredictor(model_dir, step=1)
    with pytest.raises(BadInput, match="card.json"):
        PEPredictor(tmp_path / "nowhere")
    (model_dir / "card.json").write_text("{broken")
    with pytest.raises(FormatError, match="card.json"):
        PEPredictor(model_dir)


def test_card_input_size_mismatch_is_detected(model_dir):
    card = json.loads((model_dir / "card.json").read_text())
    card["encoding"]["size"] = 32
    (model_dir / "card.json").write_text(json.dumps(card))
    with pytest.raises(FormatError, match="input shape"):
        PEPredictor(model_dir)


_NO_TORCH = textwrap.dedent("""
    import sys
    sys.modules['torch'] = None  # any 'import torch' now raises ImportError
    import numpy as np
    import hil_af.model, hil_af.model.encoding
    from hil_af.model.inference import PEPredictor
    from hil_af.frames import DualPixelFrame, grid_rois
    d = sys.argv[1]
    p1, p2 = PEPredictor(d, step=1), PEPredictor(d, step=2)
    n = p1.n_slices
    rng = np.random.default_rng(0)
    base = rng.uniform(20, 600, (256, 384)).astype(np.float32)
    f = DualPixelFrame(left=base, right=np.roll(base, 1, axis=1))
    a = p1.predict(f, grid_rois((256, 384), 3, 4), 0, n)
    b = p2.predict(f, grid_rois((256, 384), 3, 4), int(a.index[0]), n)
    assert 'torch' not in sys.modules or sys.modules['torch'] is None
    print('OK', a.index.shape[0], b.index.shape[0])
""")


def _run_no_torch(model: Path) -> None:
    r = subprocess.run([sys.executable, "-c", _NO_TORCH, str(model)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["OK", "12", "12"]


def test_inference_runs_without_torch(model_dir):
    _run_no_torch(model_dir)


def test_shipped_models_run_without_torch():
    from hil_af.paths import models_dir

    d = models_dir()
    if not (d / "card.json").is_file():
        pytest.skip(f"no shipped model in {d} (run scripts/make_models.sh)")
    _run_no_torch(d)


def test_shipped_card_matches_its_files():
    from hil_af.model.card import sha256
    from hil_af.model.inference import read_card
    from hil_af.paths import models_dir

    d = models_dir()
    if not (d / "card.json").is_file():
        pytest.skip(f"no shipped model in {d} (run scripts/make_models.sh)")
    card = read_card(d)
    assert card["encoding"]["roi_pe"] is True and card["encoding"]["lens_pe"] is True
    assert card["params"] <= 600_000 and card["flops"] <= 50_000_000
    for key, fname in card["files"].items():
        assert sha256(d / fname) == card["sha256"][key], f"{fname} differs from card.json (stale card?)"
    trained_on = {src.split("profile=")[1].split("&")[0] for src in card["data"]["sources"]}
    assert trained_on == {"domain-random"}  # pretrained on the camera family only
    assert card["eval"]["profile"] not in trained_on  # evaluated on cameras held out of pretraining
    assert {"sim-pixel", "sim-catseye"} <= set(card["eval_heldout"]["cameras"])
    # the card's held-out figures are the committed benchmark results (scripts/card_heldout.py), not older ones
    results = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "heldout-cameras.json").read_text())
    for cam, block in card["eval_heldout"]["cameras"].items():
        for method, figures in block.items():
            key = method if method in results[cam] else f"pe2:mcunet-plain:{method}"
            assert figures == results[cam][key], (cam, method)
    assert set(card["eval_heldout"]["cameras"]["sim-wide"]) >= {"zero-shot", "fine-tuned", "pdaf", "zncc2"}


def test_shipped_tiny_model_card_matches_its_files_and_the_results():
    """models/mcunet-tiny (the per-frame budget model, its MODEL_CARD.md): its files are the ones its
    card hashes, it is the stride-2-stem network at about a quarter of the default's MACs, pretrained on the
    camera family only, and its held-out figures are the committed benchmark results."""
    from hil_af.model.card import sha256
    from hil_af.model.inference import PEPredictor, read_card
    from hil_af.paths import models_dir

    d = models_dir() / "mcunet-tiny"
    if not (d / "card.json").is_file():
        pytest.skip(f"no {d}")
    card, default = read_card(d), read_card(models_dir())
    assert card["arch"] == "mcunet-tiny" and card["macs"] <= 0.26 * default["macs"]  # 25.4 %: the head does not shrink
    assert card["encoding"] == default["encoding"] and card["n_slices"] == default["n_slices"]
    for key, fname in card["files"].items():
        assert sha256(d / fname) == card["sha256"][key], f"{fname} differs from card.json (stale card?)"
    assert {src.split("profile=")[1].split("&")[0] for src in card["data"]["sources"]} == {"domain-random"}
    results = json.loads((Path(__file__).resolve().parents[1] / "benchmarks" / "results" / "heldout-cameras.json").read_text())
    for cam, block in card["eval_heldout"]["cameras"].items():
        assert {"zero-shot", "fine-tuned"} <= set(block), cam
        for method, figures in block.items():
            key = method if method in results[cam] else f"pe2:mcunet-tiny:{method}"
            assert figures == results[cam][key], (cam, method)
    # it runs through the same inference path as the default model
    pred = PEPredictor(d)
    rng = np.random.default_rng(0)
    L = rng.uniform(100, 900, (3, 64, 64))
    p = pred.predict_patches(L, np.roll(L, 2, axis=2), np.array([[0, 0, 64, 64]] * 3), (480, 640), 10, 49)
    assert p.probs.shape == (3, 49) and np.allclose(p.probs.sum(axis=1), 1.0, atol=1e-5)
