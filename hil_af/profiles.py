"""Rig profiles: TOML files that name a rig's frame source, lens and lens map.

Layout (see calibration/rigs/*.toml)::

    [rig]
    name = "imx708-cm3"
    source = "picamera2://0?layout=..."   # or a rig URL such as sim://...
    lens = "libcamera-lens://0"           # optional when source is a rig URL

    [lens_map]                             # optional: dioptres <-> native codes
    dioptres = [0.0, 15.0]
    codes = [445, 925]

    [af]                                   # optional
    slices = 49                            # n of the AF slice grid
    range = [445, 925]                     # native units swept by the slices

Simulated rigs add a ``[sim]`` table read by ``hil_af.sim``.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from .errors import BadInput, FormatError
from .paths import rig_profile_path


def is_profile_spec(spec: str) -> bool:
    """True for a TOML path or a bare profile name (no ``://``)."""
    return "://" not in spec


def load_profile(spec: str | Path) -> dict[str, Any]:
    """Load and validate a rig profile by path or by name (``sim-default``)."""
    path = rig_profile_path(str(spec))
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise FormatError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise BadInput(f"{path}: cannot read rig profile: {e}") from None
    rig = data.get("rig")
    if not isinstance(rig, dict) or not isinstance(rig.get("source"), str):
        raise FormatError(f"{path}: a rig profile needs a [rig] table with a 'source' URL string")
    rig.setdefault("name", path.stem)
    lm = data.get("lens_map")
    if lm is not None:
        if not (isinstance(lm, dict) and isinstance(lm.get("dioptres"), list) and isinstance(lm.get("codes"), list)):
            raise FormatError(f"{path}: [lens_map] needs 'dioptres' and 'codes' lists")
        from .optics import LensMap

        try:
            LensMap(tuple(lm["dioptres"]), tuple(lm["codes"]))
        except BadInput as e:
            raise FormatError(f"{path}: [lens_map]: {e}") from None
    af = data.get("af", {})
    if not isinstance(af, dict):
        raise FormatError(f"{path}: [af] must be a table")
    rng = af.get("range")
    if "range" in af and (not isinstance(rng, list) or len(rng) != 2
                          or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng)
                          or not rng[0] < rng[1]):
        raise FormatError(f"{path}: [af] range must be [min, max] with min < max")
    if "slices" in af and (not isinstance(af["slices"], int) or af["slices"] < 2):
        raise FormatError(f"{path}: [af] slices must be an integer >= 2")
    data["_path"] = str(path)
    return data
