"""Any sweep length: the model's bins are fractions of the lens range, its lens-PE is the fraction
of the range of the current slice, and predictions are re-binned onto the sweep's own slices."""

from __future__ import annotations

import json

import numpy as np
import pytest

from hil_af.cli import main
from hil_af.model.inference import PEPredictor, rebin
from hil_af.paths import models_dir

from synthetic import make_stack


def test_rebin_is_identity_for_equal_lengths_and_keeps_mass_and_mean():
    rng = np.random.default_rng(0)
    p = rng.random((5, 49))
    p /= p.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(rebin(p, 49), p)
    for m in (2, 13, 25, 97):
        q = rebin(p, m)
        assert q.shape == (5, m)
        np.testing.assert_allclose(q.sum(axis=1), 1.0, atol=1e-12)
        mean_n = (p * np.arange(49)).sum(axis=1) / 48
        mean_m = (q * np.arange(m)).sum(axis=1) / (m - 1)
        np.testing.assert_allclose(mean_m, mean_n, atol=1e-12)  # the same fraction of the range


def test_a_sharp_prediction_lands_on_the_same_fraction_of_the_range():
    p = np.zeros((1, 49))
    p[0, 36] = 1.0  # 3/4 of the range
    assert int(rebin(p, 25).argmax()) == 18 and int(rebin(p, 9).argmax()) == 6


class _Recorder:
    """Wraps the onnxruntime session (the library boundary) and keeps every input tensor."""

    def __init__(self, session):
        self.session, self.inputs = session, []

    def run(self, names, feed):
        self.inputs.append(next(iter(feed.values())).copy())
        return self.session.run(names, feed)

    def __getattr__(self, name):
        return getattr(self.session, name)


@pytest.mark.parametrize("n", [25, 49, 97])
def test_the_model_receives_the_fraction_of_the_range_as_lens_pe(n):
    from hil_af.frames import DualPixelFrame, grid_rois

    pred = PEPredictor(models_dir())
    rec = _Recorder(pred.session)
    pred.session = rec
    rng = np.random.default_rng(1)
    f = DualPixelFrame(rng.uniform(50, 500, (256, 384)).astype(np.float32), rng.uniform(50, 500, (256, 384)).astype(np.float32),
                       lens_position=300.0, sensor_hw=(256, 384))
    k = (n - 1) // 3
    out = pred.predict(f, grid_rois((256, 384), 1, 2), k, n)
    x = rec.inputs[-1]
    np.testing.assert_allclose(x[:, 4], k / (n - 1), atol=1e-7)
    assert out.probs.shape == (2, n) and np.all(out.index < n)


@pytest.mark.parametrize("method", ["pe2", "hybrid"])
def test_the_shipped_model_focuses_a_25_slice_sweep(tmp_path, capsys, method):
    path = tmp_path / "s25.npz"
    make_stack(path, n=25, gts=(6, 12, 18, 20), size=64)
    rc = main(["focus", f"replay://{path}", "--method", method, "--clock", "sim", "--json"])
    out = capsys.readouterr()
    assert rc in (0, 1), out.err
    res = json.loads(out.out)
    assert 0 <= res["slice_index"] < 25 and "predicts" not in out.err


def test_training_mixes_sweep_lengths_with_labels_as_fractions(tmp_path):
    pytest.importorskip("torch")
    from hil_af.model.dataset import load_patchset, step2_pairs
    from hil_af.model.encoding import EncodingConfig

    make_stack(tmp_path / "a.npz", n=13, gts=(3, 6, 9, 12), size=64)
    make_stack(tmp_path / "b.npz", n=25, gts=(6, 12, 18, 24), size=64, seed=1)
    ps = load_patchset([tmp_path / "a.npz", tmp_path / "b.npz"], EncodingConfig(), n_bins=49)
    assert ps.n == 49 and sorted(set(ps.n_rows.tolist())) == [13, 25]
    pairs = ps.all_pairs()
    assert len(pairs) == 4 * 13 + 4 * 25
    assert np.all(pairs[:, 1] < ps.n_rows[pairs[:, 0]])
    x, y = ps.batch(pairs)
    np.testing.assert_allclose(x[:, 4, 0, 0], pairs[:, 1] / (ps.n_rows[pairs[:, 0]] - 1), atol=1e-6)
    np.testing.assert_allclose(y, ps.gt[pairs[:, 0]] * 48 / (ps.n_rows[pairs[:, 0]] - 1), atol=1e-5)
    assert set(np.round(y[ps.n_rows[pairs[:, 0]] == 13], 3)) == {12.0, 24.0, 36.0, 48.0}
    # step 2 starts where step 1 leaves the lens: a model that always says bin 48 sends every pair
    # to the last slice of ITS OWN sweep
    always_last = lambda xb: np.tile(30.0 * np.eye(49)[48], (len(xb), 1))  # noqa: E731  (logits: all mass on bin 48)
    p2 = step2_pairs(ps, always_last)
    np.testing.assert_array_equal(p2[:, 1], ps.n_rows[p2[:, 0]] - 1)
