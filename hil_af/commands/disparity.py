"""``hil-af disparity FRAME.npz [--slice K] [--grid RxC] [--method M] [--flatfield FLAT.npz] [--json]``.

Classical PDAF on one frame file (docs/formats.md; ``hil-af capture-frame``
makes one), or on slice K of a focal stack with ``--slice K``: the view is
cut into a R x C grid of equal cells, and each cell's disparity (pixels;
positive when the right view is shifted to the right of the left view) and
confidence (0..1) are estimated by ``hil_af.pdaf``.  JSON (docs/cli.md):
``{"cells": [{"row", "col", "x", "y", "w", "h", "disparity_px", "confidence"}, ...]}``
with x, y, w, h in view pixels.
"""

from __future__ import annotations

import math

import numpy as np

from ..cli import add_json_option, emit_json
from ..errors import BadInput
from ..pdaf import DEFAULT_MAX_SHIFT, METHODS, estimate_rois
from ..text import int_pair


def parse_grid(text: str) -> tuple[int, int]:
    """'RxC' -> (R, C); BadInput naming the value otherwise."""
    try:
        r, c = int_pair(text)
    except ValueError:
        raise BadInput(f"--grid must look like RxC (e.g. 3x4), got {text!r}") from None
    if r < 1 or c < 1:
        raise BadInput(f"--grid needs at least 1x1 cells, got {text!r}")
    return r, c


def cell_rois(view_hw: tuple[int, int], rows: int, cols: int) -> np.ndarray:
    """The R x C cells tiling the view (x, y, w, h), int32 [R*C, 4], row-major; all cells one size."""
    H, W = view_hw
    ch, cw = H // rows, W // cols
    if ch < 8 or cw < 8:
        raise BadInput(f"grid {rows}x{cols} on a {W}x{H} view leaves cells of {cw}x{ch} px (need >= 8x8)")
    oy, ox = (H - rows * ch) // 2, (W - cols * cw) // 2
    return np.array([(ox + c * cw, oy + r * ch, cw, ch) for r in range(rows) for c in range(cols)], dtype=np.int32)


def _load(path: str, k: int | None):
    """The frame to measure: the frame file at ``path``, or slice ``k`` of the focal stack there."""
    from ..stacks import load_frame, load_stack

    if k is not None:
        try:
            stack = load_stack(path)
        except BadInput:
            try:
                load_frame(path)
            except BadInput:
                raise  # neither: the stack reader's error says what is wrong
            raise BadInput(f"{path} is a frame file, not a focal stack: drop --slice") from None
        if not -stack.n <= k < stack.n:
            raise BadInput(f"--slice {k}: {path} has {stack.n} slices (0..{stack.n - 1})")
        return stack.frame(k)
    try:
        return load_frame(path)
    except BadInput as e:
        try:
            n = load_stack(path).n
        except BadInput:
            raise e from None
        raise BadInput(f"{path} is a focal stack of {n} slices, not a frame file: add --slice K (0..{n - 1}) "
                       "to measure one slice") from None


def add_arguments(p) -> None:
    p.add_argument("frame", metavar="FRAME.npz",
                   help="a frame file (docs/formats.md; hil-af capture-frame writes one), or a focal stack with --slice")
    p.add_argument("--slice", type=int, default=None, metavar="K",
                   help="FRAME.npz is a focal stack: measure its slice K (0 = the first; negative counts from the end)")
    p.add_argument("--grid", default="3x4", metavar="RxC", help="cells as RxC (default 3x4)")
    p.add_argument("--method", default="xcorr", choices=METHODS, help="estimator (default xcorr)")
    p.add_argument("--max-shift", type=float, default=None, metavar="PX",
                   help=f"largest |disparity| searched, px (default {DEFAULT_MAX_SHIFT:g}, or a quarter of the cell width "
                        "when that is less; at most half the cell width)")
    p.add_argument("--flatfield", metavar="FLAT.npz", help="flat-field gain map applied first (hil-af calibrate flatfield)")
    add_json_option(p)


def run(args) -> int:
    rows, cols = parse_grid(args.grid)
    frame = _load(args.frame, args.slice)
    if args.flatfield:
        from ..calibration.flatfield import load_flatfield

        frame = load_flatfield(args.flatfield).apply(frame)
    rois = cell_rois(frame.shape, rows, cols)
    w = int(rois[0, 2])
    max_shift = args.max_shift if args.max_shift is not None else min(DEFAULT_MAX_SHIFT, max(1, w // 4))
    if not (math.isfinite(max_shift) and 1 <= max_shift <= w // 2):
        raise BadInput(f"--max-shift must be a number in 1..{w // 2} px (half the cell width), got {args.max_shift}")
    res = estimate_rois(frame.left, frame.right, rois, method=args.method, max_shift=max_shift,
                        white_level=frame.white_level)
    cells = []
    for i, (x, y, cw, ch) in enumerate(rois):
        cells.append({"row": i // cols, "col": i % cols, "x": int(x), "y": int(y), "w": int(cw), "h": int(ch),
                      "disparity_px": round(float(res.disparity_px[i]), 4), "confidence": round(float(res.confidence[i]), 4)})
    if args.json:
        emit_json({"cells": cells, "method": args.method, "max_shift_px": max_shift,
                   "flatfield": args.flatfield, "frame": str(args.frame), "slice": args.slice}, args.json)
    if args.json != "-":
        which = f" slice {args.slice}" if args.slice is not None else ""
        print(f"{args.frame}{which}: {rows}x{cols} cells, method {args.method}, disparity px (confidence)")
        for r in range(rows):
            print("  ".join(f"{c['disparity_px']:+7.2f} ({c['confidence']:.2f})" for c in cells[r * cols:(r + 1) * cols]))
    return 0
