"""``hil-af calibrate capture|fit|report|flatfield|lensmap``: PDAF and lens-map calibration (docs/cli.md, docs/pdaf-calibration.md, docs/contrast-af.md).

- ``capture RIG --out DIR [--scenes N] [--slices N] [--rois grid:RxC] [--resume] [--no-prompt]``:
  one lens sweep per scene into DIR/sweep_NNNN.npz (atomic), DIR/manifest.json; safe to kill and resume.
- ``fit --stacks DIR --out CAL.json [--grid RxC] [--global] [--flatfield FLAT.npz]``:
  per-block (or ``--global``) robust fits of disparity vs defocus (hil_af.calibration.fit).
- ``report CAL.json --out DIR [--stacks DIR]``: PNG plots + index.html (needs matplotlib: [report]).
- ``flatfield RIG --out FLAT.npz`` or ``flatfield --frame WHITE.npz --out FLAT.npz``:
  per-view gain maps from a white target (on the simulator: its ``white`` scene).
- ``lensmap RIG --distances M,M,... --out TUNING.json``: the libcamera ``rpi.af`` map
  (``calibrate_lensmap``).
"""

from __future__ import annotations

import math
import os

import sys
from pathlib import Path

from ..cli import add_json_option, emit_json
from ..errors import BadInput
from ..progress import add_progress_option
from ..text import plural


def _grid(text: str) -> tuple[int, int]:
    from .disparity import parse_grid

    return parse_grid(text)


def add_arguments(p) -> None:
    sub = p.add_subparsers(dest="calibrate_command", metavar="SUBCOMMAND")
    sub.required = True

    h = "lens sweeps over several scenes/targets into a folder (resumable)"
    c = sub.add_parser("capture", help=h, description=(
        f"{h[0].upper()}{h[1:]}: one focal stack per scene, DIR/sweep_NNNN.npz, and DIR/manifest.json. "
        "On the simulator each scene is a new seeded scene; on a real rig it asks for the next target "
        "(Enter) unless --no-prompt. Safe to interrupt: rerun with --resume to finish."))
    c.add_argument("rig", metavar="RIG", help="rig URL (sim://...) or rig profile TOML")
    c.add_argument("--out", required=True, metavar="DIR", help="folder for sweep_NNNN.npz + manifest.json")
    c.add_argument("--scenes", type=int, default=8, metavar="N", help="number of scenes/targets (default 8)")
    c.add_argument("--slices", type=int, default=None, metavar="N", help="focus slices per sweep (default: the rig's AF slices)")
    c.add_argument("--rois", default="grid:3x4", metavar="grid:RxC", help="RoI grid of 64 px RoIs (default grid:3x4)")
    c.add_argument("--lens", default=None, metavar="URL", help="lens URL (when RIG is a frame source only)")
    c.add_argument("--resume", action="store_true", help="finish an interrupted set: skip finished sweeps")
    c.add_argument("--no-prompt", action="store_true", help="real rigs: do not wait for Enter between targets")
    c.add_argument("--clock", choices=("system", "sim"), default="system",
                   help="rig clock: system (real time) or sim (virtual time, simulated rigs)")
    add_progress_option(c)
    add_json_option(c)
    c.set_defaults(_sub=_capture, _interrupt_hint="the finished sweeps are kept: run the same command with --resume to finish")

    h = "fit per-block disparity vs defocus (DCC + offset) into CAL.json"
    f = sub.add_parser("fit", help=h, description=(
        f"{h[0].upper()}{h[1:]}: measures the PDAF disparity of every RoI in every slice of the stacks and fits, "
        "per cell of a grid over the sensor (or once with --global), disparity = gain x defocus + offset. "
        "The file records its kind (per-position or global); eval, focus and serve take it with --calibration."))
    f.add_argument("--stacks", required=True, metavar="DIR", help="folder of focal stacks (e.g. from calibrate capture)")
    f.add_argument("--out", required=True, metavar="CAL.json", help="calibration file to write")
    f.add_argument("--grid", default="3x4", metavar="RxC", help="cells over the full sensor as RxC (default 3x4)")
    f.add_argument("--global", dest="global_fit", action="store_true", help="one relation for the whole sensor")
    f.add_argument("--flatfield", metavar="FLAT.npz", help="flat field applied before measuring (recorded in CAL.json)")
    f.add_argument("--method", default=None, help="PDAF estimator: xcorr (default), zncc, ssd")
    f.add_argument("--max-shift", type=float, default=None, metavar="PX", help="estimator search range, px (default 12)")
    f.add_argument("--refine", choices=("upsample", "parabola"), default="upsample",
                   help="subpixel refinement (default upsample; the zncc2 reference uses parabola)")
    f.add_argument("--min-confidence", type=float, default=None, help="drop measurements below this confidence (default 0.2)")
    f.add_argument("--disparity-limit", type=float, default=None, metavar="PX",
                   help="fit only |disparity| <= PX (default 0.17 x max shift = 2 px: the near-focus range)")
    add_progress_option(f)
    add_json_option(f)
    f.set_defaults(_sub=_fit)

    h = "PNG plots and index.html of a CAL.json (needs matplotlib)"
    r = sub.add_parser("report", help=h, description=(
        f"{h[0].upper()}{h[1:]}: disparity vs defocus per cell with the fitted lines, the fitted gain and offset "
        "maps over the sensor, and the residuals."))
    r.add_argument("calibration", metavar="CAL.json", help="calibration file (from calibrate fit)")
    r.add_argument("--out", required=True, metavar="DIR", help="folder for the PNGs and index.html")
    r.add_argument("--stacks", default=None, metavar="DIR", help="recompute every point from these stacks (default: CAL.json's subsample)")
    add_json_option(r)
    r.set_defaults(_sub=_report)

    h = "per-view gain maps (SPC) from a white target"
    w = sub.add_parser("flatfield", help=h, description=(
        f"{h[0].upper()}{h[1:]}: captured from RIG (the simulator shows its white scene; a real rig asks for a "
        "uniformly lit white target) or read from a frame file, smoothed on a knot grid, written as FLAT.npz."))
    w.add_argument("rig", nargs="?", metavar="RIG", help="rig to capture the white target with (sim: its white scene)")
    w.add_argument("--frame", metavar="WHITE.npz", help="use this frame file of a white target instead of a rig")
    w.add_argument("--out", required=True, metavar="FLAT.npz", help="flat-field file to write")
    w.add_argument("--grid", default=None, metavar="RxC", help="knot grid RxC (default 16x24)")
    w.add_argument("--lens", default=None, metavar="URL", help="lens URL (when RIG is a frame source only)")
    w.add_argument("--frames", type=int, default=4, help="frames averaged from the rig (default 4)")
    w.add_argument("--seed", type=int, default=0, help="sim: seed of the white scene")
    w.add_argument("--no-prompt", action="store_true", help="real rigs: do not wait for Enter before capturing")
    w.add_argument("--clock", choices=("system", "sim"), default="system",
                   help="rig clock: system (real time) or sim (virtual time, simulated rigs)")
    add_json_option(w)
    w.set_defaults(_sub=_flatfield)

    from .calibrate_lensmap import add_parser as add_lensmap_parser
    add_lensmap_parser(sub)


def run(args) -> int:
    return int(args._sub(args) or 0)


# --------------------------------------------------------------------------- capture


def _capture(args) -> int:
    from ..calibration.capture import capture_sweeps
    from ..clock import SimClock
    from ..drivers.registry import open_rig
    from ..frames import grid_rois
    from .capture_stack import check_slices, parse_rois_spec

    rows, cols = parse_rois_spec(args.rois)
    check_slices(args.slices)
    clock = SimClock() if args.clock == "sim" else None
    with open_rig(args.rig, lens=args.lens, clock=clock) as rig:
        man = capture_sweeps(rig, args.out, args.scenes, n_slices=args.slices, rois=lambda hw: grid_rois(hw, rows, cols),
                             resume=args.resume, prompt=not args.no_prompt, progress=args.progress)
    summary = {"out": str(args.out), "scenes": args.scenes, "done": sorted(man["done"])}
    if args.json:
        emit_json(summary, args.json)
    if args.json != "-":
        print(f"{plural(len(man['done']), 'sweep')} in {args.out}")
    return 0


# --------------------------------------------------------------------------- fit


def _fit(args) -> int:
    from ..calibration import fit as F
    from ..calibration.flatfield import file_sha256, load_flatfield
    from ..calibration.store import save_calibration
    from ..pdaf import METHODS

    grid = _grid(args.grid)
    method = args.method or F.DEFAULT_METHOD
    if method not in METHODS:
        raise BadInput(f"--method must be one of {', '.join(METHODS)}, got {method!r}")
    max_shift = args.max_shift if args.max_shift is not None else F.DEFAULT_MAX_SHIFT
    if not max_shift >= 1:
        raise BadInput(f"--max-shift must be >= 1 px, got {max_shift}")
    if args.min_confidence is not None and not 0 <= args.min_confidence <= 1:
        raise BadInput(f"--min-confidence must be in [0, 1] (a PDAF confidence), got {args.min_confidence}")
    if args.disparity_limit is not None and not (math.isfinite(args.disparity_limit) and args.disparity_limit > 0):
        raise BadInput(f"--disparity-limit must be a finite number of px > 0, got {args.disparity_limit}")
    files = F.stack_files(args.stacks)
    ff = ff_rec = None
    if args.flatfield:
        ff = load_flatfield(args.flatfield)
        # recorded relative to CAL.json's folder, so a calibration bundle can be moved as a whole
        rel = os.path.relpath(Path(args.flatfield).resolve(), Path(args.out).resolve().parent)
        ff_rec = {"path": rel, "sha256": file_sha256(args.flatfield)}
    samples = F.measure_stacks(files, method=method, max_shift=max_shift, refine=args.refine, flatfield=ff,
                               progress=args.progress)
    kw = {}
    if args.min_confidence is not None:
        kw["min_confidence"] = args.min_confidence
    cal = F.fit_calibration(samples, grid, global_fit=args.global_fit, method=method, max_shift=max_shift, refine=args.refine,
                            disparity_limit=args.disparity_limit, flatfield=ff_rec, stacks_dir=str(args.stacks), **kw)
    path = save_calibration(args.out, cal)
    n_borrowed = sum(c["borrowed"] for c in cal["cells"])
    gf = cal["global_fit"]
    if args.json:
        emit_json({"path": str(path), "kind": cal["kind"], "grid": cal["grid"], "stacks": len(files),
                   "measurements": cal["stacks"]["measurements"], "used": cal["stacks"]["used"],
                   "borrowed_cells": n_borrowed, "global_fit": gf,
                   "cells": [{k: c[k] for k in ("row", "col", "dcc_units_per_px", "offset_px", "residual_rms_px", "n_points", "r2", "borrowed")}
                             for c in cal["cells"]]}, args.json)
    if args.json != "-":
        print(f"wrote {path}: {cal['kind']} {cal['grid'][0]}x{cal['grid'][1]} from {plural(len(files), 'stack')} "
              f"({cal['stacks']['used']}/{cal['stacks']['measurements']} measurements used, {plural(n_borrowed, 'borrowed cell')}); "
              f"global DCC {gf['dcc_units_per_px']:.4g} {cal['lens_units']}/px, offset {gf['offset_px']:+.3f} px, "
              f"residual RMS {gf['residual_rms_px']:.3f} px")
    return 0


# --------------------------------------------------------------------------- report


def _report(args) -> int:
    from ..calibration.report import write_report
    from ..calibration.store import load_calibration

    cal = load_calibration(args.calibration)
    samples = None
    if args.stacks:
        from ..calibration import fit as F
        from ..calibration.flatfield import load_flatfield

        from ..calibration.predict import recorded_flatfield

        found = recorded_flatfield(cal, args.calibration)
        ff = load_flatfield(found) if found else None
        est = cal["estimator"]
        s = F.measure_stacks(F.stack_files(args.stacks), method=est["method"], max_shift=est["max_shift_px"],
                             refine=est.get("refine", "upsample"), flatfield=ff)
        R, C = cal["grid"]
        row, col = F.cell_index(s.cx, s.cy, s.sensor_hw, (R, C))
        samples = {"cell": (row * C + col).tolist(), "defocus": s.defocus.tolist(), "disparity_px": s.disparity.tolist(),
                   "confidence": s.confidence.tolist()}
    files = write_report(cal, args.out, cal_path=str(args.calibration), samples=samples)
    if args.json:
        emit_json({"out": str(args.out), "files": [str(f) for f in files]}, args.json)
    if args.json != "-":
        print(f"wrote {plural(len(files), 'file')} into {args.out}: open {files[-1]}")
    return 0


# --------------------------------------------------------------------------- flat field


def _flatfield(args) -> int:
    import numpy as np

    from ..calibration.flatfield import DEFAULT_GRID, fit_flatfield
    from ..frames import DualPixelFrame

    grid = _grid(args.grid) if args.grid else DEFAULT_GRID
    if (args.rig is None) == (args.frame is None):
        raise BadInput("give either RIG (capture a white target) or --frame WHITE.npz")
    if args.frame:
        from ..stacks import load_frame

        frame = load_frame(args.frame)
        source = f"frame {args.frame}"
    else:
        from ..clock import SimClock
        from ..drivers.registry import open_rig

        if args.frames < 1:
            raise BadInput(f"--frames must be >= 1, got {args.frames}")
        clock = SimClock() if args.clock == "sim" else None
        with open_rig(args.rig, lens=args.lens, clock=clock) as rig:
            set_scene = getattr(rig.source, "set_scene", None)
            if callable(set_scene):
                set_scene("white", args.seed)
            elif not args.no_prompt:
                print("show a uniformly lit white target filling the view (defocus it if it has texture), then press Enter",
                      file=sys.stderr, flush=True)
                try:
                    input()
                except EOFError:
                    raise BadInput("no answer on stdin: use --no-prompt to capture without asking") from None
            frames = [rig.source.capture() for _ in range(args.frames)]
        f0 = frames[0]
        frame = DualPixelFrame(left=np.mean([f.left for f in frames], axis=0), right=np.mean([f.right for f in frames], axis=0),
                               lens_position=f0.lens_position, sensor_hw=f0.sensor_hw, origin=f0.origin,
                               white_level=f0.white_level, metadata=dict(f0.metadata))
        source = f"{args.frames} frame(s) of a white target from {args.rig}"
    ff = fit_flatfield(frame, grid=grid, source=source)
    path = ff.save(args.out)
    m = ff.meta
    if args.json:
        emit_json({"path": str(path), "grid": list(grid), "sensor_hw": list(ff.sensor_hw), "origin": list(ff.origin),
                   "lr_ratio_min": m["lr_ratio_min"], "lr_ratio_max": m["lr_ratio_max"]}, args.json)
    if args.json != "-":
        print(f"wrote {path}: {grid[0]}x{grid[1]} knots; the raw left/right ratio spans "
              f"{m['lr_ratio_min']:.3f}..{m['lr_ratio_max']:.3f} over the field")
    return 0
