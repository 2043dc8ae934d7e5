"""Contrast AF: frames to focus and final error of cdaf, cdaf-libcamera and cdaf-fast on the sim rig.

Usage: python benchmarks/bench_cdaf.py [--profile sim-default] [--scenes 8] [--start-stride 4]
        [--method M ...] [--json out.json] [--markdown]

For each seeded cards scene (``sim://?seed=2000+i``) and every ``start-stride``-th
AF slice as the start position (``Controller.focus(start=...)``), runs one
focus cycle on the centre window with the virtual clock and the simulated
VCM's settle model (``vcm_tau_s``, hysteresis).  Frames to focus = sim-clock
time from the request to the end of the cycle (the frame that checks the
final position included) divided by the frame time: frames of the stream
that went by, whether captured, skipped or spent waiting for the lens.
Error = |final position - truth| in AF slices (1/4 dioptre); le1 = share of
cycles within 1 slice; failed cycles count as misses.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from hil_af.clock import SimClock  # noqa: E402
from hil_af.controller.core import Controller  # noqa: E402
from hil_af.drivers.registry import open_rig  # noqa: E402
from hil_af.frames import centre_roi  # noqa: E402

METHODS = ("cdaf", "cdaf-libcamera", "cdaf-fast")


def run(profile: str, methods, scenes: int, stride: int) -> dict:
    out: dict = {}
    for m in methods:
        frames, caps, errs, failed = [], [], [], 0
        for s in range(scenes):
            with open_rig(f"sim://?seed={2000 + s}&profile={profile}", clock=SimClock()) as rig:
                ctl = Controller(rig, method=m)
                roi = centre_roi(rig.source.sensor_hw)[None]
                truth = float(rig.truth(roi)[0])
                pos = rig.slice_positions()
                spacing = float(np.median(np.diff(pos)))
                frame_s = rig.source.params.frame_time_s
                for start in pos[::stride]:
                    res = ctl.focus(rois=roi, start=float(start))
                    frames.append(res.elapsed_s / frame_s)
                    caps.append(res.captures)
                    if res.state.value != "Focused":
                        failed += 1
                        errs.append(np.inf)
                    else:
                        errs.append(abs(res.position - truth) / spacing)
        e = np.asarray(errs)
        fin = e[np.isfinite(e)]
        out[m] = {"cycles": len(errs), "failed": failed,
                  "frames_median": float(np.median(frames)), "frames_p90": float(np.percentile(frames, 90)),
                  "captures_median": float(np.median(caps)),
                  "err_median_slices": float(np.median(fin)) if fin.size else None,
                  "err_p90_slices": float(np.percentile(e, 90)) if np.isfinite(np.percentile(e, 90)) else None,
                  "le1": float(np.mean(e <= 1.0))}
    return out


def markdown(res: dict) -> str:
    rows = ["| method | frames to focus, median | p90 | captures, median | error median (slices) | error p90 | <= 1 slice | failed |",
            "|---|---|---|---|---|---|---|---|"]
    for m, r in res.items():
        p90 = "inf" if r["err_p90_slices"] is None else f"{r['err_p90_slices']:.2f}"
        rows.append(f"| {m} | {r['frames_median']:.1f} | {r['frames_p90']:.1f} | {r['captures_median']:.0f} | "
                    f"{r['err_median_slices']:.2f} | {p90} | {100 * r['le1']:.0f} % | {r['failed']}/{r['cycles']} |")
    return "\n".join(rows)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="sim-default")
    ap.add_argument("--scenes", type=int, default=8)
    ap.add_argument("--start-stride", type=int, default=4, help="every Nth AF slice is a start position")
    ap.add_argument("--method", action="append", choices=METHODS)
    ap.add_argument("--json")
    args = ap.parse_args(argv)
    res = run(args.profile, args.method or list(METHODS), args.scenes, args.start_stride)
    print(markdown(res))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
