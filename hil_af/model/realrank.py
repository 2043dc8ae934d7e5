"""Fine-tuning the step-1 PE model to rank real dual-pixel cells by defocus (torch; ``[train]``).

Real captures without a focal sweep (the Xin et al. Pixel 4 scenes, hil_af.xin) carry a ground-truth
defocus map whose values are only ordered (0..255 per scene, larger is more blur).  They cannot label
an in-focus slice, but they can order cells: of two cells of one scene (every scene of that release
lies on one side of focus), the one with more blur must get the larger single-frame defocus
estimate of hil_af.model.defocus.  This module trains exactly that estimate:

* a scene's usable cells are those of hil_af.sim.realcheck.graded_cells (112 px cells with uniform
  ground truth and a confident classical disparity), the filter the real-capture figure uses;
* the estimate of a cell is the model's expected in-focus slice at lens-PE 0 (the far-end ask of
  ``defocus.far_end_defocus`` for an RoI whose focus lies above the lens), averaged over the cell's
  3 x 3 input windows (``defocus.tile_windows``), in model slices;
* the loss is a pairwise logistic ranking loss (RankNet) over pairs of cells of one scene whose
  ground truths differ by at least ``margin`` (of 255), plus ``side`` x a hinge that keeps every cell's
  mid-range ask on the "focus above" side (the side the model already reads on these scenes), plus
  ``sim_weight`` x the ordinal soft-label CE (T = 1) on simulated focal-stack samples, so that the
  model stays a slice classifier;
* early stopping on held-out real scenes (mean |Spearman| of the exact readout), never on the
  scenes the result is reported on.

Only the step-1 model is tuned here; the caller re-runs the paper's step 2 from it (T = 0.5).
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import BadInput
from ..frames import DualPixelFrame
from .defocus import far_end_defocus, tile_windows
from .encoding import EncodingConfig, encode_frame_rois
from .loss import T_STEP1, ordinal_ce

@dataclass
class RankScene:
    """One real capture: its frame, usable cells (view px, int [P, 4]) and their median gt (0..255)."""

    name: str
    frame: DualPixelFrame
    rois: np.ndarray
    gt: np.ndarray


@dataclass
class RankConfig:
    steps: int = 300  # optimiser steps
    lr: float = 1e-4  # AdamW, constant after a 5 % warm-up
    weight_decay: float = 1e-4
    cells: int = 16  # cells per real scene per step (each read through its 3 x 3 windows)
    scenes_per_step: int = 2
    margin: float = 8.0  # pairs need |gt_i - gt_j| >= margin (gt scale 0..255)
    tau: float = 1.0  # RankNet temperature, model slices
    side: float = 1.0  # weight of the side hinge
    sim_batch: int = 64
    sim_weight: float = 1.0
    jitter: int = 8  # px: the cell's windows shift together by up to this (augmentation)
    every: int = 25  # validate every this many steps
    seed: int = 0
    freeze_bn: bool = True  # BatchNorm keeps its pretrained statistics (a batch here is one or two scenes)


def _train_mode(model: nn.Module, freeze_bn: bool) -> None:
    model.train()
    if freeze_bn:
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def load_rank_scenes(folder: str | Path, names: list[str], min_cells: int = 5) -> list[RankScene]:
    """Scenes ``names`` of a folder of NNN.npz / NNN_gt.npz (hil_af.xin); scenes with fewer than
    ``min_cells`` usable cells are dropped (they cannot rank)."""
    from ..npzread import read_npz
    from ..sim.realcheck import graded_cells
    from ..stacks import load_frame

    out = []
    for s in names:
        fpath, gpath = Path(folder) / f"{s}.npz", Path(folder) / f"{s}_gt.npz"
        if not fpath.is_file() or not gpath.is_file():
            raise BadInput(f"{folder}: no {s}.npz / {s}_gt.npz (import the captures with `hil-af import-xin`)")
        fr = load_frame(fpath)
        gt = read_npz(gpath, ("defocus",), what="ground-truth defocus file")["defocus"].astype(np.float64)
        if gt.shape != fr.shape:
            raise BadInput(f"{gpath}: defocus map {gt.shape} does not match the frame's views {fr.shape}")
        rois, _, g, keep = graded_cells(fr, gt)  # its defaults are the real-capture figure's filter
        if keep.sum() >= min_cells:
            out.append(RankScene(s, fr, rois[keep].astype(np.int32), g[keep]))
    return out


def encode_cells(scene: RankScene, idx: np.ndarray, k: int, n: int, cfg: EncodingConfig,
                 shift: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(inputs float32 [T, 5, S, S], owner int64 [T] in 0..len(idx)-1) of cells ``idx`` at slice k of n;
    ``shift`` int [len(idx), 2]: (dx, dy) px moving each cell's windows (kept inside the view)."""
    rois = scene.rois[np.asarray(idx, dtype=np.int64)].astype(np.int64).copy()
    if shift is not None:
        H, W = scene.frame.shape
        rois[:, 0] = np.clip(rois[:, 0] + shift[:, 0], 0, W - rois[:, 2])
        rois[:, 1] = np.clip(rois[:, 1] + shift[:, 1], 0, H - rois[:, 3])
    wins, owner = tile_windows(rois, int(cfg.size))
    fr = scene.frame
    x = encode_frame_rois(fr.left, fr.right, wins, fr.origin, fr.sensor_hw or fr.shape, int(k), int(n), cfg)
    return x, owner


def cell_estimate(model: nn.Module, x: np.ndarray, owner: np.ndarray, n_cells: int, k: int) -> torch.Tensor:
    """Expected in-focus slice minus k, mean over each cell's windows: float32 [n_cells] (differentiable)."""
    p = torch.softmax(model(torch.from_numpy(x)), dim=1)
    e = p @ torch.arange(p.shape[1], dtype=torch.float32) - float(k)
    o = torch.from_numpy(owner)
    s = torch.zeros(n_cells).index_add(0, o, e)
    return s / torch.bincount(o, minlength=n_cells).to(torch.float32)


def pair_loss(d: torch.Tensor, g: np.ndarray, margin: float, tau: float) -> torch.Tensor | None:
    """RankNet loss: mean softplus(-(d_i - d_j) / tau) over pairs with g_i - g_j >= margin; None if none."""
    gi = torch.from_numpy(np.asarray(g, dtype=np.float64))
    i, j = torch.nonzero((gi[:, None] - gi[None, :]) >= margin, as_tuple=True)
    if len(i) == 0:
        return None
    return nn.functional.softplus(-(d[i] - d[j]) / tau).mean()


@torch.no_grad()
def scene_readout(model: nn.Module, scene: RankScene, n: int, cfg: EncodingConfig) -> np.ndarray:
    """The exact single-frame defocus of ``defocus.relative_defocus`` (no lens slice) of every usable
    cell, computed with the torch model: float64 [P]."""
    model.eval()
    P, idx = len(scene.rois), np.arange(len(scene.rois))

    def ask(k: int) -> tuple[np.ndarray, np.ndarray]:
        x, owner = encode_cells(scene, idx, k, n, cfg)
        return cell_estimate(model, x, owner, P, k).double().numpy(), np.zeros(P)  # no confidence needed

    return far_end_defocus(ask, n)[0]


def ranking(model: nn.Module, scenes: list[RankScene], n: int, cfg: EncodingConfig) -> list[float]:
    """|Spearman| of the readout against ground truth, one per scene."""
    from ..sim.realcheck import spearman

    return [abs(spearman(scene_readout(model, s, n, cfg), s.gt)) for s in scenes]


SimBatch = Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]


def rank_finetune(model: nn.Module, train: list[RankScene], val: list[RankScene], n: int, cfg: EncodingConfig,
                  rc: RankConfig, sim_batch: SimBatch | None = None,
                  log: Callable[[str], None] = print) -> dict[str, Any]:
    """Tune ``model`` in place (module doc); it ends holding the weights of the best validation
    check (step 0, the model as given, included: it is kept when no check beats it).  Returns the
    history and the chosen step."""
    if not train or not val:
        raise BadInput("rank fine-tuning needs at least one training and one validation scene with usable cells")
    rng = np.random.default_rng(rc.seed)
    torch.manual_seed(rc.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=rc.lr, weight_decay=rc.weight_decay)
    warm = max(1, rc.steps // 20)
    mid = (n - 1) // 2
    hist: list[dict[str, Any]] = []

    def check(step: int, loss: float) -> float:
        v = float(np.mean(ranking(model, val, n, cfg)))
        hist.append({"step": step, "loss": round(loss, 4), "val_rank": round(v, 4)})
        log(f"rank step {step}: loss {loss:.4f}, val mean |Spearman| {v:.3f}")
        return v

    best, best_step, best_state = check(0, float("nan")), 0, copy.deepcopy(model.state_dict())
    t0, run, since = time.perf_counter(), 0.0, 0
    for step in range(1, rc.steps + 1):
        _train_mode(model, rc.freeze_bn)
        for g in opt.param_groups:
            g["lr"] = rc.lr * min(1.0, step / warm)
        loss = torch.zeros(())
        for si in rng.choice(len(train), size=min(rc.scenes_per_step, len(train)), replace=False):
            s = train[si]
            idx = rng.choice(len(s.rois), size=min(rc.cells, len(s.rois)), replace=False)
            shift = rng.integers(-rc.jitter, rc.jitter + 1, size=(len(idx), 2)) if rc.jitter else None
            x, owner = encode_cells(s, idx, 0, n, cfg, shift)
            pl = pair_loss(cell_estimate(model, x, owner, len(idx), 0), s.gt[idx], rc.margin, rc.tau)
            if pl is not None:
                loss = loss + pl
            if rc.side > 0:
                x, owner = encode_cells(s, idx, mid, n, cfg, shift)
                loss = loss + rc.side * torch.relu(-cell_estimate(model, x, owner, len(idx), mid)).mean()
        if sim_batch is not None and rc.sim_weight > 0:
            xs, ys = sim_batch(rng)
            loss = loss + rc.sim_weight * ordinal_ce(model(torch.from_numpy(xs)), torch.from_numpy(ys), T_STEP1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        run, since = run + loss.item(), since + 1
        if step % rc.every == 0 or step == rc.steps:
            v = check(step, run / since)
            run, since = 0.0, 0
            if v > best:
                best, best_step, best_state = v, step, copy.deepcopy(model.state_dict())
    model.load_state_dict(best_state)
    log(f"rank fine-tuning: best val mean |Spearman| {best:.3f} at step {best_step} "
        f"({time.perf_counter() - t0:.0f} s)")
    return {"history": hist, "best_step": best_step, "best_val_rank": round(best, 4),
            "train_scenes": [s.name for s in train], "val_scenes": [s.name for s in val]}


def rank_stage(model: nn.Module, folder: str | Path, train_ids: list[str], val_ids: list[str], n: int,
               cfg: EncodingConfig, rc: RankConfig, sim_batch: SimBatch | None,
               log: Callable[[str], None] = print) -> dict[str, Any]:
    """The stage ``hil-af train --rank-scenes`` runs after step 1: load the scenes, tune, and report the
    validation ranking before and after (the card's ``val.rank``)."""
    overlap = sorted(set(train_ids) & set(val_ids))
    if overlap:
        raise BadInput(f"--rank-train and --rank-val share scenes {', '.join(overlap)}: validation must be held out")
    train = load_rank_scenes(folder, train_ids)
    val = load_rank_scenes(folder, val_ids)
    res = rank_finetune(model, train, val, n, cfg, rc, sim_batch, log)
    res["val_rank_before"] = res["history"][0]["val_rank"]
    res["cells"] = {s.name: int(len(s.rois)) for s in train + val}
    res["settings"] = dict(vars(rc))
    return res
