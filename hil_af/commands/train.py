"""``hil-af train --stacks DIR --out MODEL_DIR [--init MODEL_DIR] [--epochs N] [--no-roi-pe] [--no-lens-pe] ...``.

Trains the step-1 (T=1) and step-2 (T=0.5) position-encoded AF models from
the focal stacks under DIR and writes MODEL_DIR/step1.onnx, step2.onnx,
weights.npz (for ``--init`` fine-tuning) and card.json (hil_af.model.train).
Needs the ``[train]`` extra (torch); exits 2 with a message when it is absent.

Fine-tuning recipe: ``hil-af train --init models --stacks SWEEPS --out DIR`` with no
other flag uses hil_af.model.recipe.FINE_TUNE (every setting not given on the command
line), holds whole sweeps out for validation and early stopping, takes the encoding
(RoI-PE / lens-PE on or off) and the architecture from the init model, and prints how
much the two-step result on the held-out sweeps improved.
"""

from __future__ import annotations

from ..cli import add_json_option, emit_json
from ..errors import BadInput


PRETRAIN = {"epochs": 8, "epochs2": None, "batch": 256, "lr": 5e-3, "lr2": 1.5e-3, "val_frac": 0.15, "patience": None,
            "samples_per_epoch": None}


def add_arguments(p) -> None:
    p.add_argument("--stacks", required=True, metavar="DIR", help="folder of focal stacks (*.npz, searched recursively)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to write the model to")
    p.add_argument("--init", default=None, metavar="MODEL_DIR",
                   help="fine-tune from this model's weights.npz (the fine-tuning recipe: defaults below change)")
    p.add_argument("--epochs", type=int, default=None, help="step-1 epochs (default 8; fine-tuning 20, early-stopped)")
    p.add_argument("--epochs2", type=int, default=None,
                   help="step-2 epochs (default epochs // 2, at least 1; fine-tuning 10, early-stopped)")
    p.add_argument("--no-roi-pe", action="store_true", help="ablation: RoI-PE channels set to zero (with --init: as the init model)")
    p.add_argument("--no-lens-pe", action="store_true", help="ablation: lens-PE channel set to zero")
    p.add_argument("--arch", choices=("mcunet", "mcunet-plain", "mcunet-lite", "mcunet-tiny", "mobilenetv2"), default=None,
                   help="network (hil_af/model/nets.py; default mcunet: correlation stem + lens-shift head; with --init: the init model's)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split, the initialisation and the sample order")
    p.add_argument("--val-frac", type=float, default=None,
                   help="fraction of stacks held out for validation (default 0.15; fine-tuning 0.25, at least one sweep)")
    p.add_argument("--patience", type=int, default=None,
                   help="stop a step after this many epochs without a better held-out two-step MAE (fine-tuning default 5)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch", type=int, default=None, help="batch size (default 256; fine-tuning 64)")
    p.add_argument("--lr", type=float, default=None, help="step-1 peak learning rate (default 5e-3; fine-tuning 2e-3)")
    p.add_argument("--lr2", type=float, default=None, help="step-2 peak learning rate (default 1.5e-3; fine-tuning 8e-4)")
    p.add_argument("--fit", choices=("crop", "area"), default="crop", help="how RoIs are brought to the input size")
    p.add_argument("--size", type=int, default=None, metavar="PX",
                   help="model input side in px (default 64; with --init the init model's)")
    p.add_argument("--flatfield", metavar="FLAT.npz", default=None,
                   help="flat-field gains applied to the views before encoding (copied into MODEL_DIR; inference uses it)")
    p.add_argument("--samples-per-epoch", type=int, default=None, help="subsample this many samples per epoch")
    r = p.add_argument_group("real-capture ranking stage (hil_af/model/realrank.py, README 'Real captures')")
    r.add_argument("--rank-scenes", metavar="DIR", default=None,
                   help="real captures with ground-truth defocus (NNN.npz + NNN_gt.npz, from hil-af import-xin): after "
                        "step 1, tune it to rank their cells by defocus, early-stopped on --rank-val; step 2 follows")
    r.add_argument("--rank-train", metavar="IDS", default=None,
                   help="scenes to tune on (default 005,006,007,008,010,012,013,014,015,017)")
    r.add_argument("--rank-val", metavar="IDS", default=None, help="held-out scenes that pick the step (default 009,011,016)")
    r.add_argument("--rank-steps", type=int, default=None, help="optimiser steps of the stage (default 300)")
    r.add_argument("--rank-lr", type=float, default=None, help="its learning rate (default 1e-4)")
    add_json_option(p)
    # --- issue 17: streaming / distributed training options (hil_af/model/distributed.py, docs/l2af.md)
    g = p.add_argument_group("streaming / distributed training (docs/l2af.md)")
    g.add_argument("--stream", action="store_true",
                   help="stream samples from the stacks on disk (implied under torchrun, with --resume or --device cuda)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto",
                   help="streaming engine's device (default auto: cuda when available); the in-memory trainer is CPU")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="autocast dtype; auto: bf16 (fp16 where bf16 is unsupported) on CUDA, fp32 on CPU")
    g.add_argument("--window", type=int, default=2, help="stacks each data worker holds in memory (default 2)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per rank (default 0)")
    g.add_argument("--resume", action="store_true", help="continue from MODEL_DIR/checkpoint.npz (implies --stream)")
    g.add_argument("--checkpoint-every", type=int, default=50, metavar="STEPS",
                   help="checkpoint every STEPS optimizer steps and at each epoch end (default 50)")
    # --- end issue 17


def _settings(args) -> dict:
    """The flags given, else the pretraining or the fine-tuning defaults; with --init the encoding and
    the architecture follow the init model."""
    from ..model.recipe import FINE_TUNE

    base = dict(PRETRAIN)
    roi_pe, lens_pe, arch = not args.no_roi_pe, not args.no_lens_pe, args.arch or "mcunet"
    size = args.size
    if args.init is not None:
        from ..model.inference import read_card

        card = read_card(args.init)
        base.update({("samples_per_epoch" if k == "max_samples_per_epoch" else k): v for k, v in FINE_TUNE.items()})
        enc = card.get("encoding", {})
        roi_pe = roi_pe and bool(enc.get("roi_pe", True))
        lens_pe = lens_pe and bool(enc.get("lens_pe", True))
        arch = args.arch or str(card.get("arch", "mcunet"))
        if size is None:
            size = int(enc.get("size", 64))
    out = {k: (getattr(args, k) if getattr(args, k) is not None else v) for k, v in base.items()}
    out.update(roi_pe=roi_pe, lens_pe=lens_pe, arch=arch, size=64 if size is None else int(size))
    return out


def run(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise BadInput("hil-af train needs the [train] extra: from a checkout pip install -e '.[train]' "
                       "(torch==2.13.0)") from e
    from ..model.train import TrainConfig, train

    st = _settings(args)
    if st["batch"] < 1:
        raise BadInput(f"--batch must be >= 1, got {st['batch']}")
    if st["epochs"] < (0 if args.init is not None else 1):  # 0 with --init: step 1 is the init model's (+ rank stage)
        raise BadInput(f"--epochs must be >= {0 if args.init is not None else 1}, got {st['epochs']}")
    rank = {k: getattr(args, f"rank_{k}") for k in ("train", "val", "steps", "lr") if getattr(args, f"rank_{k}") is not None}
    if rank and not args.rank_scenes:
        raise BadInput("--rank-train/--rank-val/--rank-steps/--rank-lr need --rank-scenes DIR")
    if rank.get("steps", 1) < 1 or rank.get("lr", 1.0) <= 0:
        raise BadInput(f"--rank-steps must be >= 1 and --rank-lr > 0, got {rank.get('steps')} and {rank.get('lr')}")
    if not 16 <= st["size"] <= 256:
        raise BadInput(f"--size must be 16..256 px, got {st['size']}")
    if args.threads < 1:
        raise BadInput(f"--threads must be >= 1, got {args.threads}")
    if st["epochs2"] is not None and st["epochs2"] < 1:
        raise BadInput(f"--epochs2 must be >= 1, got {st['epochs2']}")
    if st["patience"] is not None and st["patience"] < 1:
        raise BadInput(f"--patience must be >= 1, got {st['patience']}")
    cfg = TrainConfig(arch=st["arch"], epochs=st["epochs"], epochs2=st["epochs2"], batch=st["batch"], lr=st["lr"],
                      lr2=st["lr2"], seed=args.seed, val_frac=st["val_frac"], threads=args.threads,
                      roi_pe=st["roi_pe"], lens_pe=st["lens_pe"], fit=args.fit, patience=st["patience"],
                      max_samples_per_epoch=st["samples_per_epoch"], flatfield=args.flatfield, size=st["size"],
                      rank_scenes=args.rank_scenes, **{f"rank_{k}": v for k, v in rank.items()})
    # --- issue 17: streamed / DDP (torchrun) / GPU training runs in model/distributed.py
    from ..model import distributed

    dcfg = distributed.config_from_args(args)
    if distributed.wanted(dcfg):
        if args.rank_scenes:
            raise BadInput("--rank-scenes runs in the in-memory trainer only (not with --stream, torchrun or cuda)")
        card = distributed.train_distributed(args.stacks, args.out, cfg, dcfg, init=args.init)
        if card is None:  # a rank other than 0: rank 0 writes and reports
            return 0
    else:
        card = train(args.stacks, args.out, cfg, init=args.init)
    # --- end issue 17
    val = card["val"]
    summary = {"out": args.out, "arch": card["arch"], "params": card["params"], "flops": card["flops"],
               "val": {k: val[k] for k in ("step1", "step2")}, "two_step": val.get("two_step"),
               "two_step_before": val.get("two_step_before"), "kept": val.get("kept"), "timing_s": card["timing_s"]}
    if args.json is not None:
        emit_json(summary, args.json)
    if args.json != "-":
        print(summary_line(card, args.out))
    return 0


def summary_line(card: dict, out: str) -> str:
    """One line: what was written and what the held-out sweeps say about it."""
    val = card["val"]
    head = f"wrote {out} ({card['arch']}, {card['params']} params)"
    after, before = val.get("two_step"), val.get("two_step_before")
    if not after:
        return head + "; no held-out stacks, nothing validated"
    a = after["pe2"]
    n_val = len(card["data"].get("val_stacks", []))
    msg = f"{head}; held-out {n_val} stack(s), two-step MAE {a['mae']:.2f} slices, <=1 {100 * a['le1']:.1f} %"
    if before:
        b = before["pe2"]
        msg = (f"{head}; fine-tuning on held-out {n_val} sweep(s): two-step MAE {b['mae']:.2f} -> {a['mae']:.2f} slices, "
               f"<=1 {100 * b['le1']:.1f} -> {100 * a['le1']:.1f} %")
        if val.get("kept") == "init":
            msg += "; no improvement, wrote the init model unchanged"
    rank = val.get("rank")
    if rank:
        msg += (f"; real-capture ranking on held-out scenes {','.join(rank['val_scenes'])}: mean |Spearman| "
                f"{rank['val_rank_before']:.3f} -> {rank['best_val_rank']:.3f} (step {rank['best_step']})")
    return msg
