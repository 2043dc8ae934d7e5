"""``hil_af.model.train.train`` end to end on three tiny numpy stacks (16 px patches): one plain run and
one fine-tuning run, about 3 s each, read back from what they write.

The paper's multi-step recipe is checked from the outputs: step 2 starts from the step-1 model
(with lr2 = 0 its weights are step 1's), step 1 is scored at T = 1 and step 2 at T = 0.5 on the
pairs where step 1 leaves the lens (the card's losses recomputed from the weights), the optimisers
get lr / lr2 and the weight decay (torch.optim.AdamW wrapped: a library boundary), and the card's
counts are those of the stacks (3 sweeps of 5 slices, 2 RoIs each, one sweep held out)."""

from __future__ import annotations

import json
import shutil
import types

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hil_af.errors import BadInput  # noqa: E402
from hil_af.model import recipe  # noqa: E402
from hil_af.model import train as T  # noqa: E402
from hil_af.model.dataset import find_stacks, fine_tune_split, load_patchset, split_by_stack, step2_pairs  # noqa: E402
from hil_af.model.encoding import EncodingConfig  # noqa: E402
from synthetic import make_stack  # noqa: E402

S, N = 16, 5


def _recorded_train(stacks, out, cfg, init=None):
    rec: dict = {"opts": []}

    class Recording(torch.optim.AdamW):
        def __init__(self, params, **kw):
            params = list(params)
            rec["opts"].append({"kw": kw, "start": [p.detach().clone() for p in params], "steps": 0})
            super().__init__(params, **kw)

        def step(self, closure=None):
            rec["opts"][-1]["steps"] += 1
            return super().step(closure)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim, "AdamW", Recording)
        card = T.train(stacks, out, cfg, init=init)
    return card, rec


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("flow")
    (d / "st").mkdir()
    for s in range(3):
        make_stack(d / "st" / f"s{s}.npz", n=N, gts=(1, 3), size=S, seed=s)
    cfg = T.TrainConfig(size=S, epochs=2, epochs2=1, batch=4, lr=4e-3, lr2=0.0, weight_decay=0.01, threads=1,
                        val_frac=0.67, jitter=2, noise=0.05, seed=0, max_step2_pairs=7)
    card, rec = _recorded_train(d / "st", d / "m", cfg)
    ps = load_patchset(find_stacks(d / "st"), EncodingConfig(size=S))
    tr, va, ids = split_by_stack(ps, 0.67, 0)  # round(0.67 * 3) = 2 sweeps held out (a fine-tuning split: 1)
    models = {}
    for step in ("step1", "step2"):
        models[step] = T.build("mcunet", N)
        T.load_weights(models[step], d / "m" / "weights.npz", step)
        models[step].eval()
    return types.SimpleNamespace(dir=d, out=d / "m", card=card, rec=rec, cfg=cfg, ps=ps, tr=tr, va=va, ids=ids, **models)


def _predict(model):
    def fn(x):
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()
    return fn


def test_the_card_counts_the_stacks_and_the_split(run):
    c = run.card
    on_disk = json.loads((run.out / "card.json").read_text())
    assert {k: v for k, v in on_disk.items() if k != "sha256"} == json.loads(json.dumps(c))
    for f in ("step1.onnx", "step2.onnx", "weights.npz"):
        assert (run.out / f).is_file()
    assert not (run.out / "flatfield.npz").exists() and "flatfield" not in c
    assert (c["arch"], c["n_slices"], c["encoding"]) == ("mcunet", N, EncodingConfig(size=S).to_dict())
    assert len(run.ids) == 2
    assert c["data"] == {"stacks_dir": str(run.dir / "st"), "stacks": 3, "rois_with_gt": 6, "train_rois": 2,
                         "val_rois": 4, "val_stacks": [f"s{i}.npz" for i in run.ids], "val_pairs": 20, "sources": [],
                         "step1_samples": 10, "step2_samples": 7, "slices_per_stack": [N]}  # step 2: max_step2_pairs
    st = c["settings"]
    assert (st["epochs"], st["epochs2"], st["lr"], st["lr2"], st["init"], st["size"]) == (2, 1, 4e-3, 0.0, None, S)
    assert "+-2 px" in st["augmentation"] and "U(0,0.05)" in st["augmentation"]
    assert c["onnx_check"]["batch"] == 20 and max(c["onnx_check"]["max_abs_logit_diff"].values()) < 1e-4
    assert set(c["timing_s"]) == {"step1", "step2", "total"}
    assert c["val"]["kept"] == "trained" and c["val"]["two_step_before"] is None
    assert [(h["step"], h["epoch"]) for h in c["val"]["history"]] == [("step1", 1), ("step1", 2), ("step2", 1)]
    assert c["val"]["best_epoch"]["step1"] in (1, 2) and c["val"]["best_epoch"]["step2"] == 1


def test_optimisers_get_lr_lr2_and_the_steps_of_each_step(run):
    opts = run.rec["opts"]
    assert [o["kw"] for o in opts] == [{"lr": 4e-3, "weight_decay": 0.01}, {"lr": 0.0, "weight_decay": 0.01}]
    assert [o["steps"] for o in opts] == [10 // 4 * 2, 7 // 4 * 1]


def test_step2_starts_from_the_step1_model(run):
    s1 = [p.detach() for p in run.step1.parameters()]
    start2 = run.rec["opts"][1]["start"]
    assert all(torch.equal(a, b) for a, b in zip(start2, s1))
    assert not all(torch.equal(a, b) for a, b in zip(run.rec["opts"][0]["start"], s1))  # step 1 did train
    # lr2 = 0: the weights stay step 1's (batch-norm running statistics still move in training mode)
    assert all(torch.equal(a, b) for a, b in zip(run.step2.parameters(), s1))


def test_steps_are_scored_at_their_temperatures_on_the_pairs_step1_leaves(run):
    val = run.card["val"]
    vp = run.va.all_pairs()
    assert val["step1"] == pytest.approx(T.evaluate_pairs(run.step1, run.va, vp, 1.0), rel=1e-5)
    best1 = val["best_epoch"]["step1"]
    assert val["history"][best1 - 1]["val_loss"] == pytest.approx(val["step1"]["loss"], rel=1e-5)
    vp2 = step2_pairs(run.va, _predict(run.step1), pairs=vp)
    assert not np.array_equal(vp2, vp)
    want2 = T.evaluate_pairs(run.step2, run.va, vp2, 0.5)
    assert val["step2"] == pytest.approx(want2, rel=1e-5)
    assert val["history"][-1]["val_loss"] == pytest.approx(want2["loss"], rel=1e-5)
    assert want2["loss"] != pytest.approx(T.evaluate_pairs(run.step2, run.va, vp2, 1.0)["loss"], rel=1e-3)
    assert val["two_step"] == {"step1": recipe.two_step(run.step1, None, run.va, vp),
                               "pe2": recipe.two_step(run.step1, run.step2, run.va, vp)}
    assert run.card["controller"] == json.loads(json.dumps(recipe.confidence_thresholds(run.step1, run.step2, run.va, vp)))


def test_the_onnx_files_are_the_two_steps(run):
    import onnxruntime as ort

    x, _ = run.va.batch(run.va.all_pairs())
    x[:, 4] = 0.25  # the same views at another lens position: step 1 and step 2 differ here only by their weights
    for step, model in (("step1", run.step1), ("step2", run.step2)):
        sess = ort.InferenceSession(str(run.out / f"{step}.onnx"), providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"x": x})[0], _predict(model)(x), atol=1e-4)


def test_init_must_match_the_arch_and_the_patch_size(run, tmp_path):
    for key, value, msg in (("arch", "mobilenetv2", r"is a 'mobilenetv2' model, training 'mcunet'"),
                            ("size", 32, r"expects 32 px patches, training 16")):
        bad = tmp_path / key
        shutil.copytree(run.out, bad)
        card = json.loads((bad / "card.json").read_text())
        if key == "arch":
            card["arch"] = value
        else:
            card["encoding"]["size"] = value
        (bad / "card.json").write_text(json.dumps(card))
        with pytest.raises(BadInput, match=msg):
            T.train(run.dir / "st", tmp_path / "out", run.cfg, init=bad)


def test_fine_tuning_starts_from_the_init_model_on_whole_held_out_sweeps(run, tmp_path):
    cfg = T.TrainConfig(size=S, epochs=1, epochs2=1, batch=8, lr=1e-3, lr2=1e-3, threads=1, val_frac=0.0, seed=2,
                        max_val_pairs=6)
    card, rec = _recorded_train(run.dir / "st", tmp_path / "ft", cfg, init=run.out)
    _, va, ids = fine_tune_split(run.ps, 0.0, 2)  # 3 sweeps, val_frac 0: still one held out (split_by_stack: none)
    assert card["data"]["val_stacks"] == [f"s{ids[0]}.npz"] and card["settings"]["init"] == str(run.out)
    init1 = [p.detach() for p in run.step1.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(rec["opts"][0]["start"], init1))  # step 1 starts from the init model
    assert card["data"]["val_pairs"] == card["controller"]["samples"] == 6  # max_val_pairs of the 10
    before = card["val"]["two_step_before"]
    assert before["step1"]["samples"] == before["pe2"]["samples"] == 6
    with np.load(tmp_path / "ft" / "weights.npz", allow_pickle=False) as f, \
            np.load(run.out / "weights.npz", allow_pickle=False) as b:
        same = all(np.array_equal(f[k], b[k]) for k in b.files)
    if card["val"]["kept"] == "init":  # not better on the held-out sweep: the init model, unchanged
        assert same and card["val"]["two_step"]["pe2"]["mae"] > card["val"]["two_step_before"]["pe2"]["mae"]
    else:
        assert card["val"]["kept"] == "trained" and not same
        assert card["val"]["two_step"]["pe2"]["mae"] <= card["val"]["two_step_before"]["pe2"]["mae"]


def test_without_held_out_sweeps_training_writes_a_model_without_validation(run, tmp_path):
    cfg = T.TrainConfig(size=S, epochs=1, epochs2=1, batch=8, threads=1, val_frac=0.0, seed=1)
    card, rec = _recorded_train(run.dir / "st", tmp_path / "nv", cfg)
    assert card["data"]["val_rois"] == 0 and card["data"]["val_stacks"] == [] and card["data"]["val_pairs"] == 0
    assert card["data"]["train_rois"] == 6 and card["data"]["step2_samples"] == 30
    v = card["val"]
    assert (v["step1"], v["step2"], v["two_step"], v["two_step_before"], v["kept"]) == (None, None, None, None, "trained")
    assert v["best_epoch"] == {"step1": 0, "step2": 0} and not any(k.startswith("val_") for h in v["history"] for k in h)
    assert "controller" not in card and card["onnx_check"]["batch"] == 30  # checked on training pairs
    assert [o["steps"] for o in rec["opts"]] == [30 // 8, 30 // 8]


def test_fine_tuning_on_one_sweep_has_nothing_to_compare_and_keeps_the_trained_model(run, tmp_path):
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(run.dir / "st" / "s0.npz", one / "s0.npz")
    cfg = T.TrainConfig(size=S, epochs=1, epochs2=1, batch=8, threads=1, val_frac=0.25, seed=0)
    card = T.train(one, tmp_path / "ft1", cfg, init=run.out)
    assert card["data"]["val_stacks"] == [] and card["settings"]["init"] == str(run.out)
    assert card["val"]["two_step_before"] is None and card["val"]["kept"] == "trained"
