"""Streaming, multi-process training with PyTorch DistributedDataParallel (docs/l2af.md).

``hil-af train`` comes here (instead of the in-memory ``train.train``) when it
runs under ``torchrun`` (``RANK``/``WORLD_SIZE`` in the environment), when
``--stream`` or ``--resume`` is given, or with ``--device cuda``::

    torchrun --standalone --nproc-per-node N --no-python hil-af train --stacks DIR --out MODEL ...
    torchrun --nnodes M --node-rank I --nproc-per-node N --rdzv-backend c10d \\
             --rdzv-endpoint HOST:29400 --rdzv-id JOB --no-python hil-af train ...

* data: ``streaming.StreamingPairs`` - each rank reads its shard of the stacks
  (torch's ``DistributedSampler`` over the stacks), a few stacks at a time;
* gradients: ``torch.nn.parallel.DistributedDataParallel`` all-reduces them
  (backend ``gloo`` on CPU, ``nccl`` on CUDA), process group from torchrun's
  ``env://`` rendezvous; ``--batch`` is the TOTAL batch, each rank takes
  batch / world_size, so the optimisation is that of one process with the same batch;
* the recipe is train.py's: step 1 (T = 1), then step 2 from step 1 (T = 0.5)
  on samples relabelled by the frozen step-1 model; AdamW, warm-up + cosine
  (``train._lr_at``), ordinal soft-label CE, the same augmentation;
* only rank 0 writes: ``MODEL/checkpoint.npz`` (every ``--checkpoint-every``
  steps and at each epoch end: model, optimizer, position; plain state dicts
  and numbers, read back from an npz + JSON structure with allow_pickle=False), then the
  ONNX files (exported from an fp32 CPU copy, so they are the same whatever
  device or precision trained them), weights.npz and card.json (with a
  ``distributed`` section: world_size, backend, device, precision, throughput);
  the checkpoint is removed when the model is written;
* ``--resume``: continue from MODEL/checkpoint.npz at the step it was written
  (mid-epoch too: the data order is a function of (seed, epoch, rank, step));
* ``--device cpu|cuda|auto``, ``--precision auto|fp32|bf16|fp16``: autocast
  on CUDA (bf16 where supported, else fp16 with a GradScaler); fp32 on CPU by
  default (bf16 autocast measured slower on CPU here, docs/l2af.md).
"""

from __future__ import annotations

import copy
import json
import os
import time
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from ..errors import BadInput, FormatError
from . import card as cardmod
from .dataset import PatchSet
from .encoding import EncodingConfig
from .loss import ordinal_ce
from .nets import build, count_macs, count_params
from .streaming import StackIndex, StreamingPairs, iter_windows, window_bytes
from .train import FLATFIELD, WEIGHTS, TrainConfig, _lr_at, evaluate_pairs, export_onnx, load_weights, onnx_max_abs_diff, save_weights

CHECKPOINT = "checkpoint.npz"


@dataclass
class DistConfig:
    stream: bool = False
    device: str = "auto"  # cpu | cuda | auto
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    window: int = 2  # stacks a data worker holds at a time
    workers: int = 0  # DataLoader worker processes per rank
    resume: bool = False
    checkpoint_every: int = 50  # optimizer steps between checkpoints (and every epoch end)
    abort_after_steps: int | None = None  # tests: stop like a killed run after this many steps


class SimulatedKill(RuntimeError):
    """Raised by ``abort_after_steps`` (tests of --resume)."""


def config_from_args(args) -> DistConfig:
    for name in ("window", "checkpoint_every"):
        if getattr(args, name) < 1:
            raise BadInput(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.workers < 0:
        raise BadInput(f"--workers must be >= 0, got {args.workers}")
    return DistConfig(stream=args.stream, device=args.device, precision=args.precision, window=args.window,
                      workers=args.workers, resume=args.resume, checkpoint_every=args.checkpoint_every)


def launched() -> bool:
    """True under torchrun (or any launcher that sets the env:// variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def pick_device(spec: str, local_rank: int = 0) -> torch.device:
    if spec not in ("auto", "cpu", "cuda"):
        raise BadInput(f"--device must be auto, cpu or cuda, got {spec!r}")
    if spec == "cuda" and not torch.cuda.is_available():
        raise BadInput("--device cuda: no CUDA device is available to this torch build")
    if spec == "cuda" or (spec == "auto" and torch.cuda.is_available()):
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return torch.device("cpu")


def wanted(d: DistConfig) -> bool:
    """Whether ``hil-af train`` takes this engine rather than the in-memory (CPU) trainer: under
    torchrun, with --stream or --resume, or with an explicit --device cuda (--device auto picks
    CUDA inside this engine but does not, by itself, leave the in-memory trainer and its
    fine-tuning recipe)."""
    if d.device == "cuda":
        pick_device("cuda")  # BadInput when there is none
        return True
    return d.stream or d.resume or launched()


def pick_precision(spec: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None for fp32, whether a GradScaler is needed)."""
    if spec == "fp32" or (spec == "auto" and device.type == "cpu"):
        return None, False
    if spec == "fp16":
        if device.type != "cuda":
            raise BadInput("--precision fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
        return torch.float16, True
    if spec == "bf16":
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise BadInput("--precision bf16: this CUDA device does not support bfloat16")
        return torch.bfloat16, False
    # auto on CUDA
    return (torch.bfloat16, False) if torch.cuda.is_bf16_supported() else (torch.float16, True)


@dataclass
class Ctx:
    rank: int
    world: int
    local_rank: int
    device: torch.device
    backend: str | None

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(d: DistConfig) -> Ctx:
    if not launched():
        return Ctx(0, 1, 0, pick_device(d.device), None)
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(d.device, local)
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, init_method="env://")
    return Ctx(dist.get_rank(), dist.get_world_size(), local, device, backend)


def _allsum(ctx: Ctx, values: list[float]) -> list[float]:
    t = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    if ctx.world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().tolist()


def _cpu_fp32(model: nn.Module) -> nn.Module:
    """A fresh fp32 CPU model of the same class (plain BatchNorm) with ``model``'s weights: what is
    evaluated on CPU and exported, whatever device, precision or SyncBatchNorm trained it."""
    m = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
    fresh = build(str(m.hil_af_arch), int(m.hil_af_n)) if hasattr(m, "hil_af_arch") else copy.deepcopy(m)  # type: ignore[arg-type]
    fresh.load_state_dict({k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
                           for k, v in m.state_dict().items()})
    return fresh.float().eval()


def _build(arch: str, n: int) -> nn.Module:
    m = build(arch, n)
    m.hil_af_arch, m.hil_af_n = arch, n  # type: ignore[assignment]
    return m


def _over_val(ctx: Ctx, model: nn.Module, index: StackIndex | None, enc: EncodingConfig, window: int, max_pairs: int,
              seed: int, flatfield: Any, keys: tuple[str, ...],
              score: Callable[[PatchSet, np.ndarray], dict[str, float]]) -> dict[str, float] | None:
    """``score(ps, pairs)`` (means over the pairs) over the held-out stacks, read ``window`` at a time,
    weighted by pairs; each rank takes every world-th stack and the sums are all-reduced.  At most
    ~``max_pairs`` (RoI, slice) pairs (a seeded subset)."""
    if index is None:
        return None
    if ctx.world > 1:  # BatchNorm running statistics: rank 0's everywhere (what rank 0 saves)
        for b in model.buffers():
            dist.broadcast(b.data, 0)
    frac = min(1.0, max_pairs / max(1, index.samples))
    sums = [0.0] * (len(keys) + 1)
    ids = list(range(ctx.rank, len(index), ctx.world))
    for wi, ps in enumerate(iter_windows(index, enc, window, ids, flatfield)):
        pairs = ps.all_pairs()
        if frac < 1.0:
            rng = np.random.default_rng([seed, ctx.rank, wi])
            pairs = pairs[np.sort(rng.choice(len(pairs), max(1, int(round(frac * len(pairs)))), replace=False))]
        m = score(ps, pairs)
        for j, key in enumerate(keys):
            sums[j] += m[key] * len(pairs)
        sums[-1] += len(pairs)
    tot = _allsum(ctx, sums)
    n = max(tot[-1], 1.0)
    return {**{k: tot[j] / n for j, k in enumerate(keys)}, "pairs": int(tot[-1])}


def evaluate_stream(ctx: Ctx, model: nn.Module, index: StackIndex | None, enc: EncodingConfig, T: float, window: int,
                    max_pairs: int, seed: int, relabel: nn.Module | None = None, flatfield: Any = None) -> dict[str, float] | None:
    """``train.evaluate_pairs`` over the held-out stacks (``_over_val``); with ``relabel`` on the step-2
    pairs (slice = where the step-1 model leaves the lens)."""
    cpu = _cpu_fp32(model)

    def score(ps: PatchSet, pairs: np.ndarray) -> dict[str, float]:
        if relabel is not None:
            with torch.no_grad():
                for i in range(0, len(pairs), 512):
                    x, _ = ps.batch(pairs[i:i + 512])
                    bins = relabel(torch.from_numpy(x)).argmax(1).numpy()
                    pairs[i:i + 512, 1] = ps.to_stack_slice(pairs[i:i + 512, 0], bins)
        return evaluate_pairs(cpu, ps, pairs, T)

    return _over_val(ctx, model, index, enc, window, max_pairs, seed, flatfield, ("loss", "exact", "le1", "mae"), score)


def two_step_stream(ctx: Ctx, model1: nn.Module, model2: nn.Module, index: StackIndex | None, enc: EncodingConfig,
                    window: int, max_pairs: int, seed: int, flatfield: Any = None) -> dict[str, Any] | None:
    """``recipe.two_step`` (where step 1, and steps 1 + 2, leave the lens) over the held-out stacks."""
    from . import recipe

    c1, c2 = _cpu_fp32(model1), _cpu_fp32(model2)
    keys = ("mae", "exact", "le1")
    s1 = _over_val(ctx, model1, index, enc, window, max_pairs, seed, flatfield, keys,
                   lambda ps, pairs: recipe.two_step(c1, None, ps, pairs))
    s2 = _over_val(ctx, model2, index, enc, window, max_pairs, seed, flatfield, keys,
                   lambda ps, pairs: recipe.two_step(c1, c2, ps, pairs))
    if s1 is None or s2 is None:
        return None
    return {k: {**{q: v[q] for q in keys}, "samples": v["pairs"]} for k, v in (("step1", s1), ("pe2", s2))}


def _flatten(obj: Any, arrays: dict[str, np.ndarray]) -> Any:
    """``obj`` as JSON-able structure; tensors go to ``arrays`` (numpy, loaded with allow_pickle=False)."""
    if isinstance(obj, torch.Tensor):
        key = f"a{len(arrays)}"
        t = obj.detach().cpu()
        arrays[key] = (t.float() if t.dtype == torch.bfloat16 else t).numpy()
        return {"__t__": key, "dtype": str(t.dtype).removeprefix("torch.")}
    if isinstance(obj, dict):
        return {"__d__": [[k, _flatten(v, arrays)] for k, v in obj.items()]}
    if isinstance(obj, (list, tuple)):
        return {"__l__": [_flatten(v, arrays) for v in obj], "tuple": isinstance(obj, tuple)}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise FormatError(f"checkpoint: cannot store a {type(obj).__name__}")


def _unflatten(node: Any, arrays: Any) -> Any:
    if isinstance(node, dict) and "__t__" in node:
        t = torch.from_numpy(np.array(arrays[node["__t__"]]))
        return t.to(getattr(torch, node["dtype"]))
    if isinstance(node, dict) and "__d__" in node:
        return {k: _unflatten(v, arrays) for k, v in node["__d__"]}
    if isinstance(node, dict) and "__l__" in node:
        items = [_unflatten(v, arrays) for v in node["__l__"]]
        return tuple(items) if node.get("tuple") else items
    return node


def _save_checkpoint(path: Path, obj: dict[str, Any]) -> None:
    """State dicts and numbers as an npz (tensors) plus a JSON structure: no pickle anywhere."""
    arrays: dict[str, np.ndarray] = {}
    structure = json.dumps(_flatten(obj, arrays))
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.savez(f, __structure__=np.array(structure), **arrays)  # type: ignore[arg-type]
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """A checkpoint written by this module (npz + JSON structure, read with allow_pickle=False)."""
    try:
        with np.load(path, allow_pickle=False) as z:
            structure = json.loads(str(z["__structure__"]))
            out = _unflatten(structure, {k: z[k] for k in z.files if k != "__structure__"})
    except Exception as e:
        raise FormatError(f"{path}: not a readable hil-af checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(out, dict):
        raise FormatError(f"{path}: not a hil-af checkpoint (no top-level table)")
    return out


def _fingerprint(cfg: TrainConfig, n: int) -> str:
    keep = ("arch", "epochs", "epochs2", "batch", "lr", "lr2", "seed", "val_frac", "size", "fit", "roi_pe", "lens_pe")
    return json.dumps({**{k: getattr(cfg, k, None) for k in keep}, "n": n}, sort_keys=True)


def train_distributed(stacks_dir: str | Path, out_dir: str | Path, cfg: TrainConfig, d: DistConfig,
                      init: str | Path | None = None) -> dict[str, Any] | None:
    """Train step 1 and step 2 with streamed data on this process's rank; rank 0 writes the model
    and returns the card, the other ranks return None."""
    ctx = setup(d)
    ok = False
    try:
        card = _train(ctx, Path(stacks_dir), Path(out_dir), cfg, d, init)
        ok = True
        return card
    finally:
        if ctx.world > 1 and dist.is_initialized():
            if ok:  # every rank done (rank 0 has written the model) before any tears its gloo links down
                dist.barrier()  # (a rank that failed does not wait: the others' collectives time out)
            dist.destroy_process_group()


def _train(ctx: Ctx, stacks_dir: Path, out: Path, cfg: TrainConfig, d: DistConfig,
           init: str | Path | None) -> dict[str, Any] | None:
    from tqdm import tqdm

    t_start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(max(1, int(cfg.threads)))
    if cfg.batch % ctx.world:
        raise BadInput(f"--batch {cfg.batch} is the total batch: it must be a multiple of the {ctx.world} processes")
    amp_dtype, use_scaler = pick_precision(d.precision, ctx.device)
    enc = EncodingConfig(size=cfg.size, roi_pe=cfg.roi_pe, lens_pe=cfg.lens_pe, fit=cfg.fit)
    index = StackIndex.build(stacks_dir)
    tr, va, val_ids = index.split(cfg.val_frac, cfg.seed)
    ff = None
    if cfg.flatfield:
        from ..calibration.flatfield import load_flatfield

        ff = load_flatfield(cfg.flatfield)
    if init is not None:
        from .inference import read_card

        ic = read_card(Path(init))
        if ic.get("arch") != cfg.arch:
            raise BadInput(f"--init {init} is a {ic.get('arch')!r} model, training {cfg.arch!r}")
        for part in (index, tr, va):  # the model keeps the init model's output bins (any sweep length maps onto them)
            if part is not None:
                part.bins = int(ic["n_slices"])
    per_rank = cfg.batch // ctx.world
    budget = tr.samples if not cfg.max_samples_per_epoch else min(tr.samples, cfg.max_samples_per_epoch)
    steps = max(1, budget // cfg.batch)
    ckpt_path = out / CHECKPOINT
    fp = _fingerprint(cfg, index.n)
    state: dict[str, Any] = {"phase": 1, "epoch": 0, "step": 0, "log": [], "step1": None, "model": None, "opt": None,
                             "throughput": {}}
    resumed_from = None
    if d.resume and ckpt_path.is_file():
        ck = load_checkpoint(ckpt_path)
        if ck.get("fingerprint") != fp:
            raise BadInput(f"--resume: {ckpt_path} was written by a run with other settings ({ck.get('fingerprint')})")
        state.update(phase=int(ck["phase"]), epoch=int(ck["epoch"]), step=int(ck["step"]), log=json.loads(ck["log"]),
                     step1=ck["step1"] or None, model=ck["model"], opt=ck["opt"], throughput=json.loads(ck["throughput"]))
        resumed_from = {"phase": state["phase"], "epoch": state["epoch"], "step": state["step"],
                        "world_size": int(ck["world_size"])}
        if ctx.main:
            tqdm.write(f"resuming step {state['phase']} at epoch {state['epoch'] + 1}, batch {state['step']} ({ckpt_path})")
    if ctx.main:
        out.mkdir(parents=True, exist_ok=True)
    done_steps = 0

    def checkpoint(phase: int, epoch: int, step: int, model: nn.Module, opt: torch.optim.Optimizer) -> None:
        if not ctx.main:
            return
        m = model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
        _save_checkpoint(ckpt_path, {
            "fingerprint": fp, "phase": phase, "epoch": epoch, "step": step, "world_size": ctx.world,
            "model": {k: v.detach().cpu() for k, v in m.state_dict().items()}, "opt": opt.state_dict(),
            "step1": state["step1"] or {}, "log": json.dumps(state["log"]), "throughput": json.dumps(state["throughput"])})

    def run_phase(phase: int, model: nn.Module, epochs: int, lr: float, T: float) -> None:
        nonlocal done_steps
        model.to(ctx.device)
        ddp: nn.Module = model
        if ctx.world > 1:
            if ctx.device.type == "cuda":  # BatchNorm statistics over the global batch (SyncBatchNorm is CUDA-only)
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            ddp = nn.parallel.DistributedDataParallel(model, device_ids=[ctx.device.index] if ctx.device.type == "cuda" else None)
        opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=cfg.weight_decay)
        resuming = state["phase"] == phase and state["opt"] is not None
        if resuming:
            opt.load_state_dict(state["opt"])
        scaler = torch.amp.GradScaler("cuda", enabled=use_scaler)
        relabel_arg = (cfg.arch, state["step1"]) if phase == 2 else None
        relabel_model = None
        if phase == 2:
            relabel_model = build(cfg.arch, index.n)
            relabel_model.load_state_dict(state["step1"])
            relabel_model.eval()
        total = steps * epochs
        first_epoch = state["epoch"] if resuming else 0
        for ep in range(first_epoch, epochs):
            skip = state["step"] if (resuming and ep == first_epoch) else 0
            ds = StreamingPairs(tr, enc, per_rank, steps, rank=ctx.rank, world=ctx.world, epoch=1000 * phase + ep,
                                seed=cfg.seed, window=d.window, skip=skip, noise=cfg.noise, jitter=cfg.jitter,
                                flatfield=ff, relabel=relabel_arg)
            dl = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=d.workers,
                                             pin_memory=ctx.device.type == "cuda")
            ddp.train()
            t0 = time.perf_counter()
            run_loss, nb, s = 0.0, 0, skip
            bar = tqdm(total=steps, initial=skip, desc=f"step{phase} epoch {ep + 1}/{epochs}", unit="batch",
                       leave=False, disable=not ctx.main)
            for x, y in dl:
                x = x.to(ctx.device, non_blocking=True)
                y = y.to(ctx.device, non_blocking=True)
                torch.manual_seed(hash((cfg.seed, phase, ep, s, ctx.rank)) & 0x7FFFFFFF)  # dropout: resumable
                for g in opt.param_groups:
                    g["lr"] = _lr_at(ep * steps + s, total, lr)
                ac = torch.autocast(device_type=ctx.device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
                with ac:
                    logits = ddp(x)
                loss = ordinal_ce(logits.float(), y, T)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                s += 1
                nb += 1
                done_steps += 1
                run_loss += loss.item()
                bar.update(1)
                if s % d.checkpoint_every == 0 and s < steps:
                    checkpoint(phase, ep, s, model, opt)
                if d.abort_after_steps is not None and done_steps >= d.abort_after_steps:
                    raise SimulatedKill(f"stopped after {done_steps} steps")
            bar.close()
            secs = time.perf_counter() - t0
            loss_sum, n_sum = _allsum(ctx, [run_loss, float(nb)])
            rec: dict[str, Any] = {"step": f"step{phase}", "epoch": ep + 1, "train_loss": loss_sum / max(n_sum, 1.0),
                                   "seconds": round(secs, 1), "samples_per_s": round(nb * cfg.batch / max(secs, 1e-9), 1)}
            state["throughput"][f"step{phase}"] = rec["samples_per_s"]
            m = evaluate_stream(ctx, model, va, enc, T, d.window, cfg.max_val_pairs, cfg.seed, relabel_model, ff)
            if m is not None:
                rec.update({f"val_{k}": v for k, v in m.items() if k != "pairs"})
            state["log"].append(rec)
            if ctx.main:
                tqdm.write(" ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in rec.items()))
            checkpoint(phase, ep + 1, 0, model, opt)
        state.update(phase=phase + 1, epoch=0, step=0, opt=None)

    # ---- step 1
    model = _build(cfg.arch, index.n)
    if state["phase"] == 1:
        if state["model"] is not None:
            model.load_state_dict(state["model"])
        elif init is not None:
            load_weights(model, Path(init) / WEIGHTS, "step1")
        t1 = time.perf_counter()
        run_phase(1, model, cfg.epochs, cfg.lr, cfg.T1)
        t1 = time.perf_counter() - t1
        state["step1"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
        state["model"] = None
    else:
        t1 = 0.0
        model.load_state_dict(state["step1"])
    model.to(ctx.device)
    val_step1 = evaluate_stream(ctx, model, va, enc, cfg.T1, d.window, cfg.max_val_pairs, cfg.seed, None, ff)
    # ---- step 2
    model2 = _build(cfg.arch, index.n)
    if state["model"] is not None:
        model2.load_state_dict(state["model"])
    elif init is not None:
        load_weights(model2, Path(init) / WEIGHTS, "step2")
    else:
        model2.load_state_dict(state["step1"])
    t2 = time.perf_counter()
    if state["phase"] == 2:
        run_phase(2, model2, cfg.n_epochs2, cfg.lr2, cfg.T2)
    t2 = time.perf_counter() - t2
    m1 = build(cfg.arch, index.n)
    m1.load_state_dict(state["step1"])
    m1.eval()
    val_step2 = evaluate_stream(ctx, model2, va, enc, cfg.T2, d.window, cfg.max_val_pairs, cfg.seed, m1, ff)
    two = two_step_stream(ctx, model, model2, va, enc, d.window, cfg.max_val_pairs, cfg.seed, ff)
    if not ctx.main:
        return None
    # ---- rank 0 writes the model: exported from fp32 CPU copies
    c1, c2 = _cpu_fp32(model), _cpu_fp32(model2)
    export_onnx(c1, out / "step1.onnx", cfg.size)
    export_onnx(c2, out / "step2.onnx", cfg.size)
    check = next(iter_windows(va or tr, enc, 1, [0], ff))
    pick = np.random.default_rng(cfg.seed).choice(len(check.all_pairs()), min(64, len(check.all_pairs())), replace=False)
    xb, _ = check.batch(check.all_pairs()[np.sort(pick)])
    diffs = {"step1": onnx_max_abs_diff(c1, out / "step1.onnx", xb), "step2": onnx_max_abs_diff(c2, out / "step2.onnx", xb)}
    save_weights(out / WEIGHTS, {"step1": c1, "step2": c2})
    hw = _view_hw(tr.paths[0])
    card = cardmod.build_card(
        arch=cfg.arch, n_slices=index.n, encoding=enc.to_dict(), params=count_params(c1),
        macs=count_macs(c1, (cfg.size, cfg.size)),
        data={"stacks_dir": str(stacks_dir), "stacks": len(index), "rois_with_gt": int(index.rois.sum()),
              "train_rois": int(tr.rois.sum()), "val_rois": int(va.rois.sum()) if va else 0,
              "val_stacks": [Path(index.paths[i]).name for i in val_ids],
              "val_pairs": (val_step1 or {}).get("pairs", 0),
              "step1_samples": tr.samples, "step2_samples": tr.samples},
        settings={**asdict(cfg), "epochs2": cfg.n_epochs2, "init": str(init) if init else None,
                  "optimizer": "AdamW, warm-up + cosine", "loss": "ordinal soft-label CE",
                  "augmentation": f"position jitter +-{cfg.jitter} px (RoI-PE follows), Gaussian noise std U(0,{cfg.noise}) on normalised views",
                  "torch": torch.__version__},
        val={"step1": _strip(val_step1), "step2": _strip(val_step2), "history": state["log"], "two_step": two,
             "two_step_before": None, "kept": "trained",
             "early_stopping": "not in the streaming engine: every epoch runs (--patience is ignored)"},
        onnx_check={"max_abs_logit_diff": diffs, "batch": int(len(xb)), "exported_from": "fp32 copy on CPU"},
        timing_s={"step1": round(t1, 1), "step2": round(t2, 1), "total": round(time.perf_counter() - t_start, 1)},
        distributed={"world_size": ctx.world, "backend": ctx.backend, "launcher": "torchrun" if launched() else None,
                     "nodes": int(os.environ.get("GROUP_WORLD_SIZE", os.environ.get("NNODES", "1"))) if launched() else 1,
                     "device": ctx.device.type, "precision": str(amp_dtype).replace("torch.", "") if amp_dtype else "fp32",
                     "global_batch": cfg.batch, "batch_per_rank": per_rank, "steps_per_epoch": steps,
                     "samples_per_s": state["throughput"],
                     "streaming": {"window_stacks": d.window, "workers_per_rank": d.workers,
                                   "view_bytes_per_worker_bound": window_bytes(index.n, hw, d.window)},
                     "resumed_from": resumed_from},
    )
    if ff is not None and cfg.flatfield:
        import shutil

        from ..calibration.flatfield import file_sha256

        shutil.copyfile(cfg.flatfield, out / FLATFIELD)
        card["flatfield"] = {"file": FLATFIELD, "sha256": file_sha256(out / FLATFIELD), "from": str(cfg.flatfield)}
    cardmod.write_card(out, card)
    ckpt_path.unlink(missing_ok=True)
    return card


def _strip(m: dict[str, float] | None) -> dict[str, float] | None:
    return None if m is None else {k: v for k, v in m.items() if k != "pairs"}


def _view_hw(path: str) -> tuple[int, int]:
    """(H, W) of a stack's views from the .npy header of ``left`` (nothing decompressed beyond it)."""
    import zipfile

    with zipfile.ZipFile(path) as z, z.open("left.npy") as f:
        major, _ = np.lib.format.read_magic(f)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape = read(f)[0]
    return int(shape[1]), int(shape[2])
