"""Evaluate a trained model on unseen-profile stacks and write the result into its card.

``python -m hil_af.model.report --model DIR --eval-stacks DIR2 --profile sim-wide``
runs the two-step protocol (hil_af.model.validate) on DIR2 and stores it as
``eval`` in DIR/card.json, then re-renders DIR/MODEL_CARD.md.
``python -m hil_af.model.report --model DIR --ablation DIR_ABL`` adds the
ablation table (both models' ``eval`` side by side) to DIR's card.
No torch needed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from .card import eval_table, render_markdown, write_card
from .inference import read_card


def _ablation_md(card: dict[str, Any]) -> str:
    ab = card.get("ablation")
    if not ab:
        return ""
    rows = {}
    for name, ev in ab["models"].items():
        for method in ("pe", "pe2"):
            rows[f"{name}, {method}"] = ev["results"][method]
    return (f"## Ablation: RoI-PE vs no RoI-PE on `{ab['profile']}` (unseen lens profile)\n\n"
            f"Same data, epochs and architecture per seed; only the RoI-PE channels differ (zero planes).\n\n"
            + eval_table(rows))


def write_markdown(model_dir: Path, card: dict[str, Any]) -> None:
    from ..atomic import atomic_write_text

    atomic_write_text(model_dir / "MODEL_CARD.md", render_markdown(card, _ablation_md(card)))


def main(argv: list[str] | None = None) -> int:
    from .dataset import find_stacks
    from .validate import protocol

    ap = argparse.ArgumentParser(prog="python -m hil_af.model.report", description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--eval-stacks", default=None)
    ap.add_argument("--profile", default="sim-wide", help="label of the eval stacks' lens profile")
    ap.add_argument("--ablation", default=None, metavar="DIR", help="model dir trained with --no-roi-pe")
    ap.add_argument("--extra", action="append", default=[], metavar="LABEL=DIR",
                    help="with --ablation: more models (e.g. other seeds) whose eval joins the ablation table")
    ap.add_argument("--section", default="eval", choices=("eval", "eval_same_profile"),
                    help="card section the --eval-stacks result goes to (eval: the unseen profile)")
    a = ap.parse_args(argv)
    d = Path(a.model)
    card = read_card(d)
    if a.eval_stacks:
        t0 = time.perf_counter()
        res = protocol(find_stacks(a.eval_stacks), d)
        res.update({"profile": a.profile, "stacks_dir": a.eval_stacks, "seconds": round(time.perf_counter() - t0, 1)})
        card[a.section] = res
        print(eval_table(res["results"]))
    if a.ablation:
        other = read_card(Path(a.ablation))
        if "eval" not in card or "eval" not in other:
            raise SystemExit("both models need an eval section first (run with --eval-stacks)")
        models = {"RoI-PE (shipped, seed 0)": card["eval"], "no RoI-PE (seed 0)": other["eval"]}
        for spec in a.extra:
            label, _, path = spec.partition("=")
            ev = read_card(Path(path)).get("eval")
            if not path or ev is None:
                raise SystemExit(f"--extra {spec!r}: expected LABEL=DIR of a model with an eval section")
            models[label] = ev
        card["ablation"] = {"profile": card["eval"]["profile"], "models": models}
        print(_ablation_md(card))
    write_card(d, card)
    write_markdown(d, card)
    json.dumps(card)  # fail loudly here rather than in a reader
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
