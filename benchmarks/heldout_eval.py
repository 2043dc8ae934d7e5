"""Held-out cameras: zero-shot and fine-tuned PE models against calibrated classical PDAF.

For every held-out camera P (default sim-pixel, sim-catseye, sim-wide; stacks from
scripts/make_domain_data.sh under DATA/<P>-sweeps (8 calibration sweeps) and DATA/<P>-test):

1. classical calibrations fitted on the 8 sweeps (cached in DATA/cal/<P>/): per-position
   (pdaf), global (pdaf-global), and the ZNCC reference (zncc2: --method zncc --max-shift 6
   --refine parabola), each with its sweep-calibrated confidence threshold and stopping rule;
2. the paper's protocol (hil_af.evaluation: every RoI, every start slice) on the test stacks
   for pe2 of each --model (zero-shot) and for the classical methods;
3. each model fine-tuned with the default recipe, exactly ``hil-af train --init MODEL --stacks
   SWEEPS --out DIR`` (cached in DATA/ft/<P>/<name>), and pe2 evaluated again.

``python benchmarks/heldout_eval.py --model main=models --model ablation=models/ablation-no-roi-pe
--out results.json`` writes every metric block (eval --json format) per camera and method.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hil_af.cli import main as cli  # noqa: E402
from hil_af.evaluation import evaluate  # noqa: E402
from hil_af.stacks import stack_files  # noqa: E402

CLASSICAL = {"pdaf": [], "pdaf-global": ["--global"], "zncc2": ["--method", "zncc", "--max-shift", "6", "--refine", "parabola"]}


def calibrations(data: Path, cam: str) -> dict[str, str]:
    out = {}
    for name, flags in CLASSICAL.items():
        path = data / "cal" / cam / f"{name}.json"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            rc = cli(["calibrate", "fit", "--stacks", str(data / f"{cam}-sweeps"), "--out", str(path), "--no-progress", *flags])
            if rc != 0:
                raise SystemExit(f"calibrate fit {cam} {name}: exit {rc}")
        out[name] = str(path)
    return out


def run(data: Path, cams: list[str], models: dict[str, str], fine_tune: bool, classical: bool, stride: int,
        zero_shot: bool = True, ft_threads: int | None = None) -> dict:
    res: dict = {}
    for cam in cams:
        tests = stack_files(data / f"{cam}-test")
        cal = calibrations(data, cam)
        r = res.setdefault(cam, {})
        if classical:
            t = time.perf_counter()
            ev = evaluate(tests, list(CLASSICAL), calibration=cal["pdaf"], global_calibration=cal["pdaf-global"],
                          zncc_calibration=cal["zncc2"], start_stride=stride)
            r.update({m: ev["methods"][m] for m in CLASSICAL})
            print(f"{cam} classical {time.perf_counter() - t:.0f} s", file=sys.stderr)
        for name, mdir in models.items():
            if zero_shot:
                ev = evaluate(tests, ["pe2"], model_dir=mdir, start_stride=stride)
                r[f"pe2:{name}:zero-shot"] = ev["methods"]["pe2"]
            if fine_tune:
                ft = data / "ft" / cam / name
                if not (ft / "card.json").exists():
                    threads = ["--threads", str(ft_threads)] if ft_threads else []  # CPU threads only: the recipe is unchanged
                    rc = cli(["train", "--init", mdir, "--stacks", str(data / f"{cam}-sweeps"), "--out", str(ft), *threads])
                    if rc != 0:
                        raise SystemExit(f"fine-tune {name} on {cam}: exit {rc}")
                card = json.loads((ft / "card.json").read_text())
                ev = evaluate(tests, ["pe2"], model_dir=str(ft), start_stride=stride)
                r[f"pe2:{name}:fine-tuned"] = {**ev["methods"]["pe2"], "kept": card["val"].get("kept"),
                                               "val_before": card["val"].get("two_step_before"),
                                               "val_after": card["val"].get("two_step"),
                                               "fine_tune_s": card["timing_s"]["total"]}
            print(f"{cam} {name}: " + ", ".join(f"{k.split(':', 2)[-1]} MAE {v['mae']:.2f} le1 {v['le1']:.3f}"
                                               for k, v in r.items() if k.startswith(f"pe2:{name}:")), file=sys.stderr)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="data/dr", help="folder of scripts/make_domain_data.sh")
    ap.add_argument("--camera", action="append", help="held-out camera profile (repeatable)")
    ap.add_argument("--model", action="append", required=True, metavar="NAME=DIR", help="model to evaluate (repeatable)")
    ap.add_argument("--no-fine-tune", action="store_true", help="zero-shot only")
    ap.add_argument("--no-classical", action="store_true", help="skip pdaf / pdaf-global / zncc2")
    ap.add_argument("--no-zero-shot", action="store_true", help="skip the zero-shot evaluation (fine-tuned only)")
    ap.add_argument("--start-stride", type=int, default=1, help="every k-th start slice (1: the full protocol)")
    ap.add_argument("--ft-threads", type=int, default=None, help="torch CPU threads of each fine-tune (default: train's)")
    ap.add_argument("--out", required=True, help="results JSON")
    a = ap.parse_args(argv)
    models = dict(m.split("=", 1) for m in a.model)
    cams = a.camera or ["sim-pixel", "sim-catseye", "sim-wide"]
    res = run(Path(a.data), cams, models, not a.no_fine_tune, not a.no_classical, a.start_stride, not a.no_zero_shot,
              a.ft_threads)
    out = Path(a.out)
    old = json.loads(out.read_text()) if out.exists() else {}
    for cam, block in res.items():
        old.setdefault(cam, {}).update(block)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(old, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
