"""``hil-af import-l2af ROOT --out DIR``: Learning-to-Autofocus scenes -> focal stacks."""

from __future__ import annotations

from ..cli import add_json_option, emit_json
from ..errors import BadInput
from ..text import plural


def add_arguments(p) -> None:
    p.add_argument("root", help="dataset root holding raw_up_left_pd/, raw_up_right_pd/, merged_depth/")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write one focal stack per scene into")
    p.add_argument("--rois", default="grid:3x4", metavar="grid:RxC", help="RoI grid per scene (default grid:3x4)")
    p.add_argument("--roi-size", type=int, default=64, metavar="PX", help="RoI side in view pixels (default 64)")
    add_json_option(p)


def parse_grid(spec: str) -> tuple[int, int]:
    try:
        kind, rc = spec.split(":")
        r, c = (int(v) for v in rc.lower().split("x"))
        if kind != "grid" or r < 1 or c < 1:
            raise ValueError
    except ValueError:
        raise BadInput(f"--rois must look like grid:RxC (e.g. grid:3x4), got {spec!r}") from None
    return r, c


def run(args) -> int:
    from ..l2af import import_tree

    written = import_tree(args.root, args.out, grid=parse_grid(args.rois), roi_size=args.roi_size)
    if args.json:
        emit_json({"stacks": [str(p) for p in written]}, args.json)
    else:
        print(f"wrote {plural(len(written), 'focal stack')} to {args.out}")
    return 0
