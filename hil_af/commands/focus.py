"""``hil-af focus RIG``: one autofocus cycle; exit 0 when Focused, 1 when Failed."""

from __future__ import annotations

import math
import sys

from ..cli import add_json_option, emit_json
from ..controller.base import AFState, Limits
from ..controller.af_range import RANGE_NAMES
from ..controller.methods import METHODS
from ..errors import BadInput
from ..text import plural


def parse_roi(text: str) -> list[int]:
    """``X,Y,W,H`` in view pixels -> [x, y, w, h]."""
    try:
        vals = [int(v) for v in text.split(",")]
    except ValueError:
        raise BadInput(f"--roi must be X,Y,W,H integers, got {text!r}") from None
    if len(vals) != 4:
        raise BadInput(f"--roi must have 4 values X,Y,W,H, got {len(vals)} in {text!r}")
    x, y, w, h = vals
    if w <= 0 or h <= 0:
        raise BadInput(f"--roi {text!r}: width and height (W, H) must be positive")
    if x < 0 or y < 0:
        raise BadInput(f"--roi {text!r}: X and Y must be >= 0 (view pixels from the top-left corner)")
    return vals


def add_controller_options(p) -> None:
    """Options shared by focus, serve and eval: estimator files and limits."""
    p.add_argument("--calibration", metavar="CAL.json",
                   help="PDAF calibration from hil-af calibrate fit: a per-position one serves pdaf and hybrid, "
                        "one fitted with --global serves pdaf-global and pdaf-loop (the file says which it is)")
    p.add_argument("--global-calibration", metavar="CAL.json",
                   help="a second calibration for pdaf-global and pdaf-loop, beside a per-position --calibration")
    p.add_argument("--zncc-calibration", metavar="CAL.json",
                   help="ZNCC calibration for the zncc2 reference (calibrate fit --method zncc --max-shift 6 --refine parabola)")
    p.add_argument("--flatfield", metavar="FLAT.npz", help="flat-field gain map applied before PDAF")
    p.add_argument("--model", metavar="MODEL_DIR", help="ONNX model directory (default: the shipped models/)")
    p.add_argument("--threads", type=int, default=1, help="onnxruntime threads (default 1)")


def check_controller_options(args) -> None:
    """Refuse what ``add_controller_options`` parsed but cannot mean anything (BadInput, exit 2)."""
    if args.threads < 1:
        raise BadInput(f"--threads must be >= 1, got {args.threads}")


def resolve_calibrations(args) -> None:
    """Sort ``--calibration`` by the kind its file records: a global one becomes ``args.global_calibration``.

    ``calibrate fit --global`` writes ``"kind": "global"``; such a file serves
    pdaf-global and pdaf-loop, not the per-position method pdaf.
    """
    path = getattr(args, "calibration", None)
    if not path:
        return
    from ..calibration.store import load_calibration

    if load_calibration(path)["kind"] != "global":
        return
    other = getattr(args, "global_calibration", None)
    if other and other != path:
        raise BadInput(f"--calibration {path} is a global calibration (fitted with --global) and --global-calibration "
                       f"names another one, {other}: give one of them")
    args.calibration, args.global_calibration = None, path
    args.calibration_was_global = path


def add_arguments(p) -> None:
    p.add_argument("rig", help="rig URL (sim://, replay://FILE.npz, picamera2://0 ...) or rig profile TOML")
    p.add_argument("--lens", metavar="URL", help="lens URL when RIG is a frame source only")
    p.add_argument("--roi", action="append", metavar="X,Y,W,H", help="AF window in view pixels (repeat for several)")
    p.add_argument("--weights", metavar="W1,W2,...", help="weights of the --roi windows")
    p.add_argument("--method", default="pe2", choices=METHODS, help="AF method (default pe2)")
    p.add_argument("--max-steps", type=int, default=Limits.max_steps, metavar="N",
                   help=f"give up (Failed) after N estimator steps (default {Limits.max_steps})")
    p.add_argument("--time-budget", type=float, default=Limits.time_budget_s, metavar="S",
                   help=f"give up (Failed) after S seconds on the rig clock (default {Limits.time_budget_s:g})")
    p.add_argument("--timeout", type=float, metavar="S",
                   help="give up (Failed) after S seconds of this cycle; overrides --time-budget")
    p.add_argument("--range", dest="af_range", choices=RANGE_NAMES,
                   help="AF range (libcamera AfRange): near 3-15 D, normal 0-12 D, full (default: the rig's AF slices)")
    p.add_argument("--start", type=float, metavar="POSITION", help="lens position (native units) the search starts from")
    p.add_argument("--trace", action="store_true", help="include the capture/move trace in the JSON")
    p.add_argument("--clock", choices=("system", "sim"), default="system",
                   help="rig clock: system (real time), or sim (virtual time: simulated rigs, tests)")
    add_controller_options(p)
    add_json_option(p)


def run(args) -> int:
    from ..controller.core import Controller
    from ..drivers.registry import open_rig

    rois = [parse_roi(r) for r in args.roi] if args.roi else None
    check_controller_options(args)
    if args.max_steps < 1:
        raise BadInput(f"--max-steps must be >= 1, got {args.max_steps}")
    if not (math.isfinite(args.time_budget) and args.time_budget > 0):
        raise BadInput(f"--time-budget must be a finite number of seconds > 0, got {args.time_budget}")
    resolve_calibrations(args)
    weights = None
    if args.weights:
        try:
            weights = [float(v) for v in args.weights.split(",")]
        except ValueError:
            raise BadInput(f"--weights must be numbers separated by commas, got {args.weights!r}") from None
    limits = Limits(max_steps=args.max_steps, time_budget_s=args.time_budget)
    from ..clock import SimClock

    with open_rig(args.rig, lens=args.lens, clock=SimClock() if args.clock == "sim" else None) as rig:
        ctl = Controller(rig, method=args.method, limits=limits, calibration=args.calibration,
                         global_calibration=args.global_calibration, model_dir=args.model,
                         zncc_calibration=args.zncc_calibration,
                         flatfield=args.flatfield, threads=args.threads)
        res = ctl.focus(rois=rois, weights=weights, timeout_s=args.timeout, af_range=args.af_range, start=args.start)
    out = res.to_json(trace=args.trace)
    if args.json:
        emit_json(out, args.json)
    if args.json != "-":
        d = f", {res.dioptres:.3f} dpt" if res.dioptres is not None else ""
        extra = f" ({res.reason})" if res.reason else (f" via {res.fallback}" if res.fallback else "")
        print(f"{res.state.value}: position {res.position:g}{d}, {plural(res.captures, 'capture')}, {plural(res.moves, 'move')}, "
              f"{res.elapsed_s * 1000:.1f} ms, method {res.method}{extra}")
    if res.state != AFState.FOCUSED and args.json != "-":
        print(f"hil-af focus: focus failed: {res.reason}", file=sys.stderr)
    return 0 if res.state == AFState.FOCUSED else 1
