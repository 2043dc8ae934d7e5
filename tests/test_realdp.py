"""Real Pixel 4 dual-pixel captures (Xin et al. ICCV 2021; where they are found: tests/_data.py).

Protocol (as the folder's README, plus one rule): the 1008 x 1344 views are
cut into 9 x 12 cells of 112 x 112 px; a cell counts when its ground-truth
defocus is uniform (std <= 4) and labelled (value > 0: 0 marks the unlabelled
background in these maps), and its PDAF confidence is >= 0.5; per scene, the
Spearman rank correlation between the cell disparity (xcorr, +-16 px) and the
cell's median ground-truth defocus.

Measured (hil_af.pdaf xcorr, max_shift 16):
  scenes 001-004, no flat field:   0.835, 0.837, 0.622, 0.797 (mean 0.773)
  with the realdp flat field:      0.848, 0.853, 0.663, 0.799 (mean 0.791)
  README's plain ZNCC baseline:   |-0.68|, |-0.70|, |-0.54|, |-0.72|
The correlation is positive here because hil-af's sign convention
(docs/cli.md: positive when the right view is shifted to the right) gives
positive disparities on these scenes (about +4..+8 px); the README's baseline
used the opposite sign.
Flat field (16 x 24 knots from flatfield.npz): the left/right ratio of the
white sheet over a 9 x 12 block grid goes from std 0.131 (1.01..1.39) to
std 0.0012 (0.998..1.008).
"""

from __future__ import annotations

import numpy as np
import pytest

from _data import REALDP

SCENES = ("001", "002", "003", "004")
pytestmark = pytest.mark.skipif(not (REALDP / "001.npz").exists(),
                                reason=f"real dual-pixel captures not found at {REALDP} (set HIL_AF_REALDP to their folder)")

MIN_SPEARMAN = (0.79, 0.82, 0.58, 0.76)  # a little below what we measure (docstring); all beat the README baseline
CELL = 112
MAX_SHIFT = 16
MIN_CONF = 0.5


from hil_af.sim.realcheck import rankdata, spearman  # noqa: E402


def test_rank_correlation_helper():
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([10, 20, 30, 40.0])) == pytest.approx(1.0)
    assert spearman(np.array([1, 2, 3, 4.0]), np.array([4, 3, 2, 1.0])) == pytest.approx(-1.0)
    np.testing.assert_allclose(rankdata(np.array([5.0, 1.0, 5.0, 2.0])), [2.5, 0, 2.5, 1])


@pytest.fixture(scope="module")
def flatfield():
    from hil_af.calibration.flatfield import fit_flatfield
    from hil_af.stacks import load_frame

    return fit_flatfield(load_frame(REALDP / "flatfield.npz"))


def _scene_cells(s: str, flat=None):
    """(frame, cell RoIs, classical estimate, median gt per cell, usable-cell mask) of scene ``s``."""
    from hil_af.sim.realcheck import graded_cells
    from hil_af.stacks import load_frame

    fr = load_frame(REALDP / f"{s}.npz")
    if flat is not None:
        fr = flat.apply(fr)
    gt = np.load(REALDP / f"{s}_gt.npz", allow_pickle=False)["defocus"].astype(np.float64)
    rois, res, g, keep = graded_cells(fr, gt, CELL, MAX_SHIFT, MIN_CONF)
    assert keep.sum() >= 30, f"scene {s}: only {keep.sum()} usable cells"
    return fr, rois, res, g, keep


def _scene_scores(flat=None) -> tuple[list[float], list[float]]:
    scores, medians = [], []
    for s in SCENES:
        _, _, res, g, keep = _scene_cells(s, flat)
        scores.append(spearman(res.disparity_px[keep], g[keep]))
        medians.append(float(np.median(res.disparity_px[keep])))
    return scores, medians


@pytest.fixture(scope="module")
def plain_scores():
    return _scene_scores()


def test_disparity_orders_cells_by_ground_truth_defocus(plain_scores):
    scores, medians = plain_scores
    for s, rho, lo in zip(SCENES, scores, MIN_SPEARMAN):
        assert rho >= lo, f"scene {s}: Spearman {rho:.3f} < {lo}"
    assert all(m > 0 for m in medians), f"every scene lies on one side of focus: positive disparity, got {medians}"


def test_flatfield_flattens_the_left_right_ratio(flatfield):
    from hil_af.calibration.flatfield import block_ratio
    from hil_af.stacks import load_frame

    white = load_frame(REALDP / "flatfield.npz")
    before = block_ratio(white, (9, 12))
    after = block_ratio(flatfield.apply(white), (9, 12))
    assert before.std() > 0.1 and before.max() / before.min() > 1.3  # the raw views differ by up to ~40 %
    assert after.std() < 0.003, f"residual L/R block-ratio spread {after.std():.4f}"
    assert np.abs(after - 1).max() < 0.015


def test_flatfield_does_not_worsen_the_ordering(flatfield, plain_scores):
    with_ff, _ = _scene_scores(flatfield)
    plain, _ = plain_scores
    assert np.mean(with_ff) >= np.mean(plain) - 0.005, (with_ff, plain)
    for s, rho, lo in zip(SCENES, with_ff, MIN_SPEARMAN):
        assert rho >= lo, f"scene {s} with flat field: Spearman {rho:.3f} < {lo}"


def _model_scores(model_dir) -> tuple[list[float], list[float]]:
    """Per scene: |Spearman| of the PE model's single-frame defocus (hil_af.model.defocus: 3 x 3
    windows per cell, no lens slice given) and of the classical disparity."""
    from hil_af.model.defocus import relative_defocus
    from hil_af.model.inference import PEPredictor

    pred = PEPredictor(model_dir)
    model, classical = [], []
    for s in SCENES:
        fr, rois, res, g, keep = _scene_cells(s)
        d, _ = relative_defocus(pred, fr, rois)
        model.append(abs(spearman(d[keep], g[keep])))
        classical.append(abs(spearman(res.disparity_px[keep], g[keep])))
    return model, classical


def test_shipped_model_ranks_real_cells_by_defocus():
    """Measured with the shipped model (mcunet-plain, domain-random, 3+2 epochs; models/MODEL_CARD.md)
    and hil_af.model.defocus's readout (3 x 3 windows per 112 px cell; sign at the middle slice, the
    answer asked from the far end of the range): |Spearman| 0.769 / 0.817 / 0.399 / 0.671 (mean
    0.664) against the classical estimator's 0.835 / 0.837 / 0.622 / 0.797 (mean 0.773).  The
    readout of earlier releases (the central 64 px of each cell, one lens slice per frame chosen to
    leave the fewest predictions at a range end) scored 0.503 / 0.586 / 0.275 / 0.340 with the same
    model.  This model, trained on the sim only, still does NOT rank real Pixel 4 cells as well as
    classical PDAF (scene 003 is the gap; models/realrank, the next test, does); this test pins the measured figure (the first two scenes near 0.8, every scene above
    0.35) and the gap (when a model or readout closes it, the last assertion fails and the README's
    statement must change)."""
    from hil_af.paths import models_dir

    model, classical = _model_scores(models_dir())
    assert np.mean(model[:2]) >= 0.75, model
    assert min(model) >= 0.35, model
    assert np.mean(model) < np.mean(classical) - 0.05, (model, classical)


def test_rank_tuned_model_ranks_real_cells_at_least_as_well_as_classical_pdaf():
    """models/realrank: the shipped model after the real-capture ranking stage (``hil-af train --init
    models --epochs 0 --rank-scenes``, scripts/realrank.sh): step 1 tuned to rank the cells of 8 OTHER
    real Pixel 4 scenes of the same release (005-017 minus the validation scenes 009/011/016 and the
    three with fewer than 5 usable cells), the step picked on 009/011/016, step 2 retrained from it.
    Measured on the test scenes, which it never saw: |Spearman| 0.839 / 0.834 / 0.784 / 0.817 (mean
    0.819) against the classical estimator's 0.835 / 0.837 / 0.622 / 0.797 (mean 0.773).  Pinned: the
    mean at least the classical mean, every scene within 0.02 of its classical figure or above it, and
    the card's record that no test scene was trained or selected on."""
    from hil_af.model.inference import read_card
    from hil_af.paths import models_dir

    d = models_dir() / "realrank"
    card = read_card(d)
    rank = card["val"]["rank"]
    assert not set(SCENES) & (set(rank["train_scenes"]) | set(rank["val_scenes"])), rank
    assert rank["best_step"] > 0 and rank["best_val_rank"] > rank["val_rank_before"] + 0.1, rank
    model, classical = _model_scores(d)
    assert np.mean(model) >= np.mean(classical), (model, classical)
    assert np.mean(model) >= 0.80, model
    for s, m, c in zip(SCENES, model, classical):
        assert m >= c - 0.02, f"scene {s}: model {m:.3f}, classical {c:.3f}"
