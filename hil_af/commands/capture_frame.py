"""``hil-af capture-frame RIG --out FRAME.npz [--position POS] [--lens URL] [--json]``.

Captures one dual-pixel frame from any rig (``sim://``, ``replay://``,
``picamera2://``, a rig profile) and writes it as a frame file (docs/formats.md)
atomically: the input of ``hil-af disparity`` and ``calibrate flatfield --frame``,
and a small file to attach to a bug report.  With ``--position`` the lens moves
there first and settles.  Views are stored as uint16 raw values when the frame
is integer-valued (with the source's black level), else float32.
"""

from __future__ import annotations

from ..cli import add_json_option, emit_json
from ..errors import BadInput


def add_arguments(p) -> None:
    p.add_argument("rig", metavar="RIG", help="rig URL (sim://?seed=1, replay://STACK.npz, picamera2://0 ...) or rig profile TOML")
    p.add_argument("--out", required=True, metavar="FRAME.npz", help="frame file to write")
    p.add_argument("--position", type=float, default=None, metavar="POS",
                   help="move the lens to POS (native units) and let it settle before capturing (default: leave it)")
    p.add_argument("--lens", default=None, metavar="URL", help="lens URL (when RIG is a frame source only)")
    p.add_argument("--clock", choices=("system", "sim"), default="system",
                   help="rig clock: system (real time), or sim (virtual time: simulated rigs, tests)")
    p.add_argument("--uncompressed", action="store_true", help="numpy.savez instead of savez_compressed")
    add_json_option(p)


def run(args) -> int:
    import math

    from ..capture import _uint16_offset
    from ..clock import SimClock
    from ..drivers.registry import open_rig
    from ..stacks import save_frame

    if args.position is not None and not math.isfinite(args.position):
        raise BadInput(f"--position must be a finite number, got {args.position}")
    with open_rig(args.rig, lens=args.lens, clock=SimClock() if args.clock == "sim" else None) as rig:
        if args.position is not None:
            rig.lens.move_to(float(args.position))
            rig.clock.sleep(float(rig.lens.settle_time_s))
        frame = rig.source.capture()
        name = rig.name
    black = _uint16_offset(frame.left, frame.right, frame.metadata.get("black_level"))
    path = save_frame(args.out, frame, black_level=float(black or 0), dtype=None if black is not None else "float32",
                      source=f"hil-af capture-frame {name}", compressed=not args.uncompressed)
    H, W = frame.shape
    lp = frame.lens_position
    summary = {"path": str(path), "view_hw": [H, W], "sensor_hw": list(frame.sensor_hw), "origin": list(frame.origin),
               "lens_position": lp if math.isfinite(lp) else None, "black_level": black or 0}
    if args.json:
        emit_json(summary, args.json)
    if args.json != "-":
        where = f", lens at {lp:g}" if math.isfinite(lp) else ""
        print(f"wrote {path}: one {W}x{H} dual-pixel frame from {name}{where}")
    return 0
