"""Frames to focus, lens moves, final error and compute per AF step, per method, on the sim rig.

Usage: python benchmarks/bench_controller.py [--profile sim-default] [--scenes 8] [--starts 6]
        [--method M ...] [--calibration CAL --global-calibration CAL] [--json out.json]

For each seeded cards scene, each of the 12 standard RoIs and a few random
start positions, runs one focus cycle on ``sim://`` (virtual clock, real
settling model) and records captures, moves, |final - truth| in slices and
the estimator compute per step (wall clock, one thread).  ``pdaf-loop`` is
the libcamera-style baseline (phase x gain, slew-limited, several frames).
Prints median and 90th percentile; the README quotes this output.
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
from hil_af.frames import grid_rois  # noqa: E402


def run(profile: str, methods: list[str], scenes: int, starts: int, **ctl_kw) -> dict:
    rng = np.random.default_rng(0)
    out: dict = {}
    for m in methods:
        caps, moves, errs, comp, failed = [], [], [], [], 0
        for s in range(scenes):
            rig = open_rig(f"sim://?seed={1000 + s}&profile={profile}", clock=SimClock())
            with rig:
                ctl = Controller(rig, method=m, **ctl_kw)
                pos = rig.slice_positions()
                step = float(pos[1] - pos[0])
                for roi in grid_rois(ctl.view_hw(), 3, 4):
                    truth = float(rig.truth(roi[None])[0])
                    if not pos[0] <= truth <= pos[-1]:
                        continue
                    for _ in range(starts):
                        rig.lens.move_to(float(rng.uniform(pos[0], pos[-1])))
                        rig.clock.sleep(rig.lens.settle_time_s)
                        res = ctl.focus(rois=[roi])
                        caps.append(res.captures)
                        moves.append(res.moves)
                        errs.append(abs(res.position - truth) / step)
                        comp.append(res.compute_ms_per_step)
                        failed += res.state.value != "Focused"
        q = lambda a, p: float(np.percentile(a, p))  # noqa: E731
        out[m] = {
            "samples": len(caps), "failed": failed,
            "captures_median": q(caps, 50), "captures_p90": q(caps, 90),
            "moves_median": q(moves, 50), "moves_p90": q(moves, 90),
            "abs_error_slices_median": q(errs, 50), "abs_error_slices_p90": q(errs, 90),
            "compute_ms_per_step_median": q(comp, 50),
        }
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="sim-default")
    ap.add_argument("--scenes", type=int, default=6)
    ap.add_argument("--starts", type=int, default=4)
    ap.add_argument("--method", action="append")
    ap.add_argument("--calibration")
    ap.add_argument("--global-calibration")
    ap.add_argument("--model")
    ap.add_argument("--json")
    a = ap.parse_args()
    methods = a.method or ["pe", "pe2", "pdaf", "pdaf-global", "pdaf-loop", "cdaf", "hybrid"]
    r = run(a.profile, methods, a.scenes, a.starts, calibration=a.calibration,
            global_calibration=a.global_calibration, model_dir=a.model)
    print(f"profile {a.profile}: {a.scenes} scenes x 12 RoIs x {a.starts} random starts")
    print(f"{'method':<12} {'capt med':>8} {'capt p90':>8} {'moves med':>9} {'moves p90':>9} "
          f"{'|err| med':>9} {'|err| p90':>9} {'ms/step':>8} {'failed':>6}")
    for m, b in r.items():
        print(f"{m:<12} {b['captures_median']:8.1f} {b['captures_p90']:8.1f} {b['moves_median']:9.1f} "
              f"{b['moves_p90']:9.1f} {b['abs_error_slices_median']:9.2f} {b['abs_error_slices_p90']:9.2f} "
              f"{b['compute_ms_per_step_median']:8.3f} {b['failed']:6d}")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(r, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
