"""``hil-af eval --stacks DIR [--method M ...]``: the paper's protocol, methods side by side."""

from __future__ import annotations

from ..cli import emit_json
from ..controller.methods import METHODS
from ..progress import add_progress_option
from .focus import add_controller_options, check_controller_options


def add_arguments(p) -> None:
    p.add_argument("--stacks", required=True, metavar="DIR", help="folder of focal stacks (*.npz) or one stack")
    p.add_argument("--method", action="append", choices=METHODS, metavar="M",
                   help=f"method to evaluate, repeatable (default: all that have what they need; one of {', '.join(METHODS)})")
    p.add_argument("--start-stride", type=int, default=1, metavar="K", help="use every k-th start slice (default 1: all)")
    p.add_argument("--json", metavar="PATH", nargs="?", const="-", help="write the eval JSON object (stdout with no PATH)")
    add_progress_option(p)
    p.add_argument("--no-memo", action="store_true",
                   help="share no estimator work across samples (slower; ms/step then timed on every cycle)")
    add_controller_options(p)


# what each method needs beyond the stacks, and where eval gets it
_NEEDS = {
    "pdaf": "calibration",
    "pdaf-global": "global_calibration",
    "pdaf-loop": "global_calibration",
    "zncc2": "zncc_calibration",
    "pe": "model",
    "pe2": "model",
    "hybrid": "model",
}


def _have(args) -> dict[str, bool]:
    from pathlib import Path

    from ..paths import models_dir

    model = Path(args.model or models_dir())
    return {"calibration": bool(args.calibration), "global_calibration": bool(args.global_calibration),
            "zncc_calibration": bool(args.zncc_calibration), "model": (model / "step1.onnx").exists()}


def _why(need: str, args) -> str:
    """What a method that needs ``need`` lacks, as the object of "needs": says what to give."""
    if need == "calibration":
        was = getattr(args, "calibration_was_global", None)
        if was:
            return (f"a per-position calibration, and {was} was fitted with --global "
                    "(hil-af calibrate fit without --global makes one)")
        return "a per-position calibration: --calibration CAL.json (from hil-af calibrate fit)"
    if need == "zncc_calibration":
        return ("a ZNCC calibration: --zncc-calibration CAL.json "
                "(from hil-af calibrate fit --method zncc --max-shift 6 --refine parabola)")
    if need == "global_calibration":
        return ("a global calibration: --calibration CALG.json fitted with hil-af calibrate fit --global "
                "(or --global-calibration CALG.json beside a per-position one)")
    return f"a model, and there is no step1.onnx in {args.model or 'the shipped models/ folder'} (--model MODEL_DIR)"


def default_methods(args) -> tuple[list[str], list[str]]:
    """(methods to run, one line per group of methods left out and why)."""
    have = _have(args)
    order = ["pe", "pe2", "cdaf", "pdaf", "pdaf-global", "pdaf-loop", "zncc2", "hybrid"]
    methods = [m for m in order if have.get(_NEEDS.get(m, ""), True)]
    skipped: dict[str, list[str]] = {}
    for m in order:
        if m not in methods:
            skipped.setdefault(_why(_NEEDS[m], args), []).append(m)
    return methods, [f"{', '.join(ms)}: {'needs' if len(ms) == 1 else 'each needs'} {why}" for why, ms in skipped.items()]


def run(args) -> int:
    import sys

    from ..errors import BadInput
    from ..evaluation import format_table, stack_files, timed_evaluate
    from .focus import resolve_calibrations

    if args.start_stride < 1:
        raise BadInput(f"--start-stride must be >= 1 (every K-th start slice), got {args.start_stride}")
    check_controller_options(args)
    files = stack_files(args.stacks)  # a missing or empty --stacks is one error line, before any "skipped" line
    resolve_calibrations(args)
    if args.method:
        methods = args.method
        have = _have(args)
        for m in methods:
            need = _NEEDS.get(m)
            if need in ("calibration", "global_calibration", "zncc_calibration") and not have[need]:
                raise BadInput(f"method {m} needs {_why(need, args)}")
    else:
        methods, skipped = default_methods(args)
        for line in skipped:
            print(f"hil-af eval: skipped {line}", file=sys.stderr)
    result, secs = timed_evaluate(
        files, methods, calibration=args.calibration,
        global_calibration=args.global_calibration, zncc_calibration=args.zncc_calibration,
        model_dir=args.model, flatfield=args.flatfield,
        threads=args.threads, start_stride=args.start_stride, memoise=not args.no_memo,
        progress=args.progress,
    )
    if args.json:
        emit_json(result, args.json)
    if args.json != "-":
        print(format_table(result))
        print(f"({secs:.2f} s)")
    return 0
