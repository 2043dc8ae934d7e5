"""Markdown tables from benchmarks/heldout_eval.py results (README, docs/model.md, models/MODEL_CARD.md).

``python benchmarks/heldout_tables.py RESULTS.json [--model NAME] [--variants N1,N2 [--label N1=TEXT]]
[--seeds main=dr-s0,dr-s1,dr-s2 --seeds ablation=...]``
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

COLS = ("exact", "le1", "le2", "le4", "mae", "failed")


def row(name: str, b: dict) -> str:
    return (f"| {name} | {100 * b['exact']:.1f} | {100 * b['le1']:.1f} | {100 * b['le2']:.1f} | {100 * b['le4']:.1f} | "
            f"{b['mae']:.2f} | {100 * b['failed']:.1f} | {b['captures_mean']:.1f} |")


def camera_table(res: dict, cam: str, model: str) -> str:
    r = res[cam]
    out = ["| method | =0 % | <=1 % | <=2 % | <=4 % | MAE | failed % | captures |", "|---|---|---|---|---|---|---|---|"]
    for key, label in ((f"pe2:{model}:zero-shot", "pe2, pretrained (zero-shot)"),
                       (f"pe2:{model}:fine-tuned", "**pe2, fine-tuned on the 8 sweeps**"),
                       ("pdaf", "pdaf (per-position, fitted on the 8 sweeps)"), ("pdaf-global", "pdaf-global"),
                       ("zncc2", "zncc2 (ZNCC +-6 px + per-position line, 2 steps)")):
        if key in r:
            out.append(row(label, r[key]))
    return "\n".join(out)


def seed_table(res: dict, groups: dict[str, list[str]], cams: list[str]) -> str:
    out = ["| model | camera | zero-shot MAE | zero-shot <=1 % | fine-tuned MAE | fine-tuned <=1 % |", "|---|---|---|---|---|---|"]
    for g, names in groups.items():
        for cam in cams:
            cells = []
            for mode in ("zero-shot", "fine-tuned"):
                for k in ("mae", "le1"):
                    v = [res[cam][f"pe2:{n}:{mode}"][k] for n in names if f"pe2:{n}:{mode}" in res.get(cam, {})]
                    if not v:
                        cells.append("-")
                        continue
                    v = np.array(v) * (100 if k == "le1" else 1)
                    few = "" if len(v) == len(names) else f", {len(v)} of {len(names)} seeds"
                    cells.append(f"{v.mean():.2f} ({v.min():.2f}..{v.max():.2f}{few})" if k == "mae"
                                 else f"{v.mean():.1f} ({v.min():.1f}..{v.max():.1f}{few})")
            out.append(f"| {g} ({len(names)} seeds) | {cam} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def variants_table(res: dict, names: list[str], labels: dict[str, str] | None = None) -> str:
    """One row per (model, camera): zero-shot and fine-tuned pe2 MAE and <=1 (``-`` where not run)."""
    labels = labels or {}
    out = ["| camera | model | zero-shot MAE | zero-shot <=1 % | fine-tuned MAE | fine-tuned <=1 % |", "|---|---|---|---|---|---|"]
    for cam in res:
        for n in names:
            cells = []
            for mode in ("zero-shot", "fine-tuned"):
                b = res[cam].get(f"pe2:{n}:{mode}")
                cells += [f"{b['mae']:.2f}", f"{100 * b['le1']:.1f}"] if b else ["-", "-"]
            if any(c != "-" for c in cells):
                out.append(f"| `{cam}` | {labels.get(n, n)} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results")
    ap.add_argument("--model", default="main")
    ap.add_argument("--seeds", action="append", default=[], metavar="GROUP=N1,N2,N3")
    ap.add_argument("--variants", default=None, metavar="N1,N2,...", help="a side-by-side table of these models")
    ap.add_argument("--label", action="append", default=[], metavar="NAME=TEXT", help="row label of a model in --variants")
    a = ap.parse_args(argv)
    res = json.loads(open(a.results).read())
    for cam in res:
        print(f"\n`{cam}`:\n")
        print(camera_table(res, cam, a.model))
    if a.variants:
        labels = dict(item.split("=", 1) for item in a.label)
        print("\n" + variants_table(res, a.variants.split(","), labels))
    if a.seeds:
        groups = {g: n.split(",") for g, n in (s.split("=", 1) for s in a.seeds)}
        print("\n" + seed_table(res, groups, list(res)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
