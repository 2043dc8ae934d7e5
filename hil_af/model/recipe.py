"""The training recipe's numbers: defaults for pretraining and for fine-tuning, the two-step
validation metric and early stopping (torch; the ``[train]`` extra).

Pretraining (no ``--init``): many stacks, the settings of ``TrainConfig``.
Fine-tuning (``--init MODEL_DIR``, e.g. on a rig's 8 calibration sweeps): ``FINE_TUNE``
replaces every setting the user did not give: a smaller learning rate and batch (a few
thousand samples), whole sweeps held out for validation (``dataset.fine_tune_split``),
early stopping on that split, and the init model kept if training does not beat it there.

Validation metric (``two_step``): on the held-out sweeps, from EVERY start slice of every
RoI, the slice where the paper's two-step procedure leaves the lens (step-1 prediction ->
move -> step-2 prediction), scored in slices of each sweep: MAE, exact and <=1 fractions.
Step 1 alone is scored as where step 1 leaves the lens.  Early stopping watches the MAE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from .dataset import PatchSet
from .inference import decode, decoded_bins

# what --init changes unless given explicitly (hil-af train --init MODEL_DIR --stacks SWEEPS --out DIR)
FINE_TUNE: dict[str, Any] = {"epochs": 20, "epochs2": 10, "lr": 2e-3, "lr2": 8e-4, "batch": 64, "val_frac": 0.25,
                             "patience": 5, "max_samples_per_epoch": None}


def predict_bins(model: nn.Module, ps: PatchSet, pairs: np.ndarray, batch: int = 512) -> np.ndarray:
    """The decoded model bin (rounded softmax mean, as the controller decodes) of every (row, slice)
    pair (eval mode, no augmentation)."""
    return decoded_bins(_logits(model, ps, pairs, batch))


def two_step(model1: nn.Module, model2: nn.Module | None, ps: PatchSet, pairs: np.ndarray) -> dict[str, float]:
    """Where the lens ends after step 1 (and step 2 when ``model2``) from each start pair: slice errors
    of each RoI's own sweep -> {"mae", "exact", "le1", "samples"}."""
    rows = pairs[:, 0]
    k1 = ps.to_stack_slice(rows, predict_bins(model1, ps, pairs))
    k = k1
    if model2 is not None:
        k = ps.to_stack_slice(rows, predict_bins(model2, ps, np.stack([rows, k1], axis=1)))
    err = np.abs(k - ps.gt[rows])
    return {"mae": float(err.mean()), "exact": float(np.mean(err == 0)), "le1": float(np.mean(err <= 1)),
            "samples": int(len(err))}


@dataclass
class EarlyStop:
    """Keeps the state of the epoch with the lowest validation MAE; ``stop`` after ``patience`` epochs
    without improvement (None: never).  ``baseline``: the score to beat (the init model's), else the
    first epoch's."""

    patience: int | None
    baseline: dict[str, float] | None = None
    best: dict[str, float] | None = None
    best_state: dict[str, torch.Tensor] | None = None
    best_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    _since: int = 0

    def update(self, epoch: int, score: dict[str, float], model: nn.Module) -> bool:
        """Record ``score`` for ``epoch``; True when training should stop."""
        self.history.append({"epoch": epoch, **score})
        ref = self.best or self.baseline
        if ref is None or score["mae"] < ref["mae"] - 1e-9:
            self.best, self.best_epoch, self._since = score, epoch, 0
            self.best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        self._since += 1
        return self.patience is not None and self._since >= self.patience

    def restore(self, model: nn.Module) -> bool:
        """Load the best state into ``model``; False when no epoch beat the baseline (model unchanged)."""
        if self.best_state is None:
            return False
        model.load_state_dict(self.best_state)
        return True


def epoch_hook(stopper: EarlyStop, score_fn: Callable[[], dict[str, float]], model: nn.Module):
    """A ``fit`` callback: score the model after each epoch, return True to stop."""
    def hook(epoch: int) -> bool:
        return stopper.update(epoch, score_fn(), model)
    return hook


def _logits(model: nn.Module, ps: PatchSet, pairs: np.ndarray, batch: int = 512) -> np.ndarray:
    """Logits [len(pairs), n] of every (row, slice) pair (eval mode, no augmentation)."""
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(pairs), batch):
            x, _ = ps.batch(pairs[i : i + batch])
            out.append(model(torch.from_numpy(x)).numpy())
    return np.concatenate(out) if out else np.zeros((0, ps.n), np.float32)


def _decoded(logits: np.ndarray, n_slices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(slice index, confidence) as inference decodes them on each row's own sweep length."""
    idx = np.empty(len(logits), np.int64)
    conf = np.empty(len(logits), np.float64)
    for m in np.unique(n_slices):
        sel = n_slices == m
        d = decode(logits[sel], int(m))
        idx[sel], conf[sel] = d.index, d.confidence
    return idx, conf


def confidence_thresholds(model1: nn.Module, model2: nn.Module, ps: PatchSet, pairs: np.ndarray) -> dict[str, Any]:
    """The card's ``controller`` block: the min confidence of ``pe`` (step 1's) and of ``pe2`` (step 2's,
    at the slice step 1 leaves the lens), each chosen on the held-out pairs by the rule of the
    PDAF thresholds (hil_af.calibration.thresholds.choose_min_confidence: the lowest confidence
    above which at most 10 % of the predictions are off by more than 4 slices)."""
    from ..calibration.thresholds import OUTLIER_FRACTION, OUTLIER_SLICES, choose_min_confidence

    rows = pairs[:, 0]
    n_s = ps.n_rows[rows]
    k1, c1 = _decoded(_logits(model1, ps, pairs), n_s)
    k2, c2 = _decoded(_logits(model2, ps, np.stack([rows, k1], axis=1)), n_s)
    out: dict[str, Any] = {}
    for name, k, c in (("pe", k1, c1), ("pe2", k2, c2)):
        chosen, frac = choose_min_confidence(np.abs(k - ps.gt[rows]), c)
        out[name] = {"min_confidence": chosen, "outlier_fraction": None if np.isnan(frac) else round(frac, 4),
                     "kept_fraction": round(float(np.mean(c >= chosen)), 4)}
    out["samples"] = int(len(rows))
    out["rule"] = (f"lowest confidence with <= {OUTLIER_FRACTION:.0%} of the held-out predictions off by > "
                   f"{OUTLIER_SLICES:g} slices (hil_af/model/recipe.py confidence_thresholds)")
    return out
