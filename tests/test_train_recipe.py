"""The paper's multi-step recipe inside ``train`` and the fine-tuning recipe of ``hil-af train --init``.

``fit`` is wrapped by a spy that records what it was given and then runs the real loop."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hil_af.cli import main  # noqa: E402
from hil_af.model import train as T  # noqa: E402
from hil_af.model.simdata import make_stack  # noqa: E402

N = 9


@pytest.fixture(scope="module")
def stacks(tmp_path_factory):
    d = tmp_path_factory.mktemp("sweeps")
    for s in range(4):
        make_stack(d / f"s{s}.npz", "sim-default", seed=s, n_slices=N, grid=(2, 2))
    return d


@pytest.fixture(scope="module")
def base_model(stacks, tmp_path_factory):
    out = tmp_path_factory.mktemp("base") / "m"
    cfg = T.TrainConfig(epochs=1, epochs2=1, batch=32, max_samples_per_epoch=64, threads=1)
    T.train(stacks, out, cfg)
    return out


def _spy(monkeypatch):
    calls = []
    real = T.fit

    def spy(model, ps, pairs, val, val_pairs, epochs, lr, temp, cfg, rng, label, log, on_epoch=None):
        calls.append({"label": label, "T": temp, "pairs": np.array(pairs), "ps": ps,
                      "state": {k: v.clone() for k, v in model.state_dict().items()}})
        real(model, ps, pairs, val, val_pairs, epochs, lr, temp, cfg, rng, label, log, on_epoch)
        calls[-1]["after"] = {k: v.clone() for k, v in model.state_dict().items()}

    monkeypatch.setattr(T, "fit", spy)
    return calls


def _same(a, b):
    return all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("init", [False, True])
def test_step2_starts_from_step1_at_half_temperature_on_step1_predictions(stacks, base_model, tmp_path, monkeypatch, init):
    calls = _spy(monkeypatch)
    cfg = T.TrainConfig(epochs=1, epochs2=1, batch=32, max_samples_per_epoch=64, threads=1, patience=None)
    card = T.train(stacks, tmp_path / "m", cfg, init=base_model if init else None)
    s1, s2 = calls
    assert (s1["label"], s1["T"], s2["label"], s2["T"]) == ("step1", 1.0, "step2", 0.5)
    # step 2 begins from the step-1 model that training kept (also when fine-tuning: the paper's recipe)
    kept1 = s1["after"] if card["val"]["best_epoch"]["step1"] else s1["state"]
    assert _same(s2["state"], kept1)
    # step-2 pairs: from every step-1 pair (the set is small: none subsampled), the slice where the
    # final step-1 model leaves the lens -- not the start slice
    from hil_af.model.dataset import step2_pairs

    model = T.build("mcunet", N)
    model.load_state_dict(kept1)

    def predict_fn(x):
        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    expect = step2_pairs(s2["ps"], predict_fn, pairs=s1["pairs"])
    np.testing.assert_array_equal(s2["pairs"], expect)
    assert not np.array_equal(s2["pairs"][:, 1], s1["pairs"][:, 1])


def test_fine_tuning_defaults_hold_out_sweeps_and_report_the_change(stacks, base_model, tmp_path, capsys):
    out = tmp_path / "ft"
    rc = main(["train", "--init", str(base_model), "--stacks", str(stacks), "--out", str(out), "--threads", "1",
               "--epochs", "2", "--epochs2", "1"])
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert rc == 0
    card = json.loads((out / "card.json").read_text())
    st = card["settings"]
    assert (st["batch"], st["lr"], st["lr2"], st["patience"], st["val_frac"]) == (64, 2e-3, 8e-4, 5, 0.25)
    assert len(card["data"]["val_stacks"]) == 1  # a whole sweep of the 4 held out
    before, after = card["val"]["two_step_before"]["pe2"], card["val"]["two_step"]["pe2"]
    assert f"two-step MAE {before['mae']:.2f} -> {after['mae']:.2f}" in line
    assert card["val"]["kept"] in ("trained", "init")
    ctl = card["controller"]  # pe / pe2 thresholds fitted on the held-out sweep's pairs
    assert ctl["samples"] == card["data"]["val_pairs"] and 0.02 <= ctl["pe2"]["min_confidence"] <= 0.5
    if card["val"]["kept"] == "init":  # never worse than the init model on the held-out sweeps
        a = np.load(out / "weights.npz")
        b = np.load(base_model / "weights.npz")
        assert all(np.array_equal(a[k], b[k]) for k in b.files)
    else:
        assert after["mae"] <= before["mae"]


def test_fine_tuning_follows_the_init_models_encoding(stacks, tmp_path, capsys):
    abl = tmp_path / "abl"
    T.train(stacks, abl, T.TrainConfig(epochs=1, epochs2=1, batch=32, max_samples_per_epoch=64, threads=1, roi_pe=False))
    assert main(["train", "--init", str(abl), "--stacks", str(stacks), "--out", str(tmp_path / "ft"), "--threads", "1",
                 "--epochs", "1", "--epochs2", "1"]) == 0
    card = json.loads((tmp_path / "ft" / "card.json").read_text())
    assert card["encoding"]["roi_pe"] is False
    capsys.readouterr()


def test_size_flag_sets_the_input_and_fine_tuning_follows_the_init_models_size(tmp_path, capsys):
    """``--size`` trains a model of that input (card, ONNX input, PEPredictor); ``--init`` without
    ``--size`` keeps the init model's (a fine-tune of a 96 px model is a 96 px model)."""
    from hil_af.model.inference import PEPredictor

    d = tmp_path / "st"
    d.mkdir()
    for s in range(2):
        make_stack(d / f"s{s}.npz", "sim-default", seed=s, n_slices=N, grid=(1, 2), roi_size=96)
    args = ["--stacks", str(d), "--threads", "1", "--epochs", "1", "--epochs2", "1", "--samples-per-epoch", "32",
            "--arch", "mcunet-tiny"]
    assert main(["train", "--out", str(tmp_path / "m"), "--size", "96", *args]) == 0
    assert json.loads((tmp_path / "m" / "card.json").read_text())["encoding"]["size"] == 96
    pred = PEPredictor(tmp_path / "m")
    assert pred.encoding.size == 96 and pred.session.get_inputs()[0].shape[2:] == [96, 96]
    assert main(["train", "--init", str(tmp_path / "m"), "--out", str(tmp_path / "ft"), *args]) == 0
    assert json.loads((tmp_path / "ft" / "card.json").read_text())["encoding"]["size"] == 96
    capsys.readouterr()
    assert main(["train", "--out", str(tmp_path / "bad"), "--size", "8", *args]) == 2
    assert "--size must be 16..256 px, got 8" in capsys.readouterr().err
