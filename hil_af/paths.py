"""Where the project's data files live: rig profiles and shipped models.

Both sit at the repository's top level (``calibration/rigs``, ``models``);
the package is installed editable (``pip install -e .``), so they are found
beside it.  ``HIL_AF_RIGS`` and ``HIL_AF_MODELS`` override the locations.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import BadInput

REPO_ROOT = Path(__file__).resolve().parent.parent


def rigs_dir() -> Path:
    return Path(os.environ.get("HIL_AF_RIGS", REPO_ROOT / "calibration" / "rigs"))


def models_dir() -> Path:
    return Path(os.environ.get("HIL_AF_MODELS", REPO_ROOT / "models"))


def rig_profile_path(name_or_path: str) -> Path:
    """A rig profile TOML: a path as given, or a name in ``rigs_dir()`` (with or without .toml)."""
    p = Path(name_or_path)
    if p.suffix == ".toml" and p.exists():
        return p
    name = p.name if p.suffix == ".toml" else p.name + ".toml"
    cand = rigs_dir() / name
    if cand.exists():
        return cand
    known = sorted(q.stem for q in rigs_dir().glob("*.toml")) if rigs_dir().exists() else []
    hint = ""
    if ":" in name_or_path and "://" not in name_or_path:  # e.g. sim:/?seed=1 or sim:?seed=1
        scheme = name_or_path.split(":", 1)[0]
        hint = f"; a driver URL needs scheme://..., e.g. {scheme}://?seed=1 or replay://stack.npz (hil-af drivers lists the schemes)"
    raise BadInput(f"rig profile {name_or_path!r} not found (looked in {rigs_dir()}; known: {', '.join(known) or 'none'}){hint}")
