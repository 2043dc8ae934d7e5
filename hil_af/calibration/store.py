"""CAL.json: the PDAF calibration file (version 1), written atomically, validated on load.

One JSON object, human readable::

    {"format": "hil-af-calibration", "version": 1,
     "kind": "per-position" | "global",
     "lens_units": "vcm_code",            # native units of every defocus below
     "sensor_hw": [H_full, W_full],       # pixels
     "grid": [R, C],                      # cells over the FULL sensor plane ([1, 1] for global)
     "model": "disparity_px = gain_px_per_unit * defocus + offset_px; defocus = lens_position - in_focus_position",
     "estimator": {"method": "xcorr", "max_shift_px": 12, "refine": "upsample", "min_confidence": 0.2},
     "slice_spacing": 16.7,               # native units between AF slices of the stacks (median)
     "disparity_limit_px": 9.6,           # |disparity| beyond this was not used (estimator range)
     "flatfield": null | {"path": "...", "sha256": "..."},
     "stacks": {"dir": "...", "files": [...]},
     "global_fit": {<fit>},               # one relation for the whole sensor (kept in both kinds)
     "cells": [{"row": r, "col": c, "y0": .., "y1": .., "x0": .., "x1": ..,   # full-plane px bounds
                <fit>, "borrowed": false, "borrowed_from": []}, ...],         # R*C cells, row-major
     "samples": {"cell": [...], "defocus": [...], "disparity_px": [...], "confidence": [...]}}  # subsample for plots

``<fit>`` = ``{"gain_px_per_unit": g, "offset_px": o, "dcc_units_per_px": 1/g,
"gain_px_per_slice": g * slice_spacing, "residual_rms_px": .., "n_points": n, "r2": ..}``:
per block the DCC (defocus conversion coefficient, native units of defocus
per pixel of disparity) and the phase offset, with fit quality.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_text
from ..errors import FormatError

FORMAT = "hil-af-calibration"
VERSION = 1
KINDS = ("per-position", "global")
MAX_GRID_SIDE = 256  # rows, cols of a calibration grid at most
FIT_KEYS = ("gain_px_per_unit", "offset_px", "residual_rms_px", "n_points", "r2")
MODEL_TEXT = ("disparity_px = gain_px_per_unit * defocus + offset_px; "
              "defocus = lens_position - in_focus_position (native lens units)")


def _fail(where: str, rule: str) -> FormatError:
    return FormatError(f"{where}: not a valid calibration file: {rule}")


def _num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(float(v))


def _check_fit(fit: Any, where: str, what: str) -> None:
    if not isinstance(fit, dict):
        raise _fail(where, f"{what} must be an object")
    for k in FIT_KEYS:
        if k not in fit:
            raise _fail(where, f"{what} lacks {k!r}")
        if not _num(fit[k]):
            raise _fail(where, f"{what}.{k} must be a finite number, got {fit[k]!r}")
    if abs(float(fit["gain_px_per_unit"])) < 1e-12:
        raise _fail(where, f"{what}.gain_px_per_unit is 0: the disparity does not depend on defocus")


def validate(cal: Any, where: str) -> dict[str, Any]:
    """Check a calibration object; FormatError naming ``where`` and the rule broken."""
    if not isinstance(cal, dict):
        raise _fail(where, "the top level must be a JSON object")
    if cal.get("format") != FORMAT:
        raise _fail(where, f"format is {cal.get('format')!r}, expected {FORMAT!r}")
    if isinstance(cal.get("version"), bool) or cal.get("version") != VERSION:
        raise _fail(where, f"unknown version {cal.get('version')!r} (this hil-af reads version {VERSION})")
    if cal.get("kind") not in KINDS:
        raise _fail(where, f"kind must be one of {KINDS}, got {cal.get('kind')!r}")
    for key in ("lens_units", "sensor_hw", "grid", "estimator", "slice_spacing", "global_fit", "cells"):
        if key not in cal:
            raise _fail(where, f"missing key {key!r}")
    if not isinstance(cal["lens_units"], str):
        raise _fail(where, "lens_units must be a string")
    shw, grid = cal["sensor_hw"], cal["grid"]
    if not (isinstance(shw, list) and len(shw) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in shw)):
        raise _fail(where, f"sensor_hw must be [H, W] positive integers, got {shw!r}")
    if not (isinstance(grid, list) and len(grid) == 2 and all(isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_GRID_SIDE for v in grid)):
        raise _fail(where, f"grid must be [rows, cols] integers in 1..{MAX_GRID_SIDE}, got {grid!r}")
    if cal["kind"] == "global" and grid != [1, 1]:
        raise _fail(where, f"a global calibration has grid [1, 1], got {grid!r}")
    est = cal["estimator"]
    from ..pdaf import METHODS

    if not isinstance(est, dict) or est.get("method") not in METHODS:
        raise _fail(where, f"estimator.method must be one of {METHODS}")
    if not _num(est.get("max_shift_px")) or est["max_shift_px"] < 1:
        raise _fail(where, "estimator.max_shift_px must be a number >= 1")
    if est.get("refine", "upsample") not in ("upsample", "parabola"):
        raise _fail(where, "estimator.refine must be 'upsample' or 'parabola'")
    if not _num(cal["slice_spacing"]) or cal["slice_spacing"] <= 0:
        raise _fail(where, "slice_spacing must be a positive number")
    if "disparity_limit_px" in cal and (not _num(cal["disparity_limit_px"]) or cal["disparity_limit_px"] <= 0):
        raise _fail(where, "disparity_limit_px must be a positive number")
    _check_fit(cal["global_fit"], where, "global_fit")
    cells = cal["cells"]
    R, C = grid
    if not isinstance(cells, list) or len(cells) != R * C:
        raise _fail(where, f"cells must be a list of {R}x{C} = {R * C} objects, got {len(cells) if isinstance(cells, list) else type(cells).__name__}")
    for i, c in enumerate(cells):
        what = f"cells[{i}]"
        _check_fit(c, where, what)
        if c.get("row") != i // C or c.get("col") != i % C:
            raise _fail(where, f"{what} must be row {i // C}, col {i % C} (row-major), got row {c.get('row')!r} col {c.get('col')!r}")
    ff = cal.get("flatfield")
    if ff is not None and not (isinstance(ff, dict) and isinstance(ff.get("path"), str) and isinstance(ff.get("sha256"), str)):
        raise _fail(where, "flatfield must be null or {\"path\": str, \"sha256\": str}")
    s = cal.get("samples")
    if s is not None:
        keys = ("cell", "defocus", "disparity_px", "confidence")
        if not isinstance(s, dict) or any(not isinstance(s.get(k), list) for k in keys) or len({len(s[k]) for k in keys}) != 1:
            raise _fail(where, "samples must hold equal-length lists cell, defocus, disparity_px, confidence")
    return cal


def load_calibration(path: str | os.PathLike) -> dict[str, Any]:
    """Read and validate CAL.json; FormatError (naming the file) if it is not one."""
    from ..jsonread import load_json_file

    p = Path(path)
    cal = load_json_file(p, "calibration file")
    return validate(cal, str(p))


def save_calibration(path: str | os.PathLike, cal: dict[str, Any]) -> Path:
    """Validate and write CAL.json atomically (indented; samples on few lines)."""
    p = Path(path)
    validate(cal, f"{p} (writing)")
    body = {k: v for k, v in cal.items() if k != "samples"}
    text = json.dumps(body, indent=2)
    if cal.get("samples") is not None:
        # keep the (long) sample lists on one line each so the file stays readable
        s = cal["samples"]
        lines = ",\n".join(f'    "{k}": {json.dumps(v)}' for k, v in s.items())
        text = text[:-2] + ',\n  "samples": {\n' + lines + "\n  }\n}"
    json.loads(text)  # never write what we could not read back
    atomic_write_text(p, text + "\n")
    return p
