"""``hil-af import-xin DP_DATA --out DIR``: the real Pixel 4 dual-pixel captures of Xin et al. (ICCV 2021)
-> frame files + ground-truth defocus maps (hil_af.xin)."""

from __future__ import annotations

from ..cli import add_json_option, emit_json
from ..text import plural


def add_arguments(p) -> None:
    p.add_argument("root", help="the release's DP_data_pixel_4 folder (NNN_left.png, NNN_right.png, gt_defocus_map/)")
    p.add_argument("--out", required=True, metavar="DIR", help="output folder: DIR/NNN.npz (frame) and DIR/NNN_gt.npz")
    p.add_argument("--scenes", default=None, metavar="IDS", help="only these scenes, comma-separated (e.g. 005,006)")
    add_json_option(p)


def run(args) -> int:
    from ..xin import import_tree

    only = [s.strip() for s in args.scenes.split(",") if s.strip()] if args.scenes else None
    ids = import_tree(args.root, args.out, only)
    if args.json:
        emit_json({"scenes": ids, "out": str(args.out)}, args.json)
    if args.json != "-":
        print(f"wrote {plural(len(ids), 'scene')} ({ids[0]}..{ids[-1]}) to {args.out}")
    return 0
