"""The pe / pe2 confidence threshold fitted on a model's held-out sweeps at training (card ``controller``)
and used by the controller (hil_af.model.recipe.confidence_thresholds, controller.methods.pe_min_confidence)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from hil_af.calibration.thresholds import choose_min_confidence
from hil_af.cli import main
from hil_af.controller.methods import MethodConfig, pe_min_confidence

from synthetic import make_stack


def test_choose_min_confidence_cuts_below_the_gross_errors_and_keeps_the_rest():
    rng = np.random.default_rng(0)
    good = rng.random(800) < 0.7
    err = np.where(good, rng.integers(0, 2, 800), rng.integers(6, 20, 800)).astype(float)
    conf = np.where(good, rng.uniform(0.3, 0.9, 800), rng.uniform(0.0, 0.13, 800))
    c, frac = choose_min_confidence(err, conf)
    assert 0.04 <= c <= 0.14 and frac <= 0.1
    below = conf >= c - 0.02  # the next lower grid value lets more than 10 % gross errors through
    assert np.mean(err[below] > 4) > 0.1
    assert np.all(conf[good] >= c)  # every good prediction kept
    # errors that confidence does not predict: no threshold helps, the lowest is kept
    conf2 = rng.uniform(0.3, 0.9, 800)
    assert choose_min_confidence(err, conf2)[0] == 0.02
    # too few predictions to judge
    c3, f3 = choose_min_confidence(err[:5], conf[:5])
    assert c3 == 0.02 and np.isnan(f3)


class _Ctx:
    def __init__(self, **kw):
        self.config = MethodConfig(**kw)


class _Pred:
    def __init__(self, card):
        self.card = card


def test_pe_min_confidence_prefers_config_then_card_then_default():
    card = {"controller": {"pe": {"min_confidence": 0.12}, "pe2": {"min_confidence": 0.34}}}
    assert pe_min_confidence(_Ctx(), _Pred(card), "pe") == 0.12
    assert pe_min_confidence(_Ctx(), _Pred(card), "pe2") == 0.34
    assert pe_min_confidence(_Ctx(min_confidence=0.5), _Pred(card), "pe2") == 0.5
    assert pe_min_confidence(_Ctx(), _Pred({}), "pe2") == MethodConfig.pe_default_min_confidence == 0.2


def _focus_state(model_dir, capsys, method="pe2"):
    capsys.readouterr()
    rc = main(["focus", "sim://?seed=3", "--method", method, "--model", str(model_dir), "--clock", "sim", "--json"])
    out = json.loads(capsys.readouterr().out)
    return rc, out


def test_controller_reports_failed_below_the_cards_threshold_only(tmp_path, capsys):
    from hil_af.paths import models_dir

    m = tmp_path / "m"
    shutil.copytree(models_dir(), m, ignore=shutil.ignore_patterns("ablation-*", "*.md"))
    card = json.loads((m / "card.json").read_text())
    for value, state in ((0.999, "Failed"), (0.0, "Focused")):
        card["controller"] = {"pe": {"min_confidence": value}, "pe2": {"min_confidence": value}}
        (m / "card.json").write_text(json.dumps(card))
        rc, out = _focus_state(m, capsys)
        assert out["state"] == state, (value, out)
        assert (rc == 0) == (state == "Focused")


def test_training_fits_the_threshold_on_held_out_pairs(tmp_path):
    """A stand-in network (at the torch boundary) that is sharp and right on two RoIs and flat and
    10 slices wrong on the other two: the fitted threshold must sit just above the flat ones'
    confidence, keeping exactly the right half."""
    torch = pytest.importorskip("torch")
    from torch import nn

    from hil_af.model import recipe
    from hil_af.model.dataset import load_patchset
    from hil_af.model.encoding import EncodingConfig

    n, gts, size = 25, (5, 9, 14, 19), 64
    for s in range(2):
        make_stack(tmp_path / f"s{s}.npz", n=n, gts=gts, size=size, seed=s)
    ps = load_patchset(sorted(tmp_path.glob("*.npz")), EncodingConfig(size=size))
    W = len(gts) * (size + 8) + 8
    centres = torch.tensor([2.0 * (8 + i * (size + 8) + size / 2) / W - 1 for i in range(len(gts))])

    class StandIn(nn.Module):
        def forward(self, x):
            i = (x[:, 2].mean(dim=(1, 2))[:, None] - centres[None, :]).abs().argmin(1)
            g = torch.tensor(gts)[i]
            good = i < 2
            out = torch.zeros(len(x), n)
            out[good, g[good]] = 12.0
            out[~good, (g[~good] + 10) % n] = 1.0
            return out

    pairs = ps.all_pairs()
    block = recipe.confidence_thresholds(StandIn(), StandIn(), ps, pairs)
    flat_conf = (np.e + 2) / (np.e + n - 1)  # softmax mass within +-1 of the peak of a flat logit vector with one bump
    for m in ("pe", "pe2"):
        assert flat_conf < block[m]["min_confidence"] <= flat_conf + 0.02, block
        assert block[m]["kept_fraction"] == 0.5 and block[m]["outlier_fraction"] == 0.0
    assert block["samples"] == len(pairs) == 2 * len(gts) * n
