"""Training of the step-1 / step-2 PE models, ONNX export, npz weights, card (torch; ``[train]``).

Recipe (Choi et al., ICCV 2023, multi-step setting):
1. step 1: every (RoI, slice k) of the training stacks, label = gt slice,
   ordinal soft-label CE with T = 1;
2. step 2: initialised from step 1, fine-tuned with T = 0.5 on the patches at
   the slice where step 1 leaves the lens from each start slice.
AdamW with a one-cycle cosine schedule, batch 256, Gaussian-noise and
position-jitter augmentation (dataset.PatchSet.batch).  Whole stacks are held out for
validation; val loss, exact and <=1-slice accuracy are printed every epoch, and the
two-step metric (hil_af.model.recipe.two_step) selects the best epoch of each step.
With ``init`` (fine-tuning a trained model, e.g. on a rig's calibration sweeps) both
steps start from that model, the step-2 recipe stays the paper's (from the new step 1,
T = 0.5), the defaults are ``recipe.FINE_TUNE`` (set by the CLI), and the init model is
kept when the fine-tuned one does not beat it on the held-out sweeps.

Outputs in MODEL_DIR: step1.onnx, step2.onnx (input ``x`` [B, 5, S, S],
output ``logits`` [B, n], dynamic batch), weights.npz (every state-dict
tensor as ``step1/<name>``, ``step2/<name>``; loaded with allow_pickle=False
for ``--init``), card.json.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from ..errors import BadInput, FormatError
from . import card as cardmod
from . import recipe
from .dataset import PatchSet, find_stacks, fine_tune_split, load_patchset, split_by_stack, step2_pairs
from .encoding import N_CHANNELS, EncodingConfig
from .loss import T_STEP1, T_STEP2, ordinal_ce
from .nets import build, count_macs, count_params

WEIGHTS = "weights.npz"
FLATFIELD = "flatfield.npz"


@dataclass
class TrainConfig:
    arch: str = "mcunet"
    epochs: int = 8  # step 1
    epochs2: int | None = None  # step 2; default max(1, epochs // 2)
    batch: int = 256
    lr: float = 5e-3
    lr2: float = 1.5e-3
    weight_decay: float = 1e-4
    noise: float = 0.1
    jitter: int = 8  # px of position jitter (augmentation)
    seed: int = 0
    val_frac: float = 0.15
    threads: int = 2
    roi_pe: bool = True
    lens_pe: bool = True
    size: int = 64
    fit: str = "crop"
    T1: float = T_STEP1
    T2: float = T_STEP2
    max_samples_per_epoch: int | None = None  # subsample pairs each epoch (None: all)
    max_val_pairs: int = 8192  # validation: a fixed seeded subset of the held-out (RoI, slice) pairs
    max_step2_pairs: int = 65536  # step-2 data: step-1 predictions from this many random (RoI, start) pairs
    flatfield: str | None = None  # FLAT.npz applied to the views before encoding; shipped with the model
    patience: int | None = None  # early stopping: epochs without a better val two-step MAE (None: run all)
    rank_scenes: str | None = None  # real captures (hil-af import-xin): rank stage after step 1 (model/realrank.py)
    rank_train: str = "005,006,007,008,010,012,013,014,015,017"  # their scene ids (the Xin et al. release
    rank_val: str = "009,011,016"  # minus its scenes 001-004, which the repo's real-capture figure reports)
    rank_steps: int = 300
    rank_lr: float = 1e-4

    @property
    def n_epochs2(self) -> int:
        return self.epochs2 if self.epochs2 is not None else max(1, self.epochs // 2)


# --------------------------------------------------------------------------- weights


def save_weights(path: Path, models: dict[str, nn.Module]) -> None:
    """All state-dict tensors of ``models`` as ``<step>/<name>`` float/int arrays in one npz."""
    arrays = {}
    for step, m in models.items():
        for name, t in m.state_dict().items():
            arrays[f"{step}/{name}"] = t.detach().cpu().numpy()
    from ..atomic import atomic_open

    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


def load_weights(model: nn.Module, path: Path, step: str) -> None:
    """Load ``<step>/*`` tensors of an npz (allow_pickle=False) into ``model``; FormatError on mismatch."""
    if not path.is_file():
        raise BadInput(f"weights file {path} is missing")
    from ..npzread import read_npz  # regular files only, headers checked first, 256 MiB at most

    arrays = read_npz(path, (), what="weights file", max_bytes=256 << 20, prefix_ok=lambda k: k.startswith(step + "/"))
    sd = {k[len(step) + 1 :]: torch.from_numpy(np.array(a)) for k, a in arrays.items()}
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    extra = sorted(set(sd) - set(own))
    bad = [k for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or extra or bad:
        raise FormatError(f"weights file {path} ({step}) does not fit the model: missing {missing[:3]}, "
                          f"unexpected {extra[:3]}, wrong shape {bad[:3]}")
    model.load_state_dict(sd)


# --------------------------------------------------------------------------- loops


def _lr_at(step: int, total: int, peak: float) -> float:
    warm = max(1, total // 20)
    if step < warm:
        return peak * (step + 1) / warm
    t = (step - warm) / max(1, total - warm)
    return peak * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * t)))


@torch.no_grad()
def evaluate_pairs(model: nn.Module, ps: PatchSet, pairs: np.ndarray, T: float, batch: int = 512) -> dict[str, float]:
    """Mean loss, exact and <=1 accuracy, MAE (slices) of ``model`` on ``pairs`` of ``ps``."""
    model.eval()
    tot, exact, le1, ae, n = 0.0, 0, 0, 0.0, 0
    for i in range(0, len(pairs), batch):
        x, y = ps.batch(pairs[i : i + batch])
        logits = model(torch.from_numpy(x))
        yt = torch.from_numpy(y)
        tot += float(ordinal_ce(logits, yt, T)) * len(y)
        err = np.abs(logits.argmax(1).numpy() - y)  # model bins (labels may be fractional: other sweep lengths)
        exact += int((err < 0.5).sum())
        le1 += int((err <= 1 + 1e-6).sum())
        ae += float(err.sum())
        n += len(y)
    return {"loss": tot / max(n, 1), "exact": exact / max(n, 1), "le1": le1 / max(n, 1), "mae": ae / max(n, 1)}


def fit(model: nn.Module, ps: PatchSet, pairs: np.ndarray, val: PatchSet | None, val_pairs: np.ndarray | None,
        epochs: int, lr: float, T: float, cfg: TrainConfig, rng: np.random.Generator, label: str,
        log: list[dict[str, Any]], on_epoch: Callable[[int], bool] | None = None) -> None:
    """Train ``model`` in place on ``pairs`` for ``epochs``; append per-epoch metrics to ``log``;
    ``on_epoch(epoch)`` after each epoch returns True to stop early."""
    from tqdm import tqdm

    from ..progress import bar as progress_bar  # a bar on a terminal only: none in pipes and logs

    per_epoch = len(pairs) if not cfg.max_samples_per_epoch else min(len(pairs), cfg.max_samples_per_epoch)
    steps_per_epoch = max(1, per_epoch // cfg.batch)
    total = steps_per_epoch * epochs
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    step = 0
    for ep in range(epochs):
        model.train()
        order = rng.permutation(len(pairs))[: steps_per_epoch * cfg.batch]
        t0 = time.perf_counter()
        run_loss = 0.0
        bar = progress_bar(range(steps_per_epoch), desc=f"{label} epoch {ep + 1}/{epochs}", unit="batch", leave=False)
        for b in bar:
            sel = pairs[order[b * cfg.batch : (b + 1) * cfg.batch]]
            x, y = ps.batch(sel, rng, cfg.noise, cfg.jitter)
            for g in opt.param_groups:
                g["lr"] = _lr_at(step, total, lr)
            loss = ordinal_ce(model(torch.from_numpy(x)), torch.from_numpy(y), T)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            run_loss += loss.item()
            bar.set_postfix(loss=f"{run_loss / (b + 1):.3f}")
        bar.close()
        rec: dict[str, Any] = {"step": label, "epoch": ep + 1, "train_loss": run_loss / steps_per_epoch,
                               "seconds": round(time.perf_counter() - t0, 1)}
        if val is not None and val_pairs is not None and len(val_pairs):
            m = evaluate_pairs(model, val, val_pairs, T)
            rec.update({f"val_{k}": v for k, v in m.items()})
        log.append(rec)
        stop = on_epoch(ep + 1) if on_epoch is not None else False
        msg = " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items())
        tqdm.write(msg)
        if stop:
            tqdm.write(f"{label}: early stop after epoch {ep + 1}")
            break


# --------------------------------------------------------------------------- export


def export_onnx(model: nn.Module, path: Path, size: int) -> None:
    """torch.onnx.export with a dynamic batch axis (legacy TorchScript exporter, opset 17)."""
    model.eval()
    dummy = torch.zeros(2, N_CHANNELS, size, size)
    tmp = path.with_name(path.name + ".tmp")
    import warnings

    with warnings.catch_warnings():  # the legacy exporter's deprecation and constant-folding notes: known, harmless
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx")
        warnings.filterwarnings("ignore", message=r"(?s).*legacy TorchScript-based ONNX export")
        warnings.filterwarnings("ignore", message=r"(?s).*Constant folding")
        torch.onnx.export(model, (dummy,), str(tmp), input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    tmp.replace(path)


def onnx_max_abs_diff(model: nn.Module, path: Path, x: np.ndarray) -> float:
    """max |onnxruntime(x) - torch(x)| over a batch (logits)."""
    import onnxruntime as ort

    model.eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": x.astype(np.float32)})[0]
    return float(np.abs(got - ref).max())


# --------------------------------------------------------------------------- main entry


def train(stacks_dir: str | Path, out_dir: str | Path, cfg: TrainConfig, init: str | Path | None = None) -> dict[str, Any]:
    """Train step 1 and step 2 from the stacks in ``stacks_dir``; write the model to ``out_dir``.

    Returns the card dict (also written as out_dir/card.json)."""

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, int(cfg.threads)))
    rng = np.random.default_rng(cfg.seed)
    enc = EncodingConfig(size=cfg.size, roi_pe=cfg.roi_pe, lens_pe=cfg.lens_pe, fit=cfg.fit)
    init_card = None
    if init is not None:
        from .inference import read_card

        init_card = read_card(Path(init))
        if init_card.get("arch") != cfg.arch:
            raise BadInput(f"--init {init} is a {init_card.get('arch')!r} model, training {cfg.arch!r}")
        if int(init_card["encoding"].get("size", -1)) != cfg.size:
            raise BadInput(f"--init {init} expects {init_card['encoding'].get('size')} px patches, training {cfg.size}")
    paths = find_stacks(stacks_dir)
    ff = None
    if cfg.flatfield:
        from ..calibration.flatfield import load_flatfield

        ff = load_flatfield(cfg.flatfield)
    n_bins = int(init_card["n_slices"]) if init_card is not None else None
    from ..progress import bar as progress_bar

    ps = load_patchset(paths, enc, progress=lambda it: progress_bar(it, desc="reading stacks", unit="stack", leave=False),
                       flatfield=ff, n_bins=n_bins)
    tr, va, val_ids = (fine_tune_split if init is not None else split_by_stack)(ps, cfg.val_frac, cfg.seed)

    def some(pairs: np.ndarray, cap: int) -> np.ndarray:
        return pairs if len(pairs) <= cap else pairs[np.sort(rng.choice(len(pairs), cap, replace=False))]

    va_pairs = some(va.all_pairs(), cfg.max_val_pairs) if va else None

    def scored(m1: nn.Module, m2: nn.Module | None) -> dict[str, float]:
        assert va is not None and va_pairs is not None
        return recipe.two_step(m1, m2, va, va_pairs)

    model = build(cfg.arch, ps.n)
    before = None
    if init is not None:
        load_weights(model, Path(init) / WEIGHTS, "step1")
        init2 = build(cfg.arch, ps.n)
        load_weights(init2, Path(init) / WEIGHTS, "step2")
        before = {"step1": scored(model, None), "pe2": scored(model, init2)} if va is not None else None
    log: list[dict[str, Any]] = []
    t1 = time.perf_counter()
    stop1 = recipe.EarlyStop(cfg.patience, before["step1"] if before else None)
    fit(model, tr, tr.all_pairs(), va, va_pairs, cfg.epochs, cfg.lr, cfg.T1, cfg, rng, "step1", log,
        on_epoch=recipe.epoch_hook(stop1, lambda: scored(model, None), model) if va is not None else None)
    if va is not None and not stop1.restore(model) and init is not None:
        load_weights(model, Path(init) / WEIGHTS, "step1")  # no epoch beat the init model: keep it
    rank = None
    if cfg.rank_scenes:  # tune step 1 to rank real cells by defocus; step 2 then starts from it
        from .realrank import RankConfig, rank_stage

        tr_pairs = tr.all_pairs()
        rc = RankConfig(steps=cfg.rank_steps, lr=cfg.rank_lr, seed=cfg.seed)

        def sim_batch(g: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            return tr.batch(tr_pairs[g.integers(0, len(tr_pairs), rc.sim_batch)], g, cfg.noise, cfg.jitter)

        ids = [[s.strip() for s in v.split(",") if s.strip()] for v in (cfg.rank_train, cfg.rank_val)]
        rank = rank_stage(model, cfg.rank_scenes, ids[0], ids[1], ps.n, enc, rc, sim_batch)
    t1 = time.perf_counter() - t1
    step1_state = {k: v.clone() for k, v in model.state_dict().items()}

    def predict_fn(x: np.ndarray) -> np.ndarray:
        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(x)).numpy()

    tr2 = step2_pairs(tr, predict_fn, pairs=some(tr.all_pairs(), cfg.max_step2_pairs))
    va2 = step2_pairs(va, predict_fn, pairs=va_pairs) if va is not None and va_pairs is not None else None
    val_step1 = evaluate_pairs(model, va, va_pairs, cfg.T1) if va is not None and va_pairs is not None else None
    model2 = build(cfg.arch, ps.n)
    model2.load_state_dict(step1_state)  # the paper: step 2 starts from step 1 (also when fine-tuning)
    t2 = time.perf_counter()
    stop2 = recipe.EarlyStop(cfg.patience)
    fit(model2, tr, tr2, va, va2, cfg.n_epochs2, cfg.lr2, cfg.T2, cfg, rng, "step2", log,
        on_epoch=recipe.epoch_hook(stop2, lambda: scored(model, model2), model2) if va is not None else None)
    if va is not None:
        stop2.restore(model2)
    t2 = time.perf_counter() - t2
    val_step2 = evaluate_pairs(model2, va, va2, cfg.T2) if va and va2 is not None else None
    after = {"step1": scored(model, None), "pe2": scored(model, model2)} if va is not None else None
    kept = "trained"
    ranked = rank is not None and rank["best_step"] > 0  # chosen on real scenes: not undone by the sim sweeps
    if (init is not None and before is not None and after is not None and after["pe2"]["mae"] > before["pe2"]["mae"]
            and not ranked):
        load_weights(model, Path(init) / WEIGHTS, "step1")  # fine-tuning did not help on held-out sweeps
        load_weights(model2, Path(init) / WEIGHTS, "step2")
        kept = "init"

    controller = recipe.confidence_thresholds(model, model2, va, va_pairs) if va is not None and va_pairs is not None else None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    export_onnx(model, out / "step1.onnx", cfg.size)
    export_onnx(model2, out / "step2.onnx", cfg.size)
    check_set = va if va is not None else tr
    xb, _ = check_set.batch(some(check_set.all_pairs(), 64))
    diffs = {"step1": onnx_max_abs_diff(model, out / "step1.onnx", xb),
             "step2": onnx_max_abs_diff(model2, out / "step2.onnx", xb)}
    save_weights(out / WEIGHTS, {"step1": model, "step2": model2})
    macs = count_macs(model, (cfg.size, cfg.size))
    card = cardmod.build_card(
        arch=cfg.arch, n_slices=ps.n, encoding=enc.to_dict(), params=count_params(model), macs=macs,
        data={"stacks_dir": str(stacks_dir), "stacks": len(paths), "rois_with_gt": ps.n_rois,
              "train_rois": tr.n_rois, "val_rois": va.n_rois if va else 0,
              "val_stacks": [Path(ps.stacks[i]).name for i in val_ids], "val_pairs": int(len(va_pairs)) if va_pairs is not None else 0,
              "sources": sorted({str(m.get("source")) for m in ps.stack_meta if m.get("source")})[:200],
              "step1_samples": int(tr.n_rows.sum()), "step2_samples": int(len(tr2)),
              "slices_per_stack": sorted({int(v) for v in ps.n_rows})},
        settings={**asdict(cfg), "epochs2": cfg.n_epochs2, "init": str(init) if init else None,
                  "optimizer": "AdamW, warm-up + cosine", "loss": "ordinal soft-label CE",
                  "augmentation": f"position jitter +-{cfg.jitter} px (RoI-PE follows), Gaussian noise std U(0,{cfg.noise}) on normalised views",
                  "torch": torch.__version__},
        val={"step1": val_step1, "step2": val_step2, "history": log, "two_step": after,
             "two_step_before": before, "kept": kept,
             "best_epoch": {"step1": stop1.best_epoch, "step2": stop2.best_epoch}, "rank": rank},
        onnx_check={"max_abs_logit_diff": diffs, "batch": int(len(xb))},
        timing_s={"step1": round(t1, 1), "step2": round(t2, 1), "total": round(time.perf_counter() - t_start, 1)},
    )
    if ff is not None and cfg.flatfield:  # the model carries its flat field: inference applies it unless given another
        import shutil

        from ..calibration.flatfield import file_sha256

        shutil.copyfile(cfg.flatfield, out / FLATFIELD)
        card["flatfield"] = {"file": FLATFIELD, "sha256": file_sha256(out / FLATFIELD), "from": str(cfg.flatfield)}
    if controller is not None:  # the confidence below which pe / pe2 report Failed (controller.methods)
        card["controller"] = controller
    cardmod.write_card(out, card)
    return card
