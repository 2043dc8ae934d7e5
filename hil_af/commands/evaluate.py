"""``hil-af eval --stacks DIR [--method M ...]``: the paper's protocol, methods side by side."""

from __future__ import annotations

import sys

from ..cli import emit_json
from ..controller.methods import METHODS
from .focus import add_controller_options


def add_arguments(p) -> None:
    p.add_argument("--stacks", required=True, metavar="DIR", help="folder of focal stacks (*.npz) or one stack")
    p.add_argument("--method", action="append", choices=METHODS, metavar="M",
                   help=f"method to evaluate, repeatable (default: all that have what they need; one of {', '.join(METHODS)})")
    p.add_argument("--start-stride", type=int, default=1, help="use every k-th start slice (default 1: all)")
    p.add_argument("--json", metavar="PATH", nargs="?", const="-", help="write the eval JSON object (stdout with no PATH)")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--no-memo", action="store_true",
                   help="share no estimator work across samples (slower; ms/step then timed on every cycle)")
    add_controller_options(p)


def default_methods(args) -> list[str]:
    from ..paths import models_dir

    methods = ["cdaf"]
    if args.calibration:
        methods += ["pdaf"]
    if args.global_calibration:
        methods += ["pdaf-global", "pdaf-loop"]
    if args.zncc_calibration:
        methods += ["zncc2"]
    model = args.model or models_dir()
    from pathlib import Path

    if (Path(model) / "step1.onnx").exists():
        methods = ["pe", "pe2"] + methods + ["hybrid"]
    return methods


def run(args) -> int:
    from ..evaluation import format_table, stack_files, timed_evaluate

    methods = args.method or default_methods(args)
    result, secs = timed_evaluate(
        stack_files(args.stacks), methods, calibration=args.calibration,
        global_calibration=args.global_calibration, zncc_calibration=args.zncc_calibration,
        model_dir=args.model, flatfield=args.flatfield,
        threads=args.threads, start_stride=args.start_stride, memoise=not args.no_memo,
        progress=not args.no_progress and sys.stderr.isatty(),
    )
    if args.json:
        emit_json(result, args.json)
    if args.json != "-":
        print(format_table(result))
        print(f"({secs:.2f} s)")
    return 0
