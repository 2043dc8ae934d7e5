"""The model card: card.json (machine-readable, read by inference) and MODEL_CARD.md.

card.json keys: ``format`` ("hil-af-pe-model"), ``version`` (1), ``arch``,
``n_slices``, ``input`` (shape), ``encoding`` (hil_af.model.encoding
EncodingConfig as a dict: inference rebuilds its encoder from it),
``files`` (step1/step2/weights file names and their sha256), ``params``,
``macs`` and ``flops`` (= 2 x MACs) per 64x64 patch, ``data``,
``settings``, ``val`` (held-out validation metrics per epoch), ``onnx_check``,
``timing_s``, and after ``hil_af.model.validate`` an ``eval`` section.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

FORMAT = "hil-af-pe-model"
VERSION = 1
FILES = {"step1": "step1.onnx", "step2": "step2.onnx", "weights": "weights.npz"}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def build_card(*, arch: str, n_slices: int, encoding: dict[str, Any], params: int, macs: int,
               **sections: Any) -> dict[str, Any]:
    size = int(encoding["size"])
    return {"format": FORMAT, "version": VERSION, "arch": arch, "n_slices": int(n_slices),
            "input": {"name": "x", "shape": ["batch", 5, size, size], "output": "logits"},
            "encoding": encoding, "files": dict(FILES), "params": int(params), "macs": int(macs),
            "flops": 2 * int(macs), **sections}


def write_card(model_dir: Path, card: dict[str, Any]) -> Path:
    """Fill file hashes and write model_dir/card.json atomically."""
    from ..atomic import atomic_write_text

    model_dir = Path(model_dir)
    card = dict(card)
    card["sha256"] = {k: sha256(model_dir / f) for k, f in card.get("files", FILES).items() if (model_dir / f).is_file()}
    path = model_dir / "card.json"
    atomic_write_text(path, json.dumps(card, indent=2, default=_default) + "\n")
    return path


def _default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{100 * v:.1f}"


def eval_table(rows: dict[str, dict[str, float]]) -> str:
    """Markdown table of protocol results {name: {exact, le1, le2, le4, mae, rmse, samples}}."""
    out = ["| model / method | =0 % | <=1 % | <=2 % | <=4 % | MAE (slices) | RMSE | samples |",
           "|---|---|---|---|---|---|---|---|"]
    for name, m in rows.items():
        out.append(f"| {name} | {_pct(m.get('exact'))} | {_pct(m.get('le1'))} | {_pct(m.get('le2'))} | "
                   f"{_pct(m.get('le4'))} | {m.get('mae', float('nan')):.2f} | {m.get('rmse', float('nan')):.2f} | "
                   f"{m.get('samples', '-')} |")
    return "\n".join(out)


def render_markdown(card: dict[str, Any], extra: str = "") -> str:
    """A human-readable MODEL_CARD.md from a card dict (plus optional extra markdown)."""
    enc = card["encoding"]
    s = card.get("settings", {})
    d = card.get("data", {})
    lines = [
        f"# Model card: hil-af position-encoded AF model ({card['arch']})", "",
        "Step-1 and step-2 models of the multi-step PE autofocus of Choi et al. (ICCV 2023).", "",
        "## Model", "",
        f"- architecture: `{card['arch']}` (hil_af/model/nets.py), {card['params']:,} parameters, "
        f"{card['macs'] / 1e6:.2f} M MACs = {card['flops'] / 1e6:.2f} MFLOPs per {enc['size']}x{enc['size']} patch "
        "(conv + linear layers)",
        f"- output: {card['n_slices']} logits (focus slices)",
        f"- input: 5 x {enc['size']} x {enc['size']}: left, right (per-view mean removed, common std), "
        f"RoI-PE x/y on the full sensor plane ({'on' if enc['roi_pe'] else 'OFF: zero planes'}), "
        f"lens-PE k/(n-1) ({'on' if enc['lens_pe'] else 'OFF: zero plane'}); RoI fit: `{enc['fit']}`",
        "", "## Data", "",
        f"- {d.get('stacks')} focal stacks from `{d.get('stacks_dir')}`; {d.get('rois_with_gt')} RoIs with ground truth; "
        f"{d.get('val_rois')} RoIs of {len(d.get('val_stacks', []))} whole stacks held out for validation",
        f"- step-1 pairs (RoI, slice) available {d.get('step1_samples')}, step-2 pairs {d.get('step2_samples')}; "
        f"each epoch draws {s.get('max_samples_per_epoch') or 'all'} of them (seeded)",
        "", "## Training", "",
        f"- step 1: {s.get('epochs')} epochs, T={s.get('T1')}, lr {s.get('lr')}; step 2: {s.get('epochs2')} epochs, "
        f"T={s.get('T2')}, lr {s.get('lr2')}, initialised from step 1; batch {s.get('batch')}, seed {s.get('seed')}, "
        f"{s.get('optimizer')}, augmentation: {s.get('augmentation')}",
        f"- wall time: {card.get('timing_s', {})} (s), torch {s.get('torch')}, {s.get('threads')} threads",
    ]
    val = card.get("val", {})
    if val.get("step1"):
        lines += ["", f"## Held-out validation (same profile, held-out stacks, {d.get('val_pairs', '?')} random (RoI, slice) "
                  "pairs; step 2 on the slices step 1 chose from them)", "",
                  "| step | loss | =0 % | <=1 % | MAE |", "|---|---|---|---|---|"]
        for k in ("step1", "step2"):
            m = val.get(k)
            if m:
                lines.append(f"| {k} | {m['loss']:.3f} | {_pct(m['exact'])} | {_pct(m['le1'])} | {m['mae']:.2f} |")
    chk = card.get("onnx_check")
    if chk:
        lines += ["", f"ONNX (onnxruntime) vs torch, max |logit diff| on a batch of {chk['batch']}: "
                  + ", ".join(f"{k} {v:.2e}" for k, v in chk["max_abs_logit_diff"].items())]
    ev = card.get("eval")
    if ev:
        lines += ["", f"## Evaluation on `{ev.get('profile')}` stacks (a lens profile NOT seen in training)", "",
                  f"{ev.get('stacks')} stacks, every RoI with gt, every start slice (paper's protocol).", "",
                  eval_table(ev["results"])]
    ev2 = card.get("eval_same_profile")
    if ev2:
        lines += ["", f"## Evaluation on `{ev2.get('profile')}` stacks of scenes not used in training (same profile)", "",
                  f"{ev2.get('stacks')} stacks, every RoI with gt, every start slice.", "", eval_table(ev2["results"])]
    if extra:
        lines += ["", extra.strip()]
    lines += ["", "## Regeneration", "",
              "`scripts/make_models.sh` (add `ABLATION=1` for the no-RoI-PE model) renders the sim stacks, trains, "
              "exports and evaluates, on a CPU; measured durations are in docs/model.md."]
    return "\n".join(lines) + "\n"
