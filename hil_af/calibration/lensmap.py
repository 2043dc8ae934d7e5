"""Lens map calibration: dioptres -> lens codes from sweeps of a chart at known distances,
written as the ``map`` of libcamera's ``rpi.af`` in a tuning file.

For each chart distance d (metres; ``inf`` = focus at infinity, 0 dioptres)
the lens sweeps its range and the code of peak contrast (log-parabola
through the best sample and its neighbours) is where a subject at 1/d
dioptres is sharp.  A VCM's code is close to linear in dioptres, so
``fit_lens_map`` fits code = a + b x dioptres by least squares and reports
the residuals; the map spans 0 dioptres to the dioptres of the lens's near end.

The tuning file format is what ``RPiController::Controller::read``
(``src/ipa/rpi/controller/controller.cpp``) loads: version 2.0 (``version``
< 3.0) needs an ``algorithms`` list of one-key dicts, and an algorithm
type may appear once; ``rpi.af``'s ``map`` is read by
``ValueNode::Accessor<ipa::Pwl>`` (``src/ipa/libipa/pwl.cpp``): a non-empty
even-length list of numbers, x (dioptres) strictly increasing, else the map
is silently replaced by the IMX708 default (0 D -> 445, 15 D -> 925;
``Af::CfgParams::initialise`` in ``af.cpp``).  ``validate_tuning`` checks all of this.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BadInput, FormatError

# rpi.af for a module without PDAF (CDAF scan only: pdaf_gain 0, dropout_frames 0 make
# Af::startAF go straight to startProgrammedScan); other numbers: the IMX708 tuning's.
CDAF_ONLY_AF: dict[str, Any] = {
    "ranges": {"normal": {"min": 0.0, "max": 12.0, "default": 1.0},
               "macro": {"min": 3.0, "max": 15.0, "default": 4.0}},
    "speeds": {"normal": {"step_coarse": 1.0, "step_fine": 0.25, "contrast_ratio": 0.75, "retrigger_ratio": 0.8,
                          "retrigger_delay": 10, "pdaf_gain": 0.0, "pdaf_squelch": 0.125, "max_slew": 1.5,
                          "pdaf_frames": 0, "dropout_frames": 0, "step_frames": 5}},
    "conf_epsilon": 8, "conf_thresh": 16, "conf_clip": 512, "skip_frames": 5, "check_for_ir": False,
}


@dataclass
class LensMapFit:
    dioptres: list[float]      # chart focus, 1/m, one per distance
    codes: list[float]         # peak-contrast lens code at each
    offset: float              # a: code at 0 dioptres
    slope: float               # b: codes per dioptre
    rms_codes: float           # residual RMS of the linear fit, codes
    knots: list[float]         # libcamera map [d0, c0, d1, c1]

    def to_json(self) -> dict[str, Any]:
        return {"dioptres": self.dioptres, "codes": self.codes, "offset_codes": self.offset,
                "codes_per_dioptre": self.slope, "rms_codes": self.rms_codes, "map": self.knots}


def parse_distances(text: str) -> list[float]:
    """``0.3,0.5,1,inf`` -> metres (inf allowed); BadInput on anything else."""
    out = []
    for tok in str(text).split(","):
        tok = tok.strip().lower()
        try:
            v = math.inf if tok in ("inf", "infinity") else float(tok)
        except ValueError:
            raise BadInput(f"--distances: {tok!r} is not a distance in metres (or inf)") from None
        if not v > 0 or math.isnan(v):
            raise BadInput(f"--distances: {tok!r} must be > 0 metres")
        out.append(v)
    if len(set(out)) < 2:
        raise BadInput(f"--distances needs at least 2 different distances, got {text!r}")
    return out


def peak_position(positions: np.ndarray, contrast: np.ndarray, min_ratio: float = 1.5) -> float:
    """Lens position of peak contrast (log-parabola through the best sample and its neighbours)."""
    c = np.asarray(contrast, dtype=np.float64)
    k = int(np.argmax(c))
    if c[k] < min_ratio * float(np.median(c)):
        raise BadInput(f"no contrast peak in the sweep (peak/median {c[k] / max(float(np.median(c)), 1e-12):.2f} "
                       f"< {min_ratio}): is the chart in the AF window and lit?")
    if 0 < k < len(c) - 1:
        y = np.log(np.maximum(c[k - 1: k + 2], 1e-12))
        den = y[0] - 2 * y[1] + y[2]
        off = 0.0 if den >= 0 else float(np.clip(0.5 * (y[0] - y[2]) / den, -0.5, 0.5))
        return float(np.interp(k + off, np.arange(len(positions)), positions))
    return float(positions[k])


def fit_lens_map(dioptres, codes, lens_range: tuple[float, float]) -> LensMapFit:
    """Least-squares code = a + b * dioptres; knots from 0 D to the dioptres of the lens's near end."""
    d = np.asarray(dioptres, dtype=np.float64)
    c = np.asarray(codes, dtype=np.float64)
    b, a = np.polyfit(d, c, 1)
    if not (np.isfinite(b) and abs(b) > 1e-9):
        raise BadInput("the peak codes do not change with distance: cannot fit a lens map")
    rms = float(np.sqrt(np.mean((a + b * d - c) ** 2)))
    d_near = max((float(e) - a) / b for e in lens_range)
    if d_near <= 0:
        raise BadInput(f"fitted map puts the whole lens range beyond infinity (code at 0 D {a:.1f}, {b:.2f} codes/D)")
    d_near = math.floor(d_near * 100) / 100
    knots = [0.0, float(round(a)), d_near, float(round(a + b * d_near))]
    return LensMapFit([float(v) for v in d], [float(v) for v in c], float(a), float(b), rms, knots)


def validate_tuning(doc: Any) -> None:
    """Raise FormatError unless libcamera's Raspberry Pi controller would load ``doc`` and its rpi.af map."""
    if not isinstance(doc, dict):
        raise FormatError("tuning file: the top level must be a JSON object")
    version = doc.get("version", 1.0)
    if not isinstance(version, (int, float)) or isinstance(version, bool):
        raise FormatError(f"tuning file: version must be a number, got {version!r}")
    if version < 2.0:
        algos = [{k: v} for k, v in doc.items()]
    elif version < 3.0:
        if not isinstance(doc.get("algorithms"), list):
            raise FormatError('tuning file: version 2.x needs an "algorithms" list')
        algos = doc["algorithms"]
    else:
        raise FormatError(f"tuning file: unrecognised version {version} (libcamera reads < 3.0)")
    seen: set[str] = set()
    af = None
    for i, entry in enumerate(algos):
        if not isinstance(entry, dict):
            raise FormatError(f"tuning file: algorithms[{i}] must be an object {{name: parameters}}")
        for name, params in entry.items():
            if name in ("version", "target") and version < 2.0:
                continue
            kind = name.rsplit(".", 1)[-1]
            enabled = not (isinstance(params, dict) and params.get("enabled") is False)
            if enabled and kind in seen:
                raise FormatError(f"tuning file: algorithm type {kind!r} appears twice ({name})")
            seen.add(kind) if enabled else None
            if name == "rpi.af":
                af = params
    if af is None:
        raise FormatError("tuning file: no rpi.af algorithm")
    m = af.get("map") if isinstance(af, dict) else None
    if not isinstance(m, list) or not m or len(m) % 2:
        raise FormatError(f"tuning file: rpi.af map must be a non-empty list of (dioptres, code) pairs, got {m!r}")
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in m):
        raise FormatError("tuning file: rpi.af map values must be finite numbers")
    xs = m[0::2]
    if any(not (x1 > x0 + 1e-6) for x0, x1 in zip(xs, xs[1:])):
        raise FormatError(f"tuning file: rpi.af map dioptres must increase strictly, got {xs}")


def tuning_with_map(knots: list[float], base: dict | None = None, target: str = "bcm2835") -> dict:
    """``base`` (a libcamera tuning, version 2.0) with rpi.af's map set to ``knots``; rpi.af is added
    (CDAF only, ``CDAF_ONLY_AF``) when the base has none.  Without ``base``: a file with rpi.af alone."""
    doc: dict[str, Any] = copy.deepcopy(base) if base is not None else {"version": 2.0, "target": target, "algorithms": []}
    if doc.get("version", 1.0) < 2.0 or not isinstance(doc.get("algorithms"), list):
        raise FormatError("base tuning file must be version 2.0 with an \"algorithms\" list "
                          "(convert older ones with libcamera's convert_tuning.py)")
    entry = next((a for a in doc["algorithms"] if isinstance(a, dict) and "rpi.af" in a), None)
    if entry is None:
        entry = {"rpi.af": copy.deepcopy(CDAF_ONLY_AF)}
        doc["algorithms"].append(entry)
    af = entry["rpi.af"]
    af["map"] = [float(k) if i % 2 == 0 else int(k) for i, k in enumerate(knots)]
    near = knots[-2]
    for r in af.get("ranges", {}).values():  # keep the ranges inside the map's domain
        r["max"] = min(float(r.get("max", near)), near)
        r["min"] = min(float(r.get("min", 0.0)), r["max"])
        r["default"] = min(max(float(r.get("default", r["min"])), r["min"]), r["max"])
    validate_tuning(doc)
    return doc
