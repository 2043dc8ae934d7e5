"""``hil-af train --stacks DIR --out MODEL_DIR [--init MODEL_DIR] [--epochs N] [--no-roi-pe] [--no-lens-pe] ...``.

Trains the step-1 (T=1) and step-2 (T=0.5) position-encoded AF models from
the focal stacks under DIR and writes MODEL_DIR/step1.onnx, step2.onnx,
weights.npz (for ``--init`` fine-tuning) and card.json (hil_af.model.train).
Needs the ``[train]`` extra (torch); exits 2 with a message when it is absent.
"""

from __future__ import annotations

from ..cli import add_json_option, emit_json
from ..errors import BadInput


def add_arguments(p) -> None:
    p.add_argument("--stacks", required=True, metavar="DIR", help="folder of focal stacks (*.npz, searched recursively)")
    p.add_argument("--out", required=True, metavar="MODEL_DIR", help="folder to write the model to")
    p.add_argument("--init", default=None, metavar="MODEL_DIR", help="fine-tune from this model's weights.npz")
    p.add_argument("--epochs", type=int, default=8, help="step-1 epochs (default 8)")
    p.add_argument("--epochs2", type=int, default=None, help="step-2 epochs (default epochs // 2, at least 1)")
    p.add_argument("--no-roi-pe", action="store_true", help="ablation: RoI-PE channels set to zero")
    p.add_argument("--no-lens-pe", action="store_true", help="ablation: lens-PE channel set to zero")
    p.add_argument("--arch", choices=("mcunet", "mcunet-plain", "mobilenetv2"), default="mcunet",
                   help="network (hil_af/model/nets.py; default mcunet: correlation stem + lens-shift head)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-frac", type=float, default=0.15, help="fraction of stacks held out for validation")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--lr", type=float, default=5e-3, help="step-1 peak learning rate")
    p.add_argument("--lr2", type=float, default=1.5e-3, help="step-2 peak learning rate")
    p.add_argument("--fit", choices=("crop", "area"), default="crop", help="how RoIs are brought to the input size")
    p.add_argument("--flatfield", metavar="FLAT.npz", default=None,
                   help="flat-field gains applied to the views before encoding (copied into MODEL_DIR; inference uses it)")
    p.add_argument("--samples-per-epoch", type=int, default=None, help="subsample this many samples per epoch")
    add_json_option(p)
    # --- issue 17: streaming / distributed training options (hil_af/model/distributed.py, docs/l2af.md)
    g = p.add_argument_group("streaming / distributed training (docs/l2af.md)")
    g.add_argument("--stream", action="store_true",
                   help="stream samples from the stacks on disk (implied under torchrun, with --resume or on CUDA)")
    g.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: cuda when available")
    g.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), default="auto",
                   help="autocast dtype; auto: bf16 (fp16 where bf16 is unsupported) on CUDA, fp32 on CPU")
    g.add_argument("--window", type=int, default=2, help="stacks each data worker holds in memory (default 2)")
    g.add_argument("--workers", type=int, default=0, help="DataLoader worker processes per rank (default 0)")
    g.add_argument("--resume", action="store_true", help="continue from MODEL_DIR/checkpoint.pt (implies --stream)")
    g.add_argument("--checkpoint-every", type=int, default=50, metavar="STEPS",
                   help="checkpoint every STEPS optimizer steps and at each epoch end (default 50)")
    # --- end issue 17


def run(args) -> int:
    try:
        import torch  # noqa: F401
    except ImportError as e:
        raise BadInput("hil-af train needs the [train] extra: pip install 'hil-af[train]' (torch==2.13.0)") from e
    from ..model.train import TrainConfig, train

    for name in ("epochs", "batch", "threads"):
        if getattr(args, name) < 1:
            raise BadInput(f"--{name} must be >= 1, got {getattr(args, name)}")
    if args.epochs2 is not None and args.epochs2 < 1:
        raise BadInput(f"--epochs2 must be >= 1, got {args.epochs2}")
    cfg = TrainConfig(arch=args.arch, epochs=args.epochs, epochs2=args.epochs2, batch=args.batch, lr=args.lr,
                      lr2=args.lr2, seed=args.seed, val_frac=args.val_frac, threads=args.threads,
                      roi_pe=not args.no_roi_pe, lens_pe=not args.no_lens_pe, fit=args.fit,
                      max_samples_per_epoch=args.samples_per_epoch, flatfield=args.flatfield)
    # --- issue 17: streamed / DDP (torchrun) / GPU training runs in model/distributed.py
    from ..model import distributed

    dcfg = distributed.config_from_args(args)
    if distributed.wanted(dcfg):
        card = distributed.train_distributed(args.stacks, args.out, cfg, dcfg, init=args.init)
        if card is None:  # a rank other than 0: rank 0 writes and reports
            return 0
    else:
        card = train(args.stacks, args.out, cfg, init=args.init)
    # --- end issue 17
    summary = {"out": args.out, "arch": card["arch"], "params": card["params"], "flops": card["flops"],
               "val": {k: card["val"][k] for k in ("step1", "step2")}, "timing_s": card["timing_s"]}
    if args.json is not None:
        emit_json(summary, args.json)
    else:
        v1, v2 = card["val"]["step1"], card["val"]["step2"]
        extra = (f"; val step1 exact {v1['exact']:.3f} le1 {v1['le1']:.3f}, step2 exact {v2['exact']:.3f} le1 {v2['le1']:.3f}"
                 if v1 and v2 else "")
        print(f"wrote {args.out} ({card['arch']}, {card['params']} params){extra}")
    return 0
