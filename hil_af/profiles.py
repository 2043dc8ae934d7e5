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

import math
import tomllib
from pathlib import Path
from typing import Any

from .errors import BadInput, FormatError
from .paths import rig_profile_path
from .stackcheck import MAX_SLICES

MAX_PROFILE_BYTES = 1 << 20  # a rig profile is < 4 KiB; 1 MiB at most
MAX_LIST = 1024  # values in a [lens_map] list at most


def is_profile_spec(spec: str) -> bool:
    """True for a TOML path or a bare profile name (no ``://``)."""
    return "://" not in spec


def load_profile(spec: str | Path) -> dict[str, Any]:
    """Load and validate a rig profile by path or by name (``sim-default``)."""
    from .npzread import read_text_file

    path = rig_profile_path(str(spec))
    text = read_text_file(path, "rig profile", MAX_PROFILE_BYTES)  # regular file, UTF-8, bounded
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError, ValueError) as e:
        why = "nested too deeply" if isinstance(e, RecursionError) else " ".join(str(e).split())[:200]
        raise FormatError(f"{path}: not valid TOML: {why}") from None
    rig = data.get("rig")
    if not isinstance(rig, dict) or not isinstance(rig.get("source"), str):
        raise FormatError(f"{path}: a rig profile needs a [rig] table with a 'source' URL string")
    rig.setdefault("name", path.stem)
    lm = data.get("lens_map")
    if lm is not None:
        if not (isinstance(lm, dict) and isinstance(lm.get("dioptres"), list) and isinstance(lm.get("codes"), list)):
            raise FormatError(f"{path}: [lens_map] needs 'dioptres' and 'codes' lists")
        from .optics import LensMap

        if max(len(lm["dioptres"]), len(lm["codes"])) > MAX_LIST:
            raise FormatError(f"{path}: [lens_map] lists hold at most {MAX_LIST} values")
        try:
            LensMap(tuple(lm["dioptres"]), tuple(lm["codes"]))
        except (BadInput, TypeError, ValueError, OverflowError) as e:
            raise FormatError(f"{path}: [lens_map]: {e}") from None
    af = data.get("af", {})
    if not isinstance(af, dict):
        raise FormatError(f"{path}: [af] must be a table")
    rng = af.get("range")
    if "range" in af and (not isinstance(rng, list) or len(rng) != 2
                          or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in rng)
                          or not rng[0] < rng[1]):
        raise FormatError(f"{path}: [af] range must be [min, max] finite numbers with min < max")
    if "slices" in af and (not isinstance(af["slices"], int) or isinstance(af["slices"], bool)
                           or not 2 <= af["slices"] <= MAX_SLICES):
        raise FormatError(f"{path}: [af] slices must be an integer in 2..{MAX_SLICES}, got {af['slices']!r}")
    if "sim" in data:  # sizes bounded and numbers finite before any rig is built from it
        from .sim.params import SimParams

        if not isinstance(data["sim"], dict):
            raise FormatError(f"{path}: [sim] must be a table")
        SimParams.from_table(data["sim"], f"{path}: [sim]")
    cal = data.get("calibration")
    if cal is not None:
        if not isinstance(cal, dict) or not all(isinstance(v, str) for v in cal.values()):
            raise FormatError(f"{path}: [calibration] must be a table of file paths (strings)")
        for key, value in cal.items():  # relative paths are relative to THIS profile's folder
            cand = path.parent / value
            if value and not Path(value).is_absolute() and cand.exists():
                cal[key] = str(cand.resolve())
    data["_path"] = str(path)
    return data
