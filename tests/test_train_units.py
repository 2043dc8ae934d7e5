"""hil_af.model.train's small rules on tiny inputs, seconds in all (the mutation group's fast list).

The learning-rate schedule, the step-2 epoch default, the npz weights, ``evaluate_pairs`` and
``fit`` with a stand-in network whose logits are one learnable bias vector (so the gradient of the
ordinal soft-label CE is known by hand: softmax(b) - q, q the soft target of docs/model.md), and the
ONNX export.  torch.optim.AdamW is wrapped (a library boundary) to see the learning rate and
gradient of every optimiser step.  Expected values come from the definitions: the one-cycle
schedule (linear warm-up over total // 20 steps, at least 1, then a cosine from the peak to 2 % of
it), the soft target ``exp(-(g - k)^2 / T)`` normalised (hil_af.model.loss).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from torch import nn  # noqa: E402

from hil_af.errors import BadInput, FormatError  # noqa: E402
from hil_af.model import train as T  # noqa: E402
from hil_af.model.dataset import load_patchset  # noqa: E402
from hil_af.model.encoding import EncodingConfig  # noqa: E402
from synthetic import make_stack  # noqa: E402

S = 8  # patch size: the encoding's smallest


def _patchset(tmp_path, n=5, gts=(1, 3), n_bins=None, name="s"):
    path = make_stack(tmp_path / f"{name}.npz", n=n, gts=gts, size=S, seed=1)
    return load_patchset([path], EncodingConfig(size=S), n_bins=n_bins)


def _soft(g: float, n: int, temp: float) -> np.ndarray:
    q = np.exp(-((g - np.arange(n)) ** 2) / temp)
    return q / q.sum()


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, dtype=np.float64)
    return z - z.max() - np.log(np.exp(z - z.max()).sum())


class AtLens(nn.Module):
    """Logits ``c`` at bin ``k`` (the slice the lens is at, read from the lens-PE plane) and 0 elsewhere."""

    def __init__(self, n_bins: int, n_slices: int, c: float = 2.0):
        super().__init__()
        self.n_bins, self.n_slices, self.c = n_bins, n_slices, c
        self.modes: list[bool] = []

    def forward(self, x):
        self.modes.append(self.training)
        k = torch.round(x[:, 4].mean(dim=(1, 2)) * (self.n_slices - 1)).long()
        out = torch.zeros(x.shape[0], self.n_bins)
        out[torch.arange(x.shape[0]), k] = self.c
        return out


class BiasNet(nn.Module):
    """Logits = one learnable vector b, the same for every input; records what each call saw."""

    def __init__(self, n: int):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(n))
        self.calls: list[dict] = []

    def forward(self, x):
        self.calls.append({"training": self.training, "x": x.detach().clone(), "b": self.b.detach().clone()})
        return x[:, 0, 0, 0:1] * 0.0 + self.b[None, :]


@pytest.fixture
def adamw(monkeypatch):
    """AdamW that records its settings and, per step, the learning rate and the gradient it applies."""
    rec: dict = {"init": [], "steps": []}

    class Recording(torch.optim.AdamW):
        def __init__(self, params, **kw):
            rec["init"].append(kw)
            super().__init__(params, **kw)

        def step(self, closure=None):
            rec["steps"].append({"lr": [g["lr"] for g in self.param_groups],
                                 "grad": [p.grad.detach().clone() for g in self.param_groups for p in g["params"]]})
            return super().step(closure)

    monkeypatch.setattr(torch.optim, "AdamW", Recording)
    return rec


# --------------------------------------------------------------------------- schedule and config


def test_lr_schedule_warms_up_linearly_then_falls_as_a_cosine_to_two_percent():
    peak = 0.4
    # total 105: warm-up 105 // 20 = 5 steps reaching the peak at step 4
    assert [T._lr_at(s, 105, peak) for s in range(5)] == pytest.approx([0.08, 0.16, 0.24, 0.32, 0.4])
    assert T._lr_at(5, 105, peak) == pytest.approx(peak)  # the cosine starts at the peak
    assert T._lr_at(55, 105, peak) == pytest.approx(peak * 0.51)  # half-way: 0.02 + 0.98 / 2
    assert T._lr_at(105, 105, peak) == pytest.approx(peak * 0.02)
    # 4 steps: a warm-up of one step (at least 1), then t = 0, 1/3, 2/3 of the cosine
    assert [T._lr_at(s, 4, 1.0) for s in range(4)] == pytest.approx([1.0, 1.0, 0.755, 0.265])
    # 40 steps: a warm-up of 40 // 20 = 2 steps
    assert [T._lr_at(s, 40, 1.0) for s in range(3)] == pytest.approx([0.5, 1.0, 1.0])
    # one step in all: the warm-up's single step at the peak
    assert T._lr_at(0, 1, 0.3) == pytest.approx(0.3)


def test_step2_epochs_default_to_half_of_step1_and_at_least_one():
    assert [T.TrainConfig(epochs=e).n_epochs2 for e in (8, 9, 3, 1)] == [4, 4, 1, 1]
    assert T.TrainConfig(epochs=8, epochs2=3).n_epochs2 == 3
    assert T.TrainConfig(epochs=8, epochs2=0).n_epochs2 == 0  # given, even 0, it is taken as given
    cfg = T.TrainConfig()
    assert (cfg.T1, cfg.T2) == (1.0, 0.5)  # Choi et al.: step 1 at T = 1, step 2 at T = 0.5


# --------------------------------------------------------------------------- weights


def test_weights_round_trip_per_step_and_mismatches_are_named(tmp_path):
    a, b = BiasNet(3), BiasNet(3)
    with torch.no_grad():
        a.b.copy_(torch.tensor([1.0, 2.0, 3.0]))
        b.b.copy_(torch.tensor([-1.0, 0.5, 4.0]))
    T.save_weights(tmp_path / "w.npz", {"step1": a, "step2": b})
    with np.load(tmp_path / "w.npz", allow_pickle=False) as z:
        assert sorted(z.files) == ["step1/b", "step2/b"]
        np.testing.assert_array_equal(z["step2/b"], [-1.0, 0.5, 4.0])
    for step, want in (("step1", [1.0, 2.0, 3.0]), ("step2", [-1.0, 0.5, 4.0])):
        m = BiasNet(3)
        T.load_weights(m, tmp_path / "w.npz", step)
        np.testing.assert_array_equal(m.b.detach().numpy(), want)
    with pytest.raises(FormatError, match=r"\(step1\) does not fit the model: missing \[\], unexpected \[\], "
                                          r"wrong shape \['b'\]"):
        T.load_weights(BiasNet(4), tmp_path / "w.npz", "step1")
    other = nn.Linear(2, 1)
    with pytest.raises(FormatError, match=r"missing \['bias', 'weight'\], unexpected \['b'\], wrong shape \[\]"):
        T.load_weights(other, tmp_path / "w.npz", "step2")
    with pytest.raises(BadInput, match="weights file .*nothing.npz is missing"):
        T.load_weights(BiasNet(3), tmp_path / "nothing.npz", "step1")


# --------------------------------------------------------------------------- evaluate_pairs


def _expected_metrics(ps, pairs, n_bins, c, temp):
    """Per pair: the stand-in's argmax is its slice k; labels from the patch set; loss from the definition."""
    loss, err = [], []
    for r, k in pairs:
        y = float(ps.label(np.array([r]))[0])
        z = np.zeros(n_bins)
        z[k] = c
        loss.append(-(_soft(y, n_bins, temp) * _log_softmax(z)).sum())
        err.append(abs(k - y))
    err = np.array(err)
    return {"loss": float(np.mean(loss)), "exact": float(np.mean(err < 0.5)), "le1": float(np.mean(err <= 1.0)),
            "mae": float(err.mean())}


def test_evaluate_pairs_averages_over_pairs_in_eval_mode(tmp_path):
    ps = _patchset(tmp_path)  # 5 slices, gt 1 and 3: labels 1 and 3
    pairs = ps.all_pairs()
    m = AtLens(5, 5)
    m.train()
    got = T.evaluate_pairs(m, ps, pairs, 0.5, batch=3)  # batches of 3, 3, 3, 1: weighted by their sizes
    # errors |k - g|: 1 0 1 2 3 and 3 2 1 0 1 -> exact 2/10, <= 1: 6/10, mean 14/10
    assert (got["exact"], got["le1"], got["mae"]) == pytest.approx((0.2, 0.6, 1.4))
    assert got["loss"] == pytest.approx(_expected_metrics(ps, pairs, 5, 2.0, 0.5)["loss"], rel=1e-5)
    # over every slice of a RoI the mean loss does not depend on T; over some slices it does
    some = pairs[[0, 1, 5]]
    got_some = T.evaluate_pairs(m, ps, some, 0.5)["loss"]
    assert got_some == pytest.approx(_expected_metrics(ps, some, 5, 2.0, 0.5)["loss"], rel=1e-5)
    assert got_some != pytest.approx(_expected_metrics(ps, some, 5, 2.0, 1.0)["loss"], rel=1e-3)
    assert m.modes and not any(m.modes)
    # fractional labels (a 5-slice sweep in 7 bins: gt 1 -> 1.5, gt 3 -> 4.5): an error of exactly 0.5 is not exact
    ps7 = _patchset(tmp_path, n_bins=7, name="s7")
    got7 = T.evaluate_pairs(AtLens(7, 5), ps7, pairs, 1.0, batch=4)
    # errors 1.5 .5 .5 1.5 2.5 and 4.5 3.5 2.5 1.5 .5
    assert (got7["exact"], got7["le1"], got7["mae"]) == pytest.approx((0.0, 0.3, 1.9))
    assert got7["loss"] == pytest.approx(_expected_metrics(ps7, pairs, 7, 2.0, 1.0)["loss"], rel=1e-5)
    empty = T.evaluate_pairs(AtLens(5, 5), ps, pairs[:0], 1.0)
    assert empty == {"loss": 0.0, "exact": 0.0, "le1": 0.0, "mae": 0.0}


# --------------------------------------------------------------------------- fit


def _fit(tmp_path, adamw, epochs=2, temp=0.5, on_epoch=None, with_val=True, **cfg_kw):
    ps = _patchset(tmp_path, gts=(2, 2))  # two RoIs, both in focus at slice 2: every label is 2
    pairs = ps.all_pairs()  # 10 pairs
    kw = dict(batch=4, noise=0.0, jitter=0, weight_decay=0.125)
    kw.update(cfg_kw)
    cfg = T.TrainConfig(**kw)
    m = BiasNet(5)
    log: list = []
    T.fit(m, ps, pairs, ps if with_val else None, pairs if with_val else None, epochs, 0.2, temp, cfg,
          np.random.default_rng(3), "stepX", log, on_epoch=on_epoch)
    return ps, pairs, m, log


def _pair_of(x, ps):
    """(roi row, slice) a batch row encodes: the RoI from its RoI-PE x plane, the slice from lens-PE."""
    k = np.rint(x[:, 4].mean(axis=(1, 2)) * 4).astype(int)
    ref, _ = ps.batch(np.array([[0, 0], [1, 0]]))
    r = np.abs(x[:, 2, 0, 0][:, None] - ref[:, 2, 0, 0][None, :]).argmin(axis=1)
    return list(zip(r.tolist(), k.tolist()))


def test_fit_steps_follow_the_schedule_with_the_soft_label_gradient(tmp_path, adamw):
    ps, pairs, m, log = _fit(tmp_path, adamw)
    assert adamw["init"] == [{"lr": 0.2, "weight_decay": 0.125}]
    steps = adamw["steps"]
    assert len(steps) == 4  # 10 pairs // batch 4 = 2 steps an epoch, 2 epochs
    assert [s["lr"][0] for s in steps] == pytest.approx([0.2, 0.2, 0.2 * 0.755, 0.2 * 0.265])
    train_calls = [c for c in m.calls if c["training"]]
    assert len(train_calls) == 4 and all(c["x"].shape[0] == 4 for c in train_calls)
    q = _soft(2.0, 5, 0.5)  # T = 0.5, the value fit was given
    losses = []
    for c, s in zip(train_calls, steps):
        p = torch.softmax(c["b"].double(), 0).numpy()
        np.testing.assert_allclose(s["grad"][0].numpy(), p - q, atol=1e-6)  # this batch's gradient alone
        losses.append(-(q * _log_softmax(c["b"].numpy())).sum())
    # each epoch draws distinct pairs (a permutation), 8 of the 10
    for e in range(2):
        drawn = _pair_of(train_calls[2 * e]["x"].numpy(), ps) + _pair_of(train_calls[2 * e + 1]["x"].numpy(), ps)
        assert len(set(drawn)) == 8 and set(drawn) <= {tuple(p) for p in pairs.tolist()}
    # un-augmented (noise 0, jitter 0): the batches are the plain encoding of those pairs
    x0 = train_calls[0]["x"].numpy()
    np.testing.assert_array_equal(x0, ps.batch(np.array(_pair_of(x0, ps)))[0])
    assert [r["step"] for r in log] == ["stepX", "stepX"] and [r["epoch"] for r in log] == [1, 2]
    assert [r["train_loss"] for r in log] == pytest.approx([np.mean(losses[:2]), np.mean(losses[2:])], rel=1e-5)
    assert all(isinstance(r["seconds"], float) and r["seconds"] >= 0 for r in log)
    val = T.evaluate_pairs(m, ps, pairs, 0.5)  # the validation of the last epoch, at fit's T
    assert {k: log[-1][f"val_{k}"] for k in val} == pytest.approx(val)
    # the model is left in training mode only while training: the validation ran in eval mode
    assert [c["training"] for c in m.calls][:2] == [True, True] and not m.calls[2]["training"]


def test_fit_without_validation_logs_no_val_metrics_and_caps_samples(tmp_path, adamw):
    _, _, m, log = _fit(tmp_path, adamw, epochs=1, with_val=False, max_samples_per_epoch=5)
    assert len(adamw["steps"]) == 1  # min(10, 5) // 4 = 1 step
    assert len(log) == 1 and not any(k.startswith("val_") for k in log[0])
    assert all(c["training"] for c in m.calls)


def test_fit_with_fewer_pairs_than_a_batch_takes_one_smaller_step(tmp_path, adamw):
    _, _, m, log = _fit(tmp_path, adamw, epochs=1, with_val=False, batch=16)
    assert len(adamw["steps"]) == 1 and m.calls[0]["x"].shape[0] == 10


def test_fit_stops_when_the_epoch_hook_says_so(tmp_path, adamw):
    seen = []

    def hook(epoch):
        seen.append(epoch)
        return epoch == 2

    _, _, _, log = _fit(tmp_path, adamw, epochs=5, on_epoch=hook)
    assert seen == [1, 2] and len(log) == 2 and len(adamw["steps"]) == 4
    # the schedule spans all 5 planned epochs (10 steps), not the 2 run: still in the cosine's first part
    assert [s["lr"][0] for s in adamw["steps"]] == pytest.approx(
        [0.2 * T._lr_at(i, 10, 1.0) for i in range(4)])
    assert adamw["steps"][2]["lr"][0] == pytest.approx(0.2 * (0.02 + 0.49 * (1 + math.cos(math.pi / 9))))


def test_fit_augments_with_the_configs_noise_and_jitter(tmp_path, adamw):
    ps, _, m, _ = _fit(tmp_path, adamw, epochs=1, with_val=False, noise=0.5, jitter=3)
    x = np.concatenate([c["x"].numpy() for c in m.calls])
    k = np.rint(x[:, 4].mean(axis=(1, 2)) * 4).astype(int)
    ref, _ = ps.batch(np.stack([np.zeros_like(k), k], axis=1))
    assert not np.allclose(x[:, :2], ref[:, :2], atol=1e-3)  # noise on the views
    shift_px = (x[:, 2, 0, 0] - ref[:, 2, 0, 0]) * ps.sensor_hw[0, 1] / 2
    shifts = {int(v) for v in np.rint(shift_px)}
    # rows of RoI 1 lie 16 px from RoI 0: each row is some RoI shifted by at most 3 px, and the jitter moved some
    assert all(min(abs(v), abs(v - 16)) <= 3 for v in shifts) and shifts - {0, 16}


# --------------------------------------------------------------------------- export


def test_onnx_export_has_a_dynamic_batch_and_the_check_measures_the_difference(tmp_path):
    m = BiasNet(3)
    with torch.no_grad():
        m.b.copy_(torch.tensor([0.5, -1.0, 2.0]))
    m.train()
    T.export_onnx(m, tmp_path / "m.onnx", 8)
    assert not m.training
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"]  # written via a temporary, renamed
    import onnxruntime as ort

    sess = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["x"] and [o.name for o in sess.get_outputs()] == ["logits"]
    x = np.ones((3, 5, 8, 8), np.float32)
    np.testing.assert_array_equal(sess.run(None, {"x": x})[0], np.tile([0.5, -1.0, 2.0], (3, 1)))
    assert T.onnx_max_abs_diff(m, tmp_path / "m.onnx", x) == 0.0
    with torch.no_grad():
        m.b[1] += 0.25
        m.b[2] -= 0.125
    m.train()
    assert T.onnx_max_abs_diff(m, tmp_path / "m.onnx", x) == 0.25
    assert not m.training


class Params(nn.Module):
    """Named 1-d parameters of one length, to make weights files that fit or not."""

    def __init__(self, names, length=2):
        super().__init__()
        for n in names:
            self.register_parameter(n, nn.Parameter(torch.zeros(length)))


def test_weight_mismatches_are_refused_alone_and_listed_three_at_most(tmp_path):
    T.save_weights(tmp_path / "w.npz", {"step1": Params(["p1", "p2", "p3", "p4"])})
    cases = ((Params(["p1", "p2", "p3", "p4", "z"]), r"missing \['z'\], unexpected \[\], wrong shape \[\]"),
             (Params(["p1", "p2", "p3"]), r"missing \[\], unexpected \['p4'\], wrong shape \[\]"),
             (Params(["q1", "q2", "q3", "q4"]), r"missing \['q1', 'q2', 'q3'\], unexpected \['p1', 'p2', 'p3'\], "
                                                r"wrong shape \[\]$"),
             (Params(["p1", "p2", "p3", "p4"], 3), r"missing \[\], unexpected \[\], wrong shape \['p1', 'p2', 'p3'\]$"))
    for model, msg in cases:
        with pytest.raises(FormatError, match=msg):
            T.load_weights(model, tmp_path / "w.npz", "step1")
