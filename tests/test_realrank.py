"""The real-capture ranking stage (hil_af.model.realrank, ``hil-af train --rank-scenes``) on small
synthetic scenes written as frame files: its torch readout against the shipped onnxruntime readout,
its loss, its early stopping on held-out scenes, and its place in the paper's recipe (step 2 starts
from the ranked step 1)."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hil_af.cli import main  # noqa: E402
from hil_af.errors import BadInput  # noqa: E402
from hil_af.frames import DualPixelFrame  # noqa: E402
from hil_af.model import realrank as rr  # noqa: E402
from hil_af.model import train as T  # noqa: E402
from hil_af.model.defocus import relative_defocus  # noqa: E402
from hil_af.model.inference import PEPredictor  # noqa: E402
from hil_af.stacks import save_frame  # noqa: E402
from test_train_recipe import N, base_model, stacks  # noqa: E402,F401  (the same 9-slice sweeps and base model)

CELL = 112  # px: hil_af.sim.realcheck.graded_cells' default cell, the stage's


def write_scene(folder, name, seed, rows=3, cols=4):
    """A frame of rows x cols cells of 112 px: a smooth random texture whose right view is shifted by
    a per-cell disparity of 0.25 px per ground-truth step (gt = 20, 40, .. per cell, shuffled)."""
    rng = np.random.default_rng(seed)
    H, W = rows * CELL, cols * CELL
    tex = rng.standard_normal((H + 32, W + 32))
    k = np.exp(-0.5 * (np.arange(-6, 7) / 2.0) ** 2)
    tex = np.apply_along_axis(lambda r: np.convolve(r, k, "same"), 1, tex)
    tex = np.apply_along_axis(lambda c: np.convolve(c, k, "same"), 0, tex)
    tex = 2000 + 400 * tex / tex.std()
    gt = np.zeros((H, W), np.uint8)
    left, right = np.empty((H, W)), np.empty((H, W))
    steps = rng.permutation(rows * cols) + 1
    for i in range(rows):
        for j in range(cols):
            y, x = i * CELL, j * CELL
            gt[y:y + CELL, x:x + CELL] = 20 * steps[i * cols + j]
            d = 0.25 * steps[i * cols + j]
            xs = np.arange(x, x + CELL) + 16.0
            for r in range(CELL):
                row = tex[y + r + 16]
                left[y + r, x:x + CELL] = np.interp(xs + d / 2, np.arange(row.size), row)
                right[y + r, x:x + CELL] = np.interp(xs - d / 2, np.arange(row.size), row)
    fr = DualPixelFrame(left=left.astype(np.float32), right=right.astype(np.float32), sensor_hw=(H + 100, W + 200),
                        origin=(50, 100), white_level=16383.0)
    save_frame(folder / f"{name}.npz", fr, black_level=0, dtype="float32")
    np.savez(folder / f"{name}_gt.npz", defocus=gt)


@pytest.fixture(scope="module")
def scenes(tmp_path_factory):
    d = tmp_path_factory.mktemp("realscenes")
    for i, name in enumerate(("101", "102", "103")):
        write_scene(d, name, seed=i)
    return d


def _step1(model_dir):
    m = T.build("mcunet", N)
    T.load_weights(m, model_dir / T.WEIGHTS, "step1")
    return m


def test_scenes_keep_usable_cells_with_their_median_ground_truth(scenes):
    sc = rr.load_rank_scenes(scenes, ["101", "102"])
    assert [s.name for s in sc] == ["101", "102"]
    for s in sc:
        assert len(s.rois) == 12 and set(np.unique(s.gt)) == set(20.0 * np.arange(1, 13))
        assert np.all(s.rois[:, 2:] == CELL)
    assert rr.load_rank_scenes(scenes, ["101"], min_cells=13) == []  # too few cells to rank: dropped
    with pytest.raises(BadInput, match="no 999.npz"):
        rr.load_rank_scenes(scenes, ["999"])


def test_torch_readout_is_the_onnxruntime_readout_the_figure_reports(scenes, base_model):
    """The stage selects on ``scene_readout``; the README figure is ``relative_defocus`` through
    onnxruntime (benchmarks/realdp_ranking.py).  They must be the same number."""
    s = rr.load_rank_scenes(scenes, ["101"])[0]
    mine = rr.scene_readout(_step1(base_model), s, N, PEPredictor(base_model).encoding)
    theirs, _ = relative_defocus(PEPredictor(base_model), s.frame, s.rois)
    np.testing.assert_allclose(mine, theirs, atol=2e-4)
    assert np.ptp(theirs) > 0


def test_pair_loss_orders_by_ground_truth_and_skips_close_pairs():
    g = np.array([10.0, 30.0, 35.0])
    good = torch.tensor([0.0, 2.0, 4.0])
    bad = torch.tensor([4.0, 2.0, 0.0])
    lg, lb = rr.pair_loss(good, g, 8.0, 1.0), rr.pair_loss(bad, g, 8.0, 1.0)
    assert float(lg) < float(lb)
    # pairs (1,0) and (2,0) only (35 - 30 < 8): softplus(-2), softplus(-4) for `good`
    want = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(-4.0))) / 2
    assert float(lg) == pytest.approx(want, rel=1e-6)
    assert float(rr.pair_loss(good, g, 8.0, 2.0)) == pytest.approx((np.log1p(np.exp(-1.0)) + np.log1p(np.exp(-2.0))) / 2, rel=1e-6)
    assert rr.pair_loss(good, np.array([1.0, 2.0, 3.0]), 8.0, 1.0) is None


def test_the_stage_ends_on_its_best_held_out_check(scenes, base_model, monkeypatch):
    seen = []
    real = rr.ranking

    def spy(model, sc, n, cfg):
        out = real(model, sc, n, cfg)
        seen.append((float(np.mean(out)), {k: v.clone() for k, v in model.state_dict().items()}))
        return out

    monkeypatch.setattr(rr, "ranking", spy)
    model = _step1(base_model)
    enc = PEPredictor(base_model).encoding
    tr, va = rr.load_rank_scenes(scenes, ["101", "102"]), rr.load_rank_scenes(scenes, ["103"])
    res = rr.rank_finetune(model, tr, va, N, enc, rr.RankConfig(steps=6, every=2, lr=3e-3, cells=6, side=0.5),
                           log=lambda m: None)
    vals = [v for v, _ in seen]
    assert len(vals) == 4 and res["best_step"] == 2 * int(np.argmax(vals))
    assert res["best_val_rank"] == pytest.approx(max(vals), abs=1e-4)
    best = seen[int(np.argmax(vals))][1]
    assert all(torch.equal(model.state_dict()[k], best[k]) for k in best)
    assert len({round(v, 6) for v in vals}) > 1  # the steps did change the model
    with pytest.raises(BadInput, match="at least one training and one validation"):
        rr.rank_finetune(model, tr, [], N, enc, rr.RankConfig(steps=1))


def test_train_runs_the_stage_after_step1_and_step2_starts_from_it(scenes, stacks, base_model, tmp_path, monkeypatch, capsys):
    states = {}
    real_rank, real_fit = rr.rank_finetune, T.fit

    def rank_spy(model, *a, **k):
        out = real_rank(model, *a, **k)
        states["ranked"] = {kk: v.clone() for kk, v in model.state_dict().items()}
        return out

    def fit_spy(model, *a, **k):
        if a[9] == "step2":  # fit(model, ps, pairs, val, val_pairs, epochs, lr, T, cfg, rng, label, log)
            states["step2_start"] = {kk: v.clone() for kk, v in model.state_dict().items()}
            states["T2"] = a[6]
        return real_fit(model, *a, **k)

    monkeypatch.setattr(rr, "rank_finetune", rank_spy)
    monkeypatch.setattr(T, "fit", fit_spy)
    out = tmp_path / "m"
    args = ["train", "--init", str(base_model), "--stacks", str(stacks), "--out", str(out), "--epochs", "0", "--epochs2", "1",
            "--rank-scenes", str(scenes), "--rank-train", "101,102", "--rank-val", "103", "--rank-steps", "4", "--rank-lr", "3e-3"]
    assert main(args) == 0
    line = capsys.readouterr().out
    assert "real-capture ranking on held-out scenes 103: mean |Spearman|" in line
    card = json.loads((out / "card.json").read_text())
    rank = card["val"]["rank"]
    assert rank["train_scenes"] == ["101", "102"] and rank["val_scenes"] == ["103"]
    assert rank["settings"]["steps"] == 4 and rank["settings"]["lr"] == 3e-3
    assert all(torch.equal(states["step2_start"][k], states["ranked"][k]) for k in states["ranked"])
    assert states["T2"] == 0.5
    if rank["best_step"] > 0:  # the ranked step 1 is what ships (not undone by the sim sweeps' check)
        shipped = _step1(out)
        assert all(torch.equal(shipped.state_dict()[k], states["ranked"][k]) for k in states["ranked"])


@pytest.mark.parametrize("extra, msg", [
    (["--rank-train", "101"], "need --rank-scenes"),
    (["--rank-scenes", "S", "--rank-train", "101,103", "--rank-val", "103"], "share scenes 103"),
    (["--rank-scenes", "S", "--rank-steps", "0"], "--rank-steps must be >= 1"),
    (["--rank-scenes", "S", "--rank-train", "101", "--rank-val", "999"], "no 999.npz"),
])
def test_bad_rank_options_are_one_line_errors(scenes, stacks, base_model, tmp_path, capsys, extra, msg):
    extra = [str(scenes) if e == "S" else e for e in extra]
    args = ["train", "--init", str(base_model), "--stacks", str(stacks), "--out", str(tmp_path / "m"), "--epochs", "0"] + extra
    assert main(args) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1


def test_epochs_zero_needs_an_init_model(stacks, tmp_path, capsys):
    assert main(["train", "--stacks", str(stacks), "--out", str(tmp_path / "m"), "--epochs", "0"]) == 2
    assert "--epochs must be >= 1" in capsys.readouterr().err


def test_ranking_term_asks_lens_pe_zero_and_the_side_term_the_middle(scenes, base_model, monkeypatch):
    """The recipe's two asks: the ranking loss is on the far-end estimate (lens slice 0, the readout of
    a cell whose focus lies above the lens), the side hinge on the mid-range ask; both on the same
    jittered windows of the same cells."""
    calls = []
    real = rr.encode_cells

    def spy(scene, idx, k, n, cfg, shift=None):
        calls.append((scene.name, tuple(idx), k, None if shift is None else shift.tolist()))
        return real(scene, idx, k, n, cfg, shift)

    monkeypatch.setattr(rr, "encode_cells", spy)
    monkeypatch.setattr(rr, "ranking", lambda *a: [0.5])  # the validation readout is not under test here
    tr = rr.load_rank_scenes(scenes, ["101", "102"])
    rr.rank_finetune(_step1(base_model), tr, tr[:1], N, PEPredictor(base_model).encoding,
                     rr.RankConfig(steps=1, cells=5, side=1.0), log=lambda m: None)
    assert [c[2] for c in calls] == [0, (N - 1) // 2, 0, (N - 1) // 2]
    assert calls[0][0] == calls[1][0] and calls[0][1] == calls[1][1] and calls[0][3] == calls[1][3]
    assert len(calls[0][1]) == 5 and calls[0][3] is not None and np.abs(calls[0][3]).max() <= 8


def test_frozen_batchnorm_keeps_its_statistics_in_training(base_model):
    x = torch.randn(8, 5, 64, 64) * 3 + 1

    def stats(freeze):
        m = _step1(base_model)
        rr._train_mode(m, freeze)
        assert m.training  # the rest of the network trains (dropout etc.)
        before = [b.clone() for n, b in m.named_buffers() if n.endswith("running_mean")]
        m(x)
        return before, [b for n, b in m.named_buffers() if n.endswith("running_mean")]

    before, after = stats(True)
    assert before and all(torch.equal(a, b) for a, b in zip(before, after))
    before, after = stats(False)
    assert not all(torch.equal(a, b) for a, b in zip(before, after))


def test_a_later_worse_check_does_not_replace_the_best(scenes, base_model, monkeypatch):
    """Held-out figures scripted 0.5, 0.9, 0.3, 0.2 (the real readout is the test above): the model
    ends with the weights it had at the second check, not the last."""
    script, states = iter([0.5, 0.9, 0.3, 0.2]), []

    def scripted(model, sc, n, cfg):
        states.append({k: v.clone() for k, v in model.state_dict().items()})
        return [next(script)]

    monkeypatch.setattr(rr, "ranking", scripted)
    model = _step1(base_model)
    tr = rr.load_rank_scenes(scenes, ["101"])
    res = rr.rank_finetune(model, tr, tr, N, PEPredictor(base_model).encoding,
                           rr.RankConfig(steps=3, every=1, lr=3e-3, cells=6), log=lambda m: None)
    assert res["best_step"] == 1 and res["best_val_rank"] == 0.9
    assert [h["val_rank"] for h in res["history"]] == [0.5, 0.9, 0.3, 0.2]
    assert all(torch.equal(model.state_dict()[k], states[1][k]) for k in states[1])
    assert not all(torch.equal(states[1][k], states[3][k]) for k in states[1])
