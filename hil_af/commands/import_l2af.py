"""``hil-af import-l2af ROOT --out DIR``: Learning-to-Autofocus scenes -> focal stacks (docs/l2af.md)."""

from __future__ import annotations

from ..cli import add_json_option, emit_json
from ..errors import BadInput
from ..text import plural


def add_arguments(p) -> None:
    p.add_argument("root", help="dataset root holding split folders (train1 .. train7, test) or one split folder "
                                "holding raw_up_left_pd/ (or raw_left_pd/), merged_depth/, merged_conf/")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (a root writes DIR/<split>/<scene>.npz, a split folder DIR/<scene>.npz)")
    p.add_argument("--split", default=None, metavar="NAMES",
                   help="only these splits: comma-separated names or patterns (e.g. test, 'train*')")
    p.add_argument("--pd", choices=("auto", "up", "raw"), default="auto",
                   help="raw_up_*_pd (up, upsampled) or raw_*_pd (raw); auto: up when present")
    p.add_argument("--view", default="center", help="which phone of the capture rig (file suffix; default center)")
    p.add_argument("--rois", default="grid:3x4", metavar="SPEC",
                   help="grid:RxC (RoIs of --roi-size px centred in a grid) or patches:SIZE[/STRIDE] "
                        "(the paper's patches: patches:128/40); default grid:3x4")
    p.add_argument("--roi-size", type=int, default=64, metavar="PX", help="grid RoI size (default 64)")
    p.add_argument("--near-m", type=float, default=0.1, help="near plane of the depth encoding, m (default 0.1)")
    p.add_argument("--far-m", type=float, default=100.0, help="far plane of the depth encoding, m (default 100)")
    p.add_argument("--min-conf", type=float, default=0.99,
                   help="RoIs whose median merged_conf is below this get no ground truth (default 0.99; 0: no mask)")
    p.add_argument("--resume", action="store_true", help="keep stacks already written (an interrupted import)")
    add_json_option(p)


def run(args) -> int:
    from ..l2af import ImportConfig, import_tree, parse_rois

    if args.roi_size < 8:
        raise BadInput(f"--roi-size must be >= 8, got {args.roi_size}")
    if not 0 < args.near_m < args.far_m:
        raise BadInput(f"need 0 < --near-m < --far-m, got {args.near_m} and {args.far_m}")
    cfg = ImportConfig(rois=parse_rois(args.rois), roi_size=args.roi_size, pd=args.pd, view=args.view,
                       near_m=args.near_m, far_m=args.far_m, min_conf=args.min_conf)
    res = import_tree(args.root, args.out, cfg, split=args.split, resume=args.resume)
    if args.json:
        emit_json({k: [str(p) for p in v] for k, v in res.items()}, args.json)
    if args.json != "-":
        kept = f" (kept {len(res['kept'])} already there)" if res["kept"] else ""
        print(f"wrote {plural(len(res['written']), 'focal stack')} to {args.out}{kept}")
    return 0
