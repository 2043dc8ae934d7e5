"""No pickle loading anywhere: no ``allow_pickle=True`` and no ``torch.load(`` in the package or scripts."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FORBIDDEN = [
    (re.compile(r"allow_pickle\s*=\s*True"), "allow_pickle=True"),
    (re.compile(r"torch\s*\.\s*load\s*\("), "torch.load("),
    (re.compile(r"\bpickle\s*\.\s*loads?\s*\("), "pickle.load("),
    (re.compile(r"\b(cPickle|dill|joblib)\s*\.\s*load"), "pickle-based loader"),
]


def _files():
    for top in ("hil_af", "scripts", "benchmarks", "drivers", "calibration", "models"):
        d = ROOT / top
        if d.is_dir():
            for p in sorted(d.rglob("*")):
                if p.is_file() and p.suffix in (".py", ".sh", "") and "__pycache__" not in p.parts:
                    yield p


def scan(text: str) -> list[str]:
    return [name for rx, name in FORBIDDEN if rx.search(text)]


def test_the_scanner_catches_each_pattern():
    samples = ["np.load(p, allow_pickle=True)", "np.load(p, allow_pickle = True)",
               "torch.load(path)", "torch . load (f)", "pickle.load(f)", "pickle.loads(b)", "joblib.load(x)"]
    assert all(scan(s) for s in samples)
    assert scan("np.load(p, allow_pickle=False)\nsafetensors.torch.load_file(p)\n# torch_load") == []


def test_no_pickle_loading_in_package_or_scripts():
    files = list(_files())
    assert any(p.name == "stacks.py" for p in files)  # the scan does look at the package
    hits = []
    for p in files:
        try:
            text = p.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for name in scan(text):
            hits.append(f"{p.relative_to(ROOT)}: {name}")
    assert not hits, "pickle loading found (never load pickles):\n" + "\n".join(hits)
