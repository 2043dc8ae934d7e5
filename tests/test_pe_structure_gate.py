"""pe / pe2 do not take a network's word on a RoI whose two views share no structure
(controller.methods.views_structure, MethodConfig.pe_min_structure).

A network asked about a flat patch still answers, and the shipped plain-stem model answered the
sim's flat-centre RoI with confidence 0.45 (its lens- and RoI-PE priors): without the gate, pe2
reported Focused at a guess and hybrid never fell back.  The model here is a stand-in at the
onnxruntime boundary that is always sure (one sharp logit at slice 30), so only the gate can make
the flat RoI fail."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hil_af.cli import main
from hil_af.controller.methods import MethodConfig, views_structure
from hil_af.frames import DualPixelFrame
from hil_af.paths import models_dir

needs_model = pytest.mark.skipif(not (models_dir() / "step1.onnx").exists(), reason="no shipped model in models/")

N = 49


def _texture(rng, h, w):
    t = rng.standard_normal((h, w + 8))
    t = np.cumsum(np.cumsum(t, axis=0), axis=1)  # a smooth-ish random texture
    t = (t - t.min()) / np.ptp(t)
    return 200.0 + 400.0 * t


def test_views_structure_is_high_on_a_shifted_texture_and_near_zero_on_noise():
    rng = np.random.default_rng(0)
    base = _texture(rng, 64, 64)
    textured = DualPixelFrame(base[:, 2:66] + rng.normal(0, 2, (64, 64)), base[:, 0:64] + rng.normal(0, 2, (64, 64)))
    flat = DualPixelFrame(400.0 + rng.normal(0, 8, (64, 64)), 400.0 + rng.normal(0, 8, (64, 64)))
    roi = np.array([[0, 0, 64, 64]])
    assert views_structure(textured, roi)[0] > 0.5
    assert views_structure(flat, roi)[0] < MethodConfig.pe_min_structure == 0.05


def _always_sure(monkeypatch):
    import onnxruntime as ort

    def run(self, output_names, feeds):
        x = next(iter(feeds.values()))
        logits = np.full((x.shape[0], N), -30.0, np.float32)
        logits[:, 30] = 30.0
        return [logits]

    monkeypatch.setattr(ort.InferenceSession, "run", run)


def _focus(capsys, url, method):
    capsys.readouterr()
    rc = main(["focus", url, "--method", method, "--clock", "sim", "--json"])
    return rc, json.loads(capsys.readouterr().out)


@needs_model
@pytest.mark.parametrize("method", ["pe", "pe2"])
def test_a_sure_network_on_a_flat_roi_reports_low_confidence(capsys, monkeypatch, method):
    _always_sure(monkeypatch)
    rc, out = _focus(capsys, "sim://?seed=1&scene=flat-centre", method)
    assert rc == 1 and out["state"] == "Failed" and "low confidence: 0.00" in out["reason"], out
    assert out["slice_index"] == 30  # the lens still rests at the network's guess
    rc, out = _focus(capsys, "sim://?seed=1&scene=cards", method)  # textured: the same answer is taken
    assert rc == 0 and out["state"] == "Focused" and out["slice_index"] == 30 and out["confidence"] > 0.9, out


@needs_model
def test_hybrid_falls_back_on_a_flat_roi_even_when_the_network_is_sure(capsys, monkeypatch):
    _always_sure(monkeypatch)
    rc, out = _focus(capsys, "sim://?seed=1&scene=flat-centre", "hybrid")
    assert rc == 0 and out["state"] == "Focused" and out["fallback"] == "cdaf-wide", out
