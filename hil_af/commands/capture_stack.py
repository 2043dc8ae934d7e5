"""``hil-af capture-stack RIG --out FILE.npz [--slices N] [--rois grid:RxC] [--lens URL] [--json]``.

Sweeps the lens of RIG through N focus slices, labels each RoI's in-focus
slice (the rig's truth where it knows it, else the contrast peak) and writes
one focal stack (docs/formats.md) atomically.  Prints a one-line
summary, or with ``--json`` an object: ``path``, ``slices``, ``view_hw``,
``sensor_hw``, ``origin``, ``dtype``, ``lens_positions`` ([first, last],
native units), ``lens_units``, ``rois``, ``gt_index``, ``gt_known``,
``gt_source``, ``elapsed_s``.
"""

from __future__ import annotations

import re
import time

from ..cli import add_json_option, emit_json
from ..errors import BadInput
from ..progress import add_progress_option

_GRID = re.compile(r"^grid:(\d+)x(\d+)$")


def check_slices(n: int | None) -> None:
    """``--slices``: None (the rig's AF slices) or 2..MAX_SLICES, the most a focal stack file may hold."""
    from ..stackcheck import MAX_SLICES

    if n is not None and n < 2:
        raise BadInput(f"--slices must be >= 2, got {n}")
    if n is not None and n > MAX_SLICES:
        raise BadInput(f"--slices must be <= {MAX_SLICES} (the most slices a focal stack file may hold), got {n}")


def parse_rois_spec(spec: str) -> tuple[int, int]:
    """``grid:RxC`` -> (R, C); BadInput for anything else."""
    m = _GRID.match(spec.strip().lower())
    if not m:
        raise BadInput(f"--rois {spec!r}: expected grid:RxC (e.g. grid:3x4)")
    rows, cols = int(m.group(1)), int(m.group(2))
    if not (1 <= rows <= 64 and 1 <= cols <= 64):
        raise BadInput(f"--rois {spec!r}: rows and columns must be 1..64")
    return rows, cols


def add_arguments(p) -> None:
    p.add_argument("rig", metavar="RIG", help="rig URL (sim://, replay://...) or rig profile TOML")
    p.add_argument("--out", required=True, metavar="FILE.npz", help="focal stack file to write")
    p.add_argument("--slices", type=int, default=None, metavar="N", help="number of focus slices (default: the rig's AF slices)")
    p.add_argument("--rois", default="grid:3x4", metavar="grid:RxC", help="RoI grid of 64 px RoIs (default grid:3x4)")
    p.add_argument("--lens", default=None, metavar="URL", help="lens URL (when RIG is a frame source only)")
    p.add_argument("--scene", default=None, metavar="LABEL", help="free scene label stored in meta")
    p.add_argument("--clock", choices=("system", "sim"), default="system",
                   help="rig clock: system (real time), or sim (virtual time: simulated rigs, tests)")
    add_progress_option(p)
    p.add_argument("--uncompressed", action="store_true", help="numpy.savez instead of savez_compressed")
    add_json_option(p)


def run(args) -> int:
    from ..capture import sweep
    from ..clock import SimClock
    from ..drivers.registry import open_rig
    from ..frames import grid_rois
    from ..stacks import save_stack

    rows, cols = parse_rois_spec(args.rois)
    check_slices(args.slices)
    t0 = time.monotonic()
    clock = SimClock() if args.clock == "sim" else None
    with open_rig(args.rig, lens=args.lens, clock=clock) as rig:
        stack = sweep(rig, args.slices, rois=lambda hw: grid_rois(hw, rows, cols), progress=args.progress,
                      scene=args.scene, source="hil-af capture-stack")
    path = save_stack(args.out, stack, compressed=not args.uncompressed)
    elapsed = time.monotonic() - t0
    gt = [int(g) for g in stack.gt_index]
    known = sum(g >= 0 for g in gt)
    lp = stack.lens_positions
    units = stack.meta.get("lens_units")
    summary = {
        "path": str(path),
        "slices": stack.n,
        "view_hw": list(stack.view_hw),
        "sensor_hw": list(stack.sensor_hw),
        "origin": list(stack.origin),
        "dtype": str(stack.left.dtype),
        "lens_positions": [float(lp[0]), float(lp[-1])],
        "lens_units": units,
        "rois": int(stack.rois.shape[0]),
        "gt_index": gt,
        "gt_known": known,
        "gt_source": stack.meta.get("gt_source"),
        "elapsed_s": round(elapsed, 3),
    }
    if args.json:
        emit_json(summary, args.json)
    if args.json != "-":
        H, W = stack.view_hw
        print(f"wrote {path}: {stack.n} slices of {W}x{H} {stack.left.dtype}, lens {lp[0]:g}..{lp[-1]:g} {units}, "
              f"{known}/{len(gt)} RoIs with ground truth ({stack.meta.get('gt_source')}), {elapsed:.1f} s")
    return 0
