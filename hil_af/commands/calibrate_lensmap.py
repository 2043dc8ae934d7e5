"""``hil-af calibrate lensmap RIG --distances 0.3,0.5,1,2,inf --out TUNING.json``.

Sweeps the lens with a chart at each distance (the simulator places its
``chart`` scene there; a real rig asks the user to move the chart), fits
the dioptres -> code map (``hil_af.calibration.lensmap``) and writes a
libcamera tuning file whose ``rpi.af`` ``map`` is the fit: the whole of
``--tuning BASE.json`` (e.g. /usr/share/libcamera/ipa/rpi/vc4/imx519.json)
with the map set (and a CDAF-only rpi.af added if it had none), or rpi.af alone.
"""

from __future__ import annotations

import json

import numpy as np

from ..cli import add_json_option, emit_json
from ..errors import BadInput


def add_parser(sub) -> None:
    m = sub.add_parser("lensmap", help="fit the dioptres -> lens code map and write libcamera's rpi.af map", description=(
        "Sweep the lens in front of a chart at each given distance, find each contrast peak, fit lens code = "
        "a + b x dioptres, and write a libcamera tuning file whose rpi.af map holds it (so LensPosition means "
        "dioptres in any libcamera app). docs/contrast-af.md."))
    m.add_argument("rig", metavar="RIG", help="rig URL or profile (sim://... places its chart itself)")
    m.add_argument("--distances", required=True, metavar="M,M,...", help="chart distances in metres (inf allowed)")
    m.add_argument("--out", required=True, metavar="TUNING.json", help="libcamera tuning file to write")
    m.add_argument("--tuning", metavar="BASE.json", help="tuning file to copy (its rpi.af map is replaced)")
    m.add_argument("--target", choices=("bcm2835", "pisp"), default="bcm2835", help="target without --tuning")
    m.add_argument("--steps", type=int, default=64, help="lens positions per sweep (default 64)")
    m.add_argument("--lens", metavar="URL", help="lens URL when RIG is a frame source only")
    m.add_argument("--no-prompt", action="store_true", help="real rigs: do not wait for Enter between distances")
    m.add_argument("--clock", choices=("system", "sim"), default="system",
                   help="rig clock: system (real time), or sim (virtual time: simulated rigs, tests)")
    add_json_option(m)
    m.set_defaults(_sub=run)


def sweep(rig, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Contrast of the centre window at ``steps`` positions over the lens range."""
    from ..controller.focus_stats import frame_contrast
    from ..frames import centre_roi

    hw = getattr(rig.source, "view_hw", None) or rig.source.sensor_hw
    roi = centre_roi(hw)[None]
    lo, hi = rig.lens.range
    pos = np.linspace(float(lo), float(hi), steps)
    out = []
    for p in pos:
        rig.lens.move_to(float(p))
        rig.clock.sleep(float(rig.lens.settle_time_s))
        out.append(float(frame_contrast(rig.source.capture(), roi, hw)[0]))
    return pos, np.asarray(out)


def run(args) -> int:
    from ..atomic import atomic_write_text
    from ..calibration.lensmap import fit_lens_map, parse_distances, peak_position, tuning_with_map
    from ..clock import SimClock
    from ..drivers.registry import open_rig

    distances = parse_distances(args.distances)
    if args.steps < 8:
        raise BadInput(f"--steps must be >= 8, got {args.steps}")
    base = None
    if args.tuning:
        try:
            with open(args.tuning) as f:
                base = json.load(f)
        except (OSError, ValueError) as e:
            raise BadInput(f"--tuning {args.tuning}: cannot read a JSON tuning file: {e}") from None
    peaks, dioptres = [], []
    with open_rig(args.rig, lens=args.lens, clock=SimClock() if args.clock == "sim" else None) as rig:
        for d in distances:
            if hasattr(rig.source, "set_scene"):  # the simulator puts its chart there
                rig.source.set_scene("chart", depth_m=min(d, 1e6))
            elif not args.no_prompt:
                input(f"Put the chart {d:g} m from the lens, in the centre of the view, then press Enter ")
            pos, c = sweep(rig, args.steps)
            peaks.append(peak_position(pos, c))
            dioptres.append(0.0 if d == float("inf") else 1.0 / d)
        fit = fit_lens_map(dioptres, peaks, rig.lens.range)
    doc = tuning_with_map(fit.knots, base, args.target)
    atomic_write_text(args.out, json.dumps(doc, indent=4) + "\n")
    if args.json:
        emit_json({"out": args.out, **fit.to_json()}, args.json)
    if args.json != "-":
        print(f"rpi.af map {fit.knots} (code = {fit.offset:.1f} + {fit.slope:.2f} x dioptres, "
              f"rms {fit.rms_codes:.2f} codes) -> {args.out}")
    return 0
