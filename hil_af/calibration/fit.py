"""Per-block DCC fits: how disparity relates to defocus over the sensor.

``measure_stacks`` runs the PDAF estimator on every RoI of every slice of
every focal stack and pairs each disparity (px) with its defocus
``lens_position - in_focus_position`` (native lens units).  The in-focus
position of a RoI is, in order of preference: the stack's exact
``meta["gt_lens_positions"]`` (written when the rig knew the truth), the
subpixel contrast peak of the RoI over the sweep (when it lies within one
slice of ``gt_index``), or the lens position of slice ``gt_index``.

``fit_calibration`` fits, per cell of a R x C grid over the FULL sensor
plane (a RoI belongs to the cell holding its centre; ``origin`` honoured),
the line ``disparity = g * defocus + o`` robustly: points below the
confidence floor are dropped, points with ``|disparity|`` above
``disparity_limit`` (default 0.17 x max_shift: the near-focus range, which
sets where the AF loop converges) are not used, whole tracks (one RoI of one
stack) that disagree with the cell's consensus are dropped
(``track_consensus``: RoIs straddling two depths, or labelled with a depth
their texture does not have), and the line is started by Theil-Sen (median
of pairwise slopes) and refined by confidence-weighted Tukey-biweight IRLS,
so textureless or mixed RoIs do not move it.  ``g`` is px per native unit; the DCC ``1 / g`` native units per px;
``o`` the phase offset (px).  Cells with too little data borrow the mean fit
of their nearest cells that have data, flagged ``borrowed``.  ``global``
fits one line to every point: the baseline that ignores the position.
"""

from __future__ import annotations

import datetime as _dt
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..errors import BadInput
from ..pdaf import estimate_rois
from ..stacks import stack_files  # noqa: F401  (calibrate fit/report use F.stack_files)
from .store import FORMAT, MODEL_TEXT, VERSION

DEFAULT_METHOD = "xcorr"
DEFAULT_MAX_SHIFT = 12.0
DEFAULT_MIN_CONFIDENCE = 0.2
DEFAULT_LIMIT_FRACTION = 0.17  # disparity_limit = this x max_shift (2 px at 12): the near-focus range (measured: docs/pdaf-calibration.md)
MIN_POINTS = 20
SAMPLES_PER_CELL = 150


@dataclass
class Samples:
    """One row per (stack, RoI, slice); float64 [N] arrays unless noted.

    cx, cy: RoI centre on the full plane, px.  defocus: lens_position minus
    the RoI's in-focus position, native units.  disparity: px.
    """

    stack: np.ndarray  # int [N]
    roi: np.ndarray  # int [N]
    cx: np.ndarray
    cy: np.ndarray
    lens_position: np.ndarray
    defocus: np.ndarray
    disparity: np.ndarray
    confidence: np.ndarray
    sensor_hw: tuple[int, int]
    slice_spacing: float
    lens_units: str
    files: list[str] = field(default_factory=list)


def in_focus_positions(stack) -> np.ndarray:
    """In-focus lens position (native units) of each RoI of a FocalStack, NaN where unknown."""
    from ..capture import contrast_curve, contrast_peak

    P = stack.rois.shape[0]
    lp = np.asarray(stack.lens_positions, dtype=np.float64)
    out = np.full(P, np.nan)
    exact = stack.meta.get("gt_lens_positions")
    if isinstance(exact, list) and len(exact) == P:
        out = np.array([float(v) if isinstance(v, (int, float)) and math.isfinite(v) else np.nan for v in exact])
    need = ~np.isfinite(out) & (np.asarray(stack.gt_index) >= 0)
    if need.any():
        curves = contrast_curve(stack, stack.rois[need])
        for j, i in enumerate(np.flatnonzero(need)):
            k = int(stack.gt_index[i])
            idx, _ = contrast_peak(curves[j])
            if math.isfinite(idx) and abs(idx - k) <= 1.0:
                out[i] = float(np.interp(idx, np.arange(lp.size), lp))
            else:
                out[i] = lp[k]
    return out


def measure_stacks(paths: Sequence[str | os.PathLike], *, method: str = DEFAULT_METHOD,
                   max_shift: float = DEFAULT_MAX_SHIFT, refine: str = "upsample", flatfield=None,
                   progress: bool | None = False) -> Samples:
    """Disparity and defocus of every RoI in every slice of the focal stacks at ``paths``."""
    from ..progress import bar
    from ..stacks import load_stack

    if not paths:
        raise BadInput("no focal stacks to fit")
    cols: dict[str, list[np.ndarray]] = {k: [] for k in ("stack", "roi", "cx", "cy", "lp", "defocus", "d", "c")}
    spacings, units, hw = [], set(), set()
    for s, path in enumerate(bar(list(paths), progress, desc="measure", unit="stack", leave=False)):
        st = load_stack(path)
        hw.add(st.sensor_hw)
        units.add(str(st.meta.get("lens_units", "native")))
        lp = np.asarray(st.lens_positions, dtype=np.float64)
        spacings.append(float(np.median(np.diff(lp))))
        focus = in_focus_positions(st)
        ok = np.isfinite(focus)
        if not ok.any():
            continue
        rois = st.rois[ok]
        y0, x0 = st.origin
        cx = x0 + rois[:, 0] + rois[:, 2] / 2.0
        cy = y0 + rois[:, 1] + rois[:, 3] / 2.0
        for k in range(st.n):
            fr = st.frame(k)
            if flatfield is not None:
                fr = flatfield.apply(fr)
            res = estimate_rois(fr.left, fr.right, rois, method=method, max_shift=max_shift, refine=refine,
                                white_level=fr.white_level)
            n = rois.shape[0]
            cols["stack"].append(np.full(n, s))
            cols["roi"].append(np.flatnonzero(ok))
            cols["cx"].append(cx)
            cols["cy"].append(cy)
            cols["lp"].append(np.full(n, fr.lens_position))
            cols["defocus"].append(fr.lens_position - focus[ok])
            cols["d"].append(res.disparity_px)
            cols["c"].append(res.confidence)
    if len(hw) > 1:
        raise BadInput(f"the stacks come from sensors of different sizes {sorted(hw)}: fit them separately")
    if len(units) > 1:
        raise BadInput(f"the stacks use different lens units {sorted(units)}: fit them separately")
    if not cols["d"]:
        raise BadInput("none of the stacks has a RoI with a known in-focus position (gt_index all -1)")
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    return Samples(stack=cat["stack"].astype(np.int64), roi=cat["roi"].astype(np.int64), cx=cat["cx"], cy=cat["cy"],
                   lens_position=cat["lp"], defocus=cat["defocus"], disparity=cat["d"], confidence=cat["c"],
                   sensor_hw=next(iter(hw)), slice_spacing=float(np.median(spacings)), lens_units=next(iter(units)),
                   files=[str(p) for p in paths])


# --------------------------------------------------------------------------- robust line


def _wls(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> tuple[float, float]:
    sw = w.sum()
    mx, my = (w * x).sum() / sw, (w * y).sum() / sw
    vx = (w * (x - mx) ** 2).sum()
    if vx <= 0:
        return 0.0, float(my)
    g = float((w * (x - mx) * (y - my)).sum() / vx)
    return g, float(my - g * mx)


def robust_line(x: np.ndarray, y: np.ndarray, w: np.ndarray | None = None, seed: int = 0,
                iters: int = 30) -> dict[str, float] | None:
    """Robust fit of ``y = g * x + o`` (Theil-Sen start, Tukey-biweight IRLS, weights ``w``).

    Returns the fit dict of store.FIT_KEYS plus ``inlier_fraction`` and
    ``n_total``, or None with fewer than 3 points or no spread in x.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    w = np.ones_like(x) if w is None else np.maximum(np.asarray(w, np.float64), 0.0)
    m = np.isfinite(x) & np.isfinite(y) & (w > 0)
    x, y, w = x[m], y[m], w[m]
    n = x.size
    if n < 3 or np.ptp(x) <= 0:
        return None
    rng = np.random.default_rng(seed)
    i = rng.integers(0, n, 6000)
    j = rng.integers(0, n, 6000)
    dx = x[j] - x[i]
    keep = np.abs(dx) > 0.05 * np.ptp(x)
    g = float(np.median((y[j] - y[i])[keep] / dx[keep])) if keep.sum() >= 5 else _wls(x, y, w)[0]
    o = float(np.median(y - g * x))
    wt = w
    for _ in range(iters):
        r = y - (g * x + o)
        scale = max(1.4826 * float(np.median(np.abs(r - np.median(r)))), 1e-3)
        u = r / (4.685 * scale)
        wt = w * np.where(np.abs(u) < 1, (1 - u * u) ** 2, 0.0)
        if (wt > 0).sum() < 3:
            break
        g2, o2 = _wls(x, y, wt)
        done = abs(g2 - g) <= 1e-9 * max(1.0, abs(g)) and abs(o2 - o) <= 1e-9
        g, o = g2, o2
        if done:
            break
    inl = wt > 0
    r = y - (g * x + o)
    wi = w[inl]
    rms = float(np.sqrt((wi * r[inl] ** 2).sum() / wi.sum())) if inl.any() else float("nan")
    ym = (wi * y[inl]).sum() / wi.sum() if inl.any() else 0.0
    ss = float((wi * (y[inl] - ym) ** 2).sum()) if inl.any() else 0.0
    r2 = 1.0 - float((wi * r[inl] ** 2).sum()) / ss if ss > 0 else 0.0
    return {"gain_px_per_unit": float(g), "offset_px": float(o), "residual_rms_px": rms, "n_points": int(inl.sum()),
            "r2": float(r2), "n_total": int(n), "inlier_fraction": float(inl.mean())}


TRACK_SLOPE_TOL = 0.2  # tracks agree when their slopes differ by <= 20 % ...
TRACK_OFFSET_TOL_PX = 0.4  # ... and their offsets by <= 0.4 px


MAX_CANDIDATES = 2000  # tracks tried as the consensus per cell (all of them when fewer)


def _tracks(s: Samples, use: np.ndarray, cell: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """(cell, indices of its points) of every track (one RoI of one stack) among ``use``; O(N) memory."""
    idx = np.flatnonzero(use)
    if idx.size == 0:
        return []
    pairs = np.stack([np.asarray(cell)[idx], s.stack[idx], s.roi[idx]], axis=1).astype(np.int64)
    _, tid = np.unique(pairs, axis=0, return_inverse=True)
    tid = np.asarray(tid).reshape(-1)
    order = np.argsort(tid, kind="stable")
    groups = np.split(idx[order], np.flatnonzero(np.diff(tid[order])) + 1)
    return [(int(np.asarray(cell)[g[0]]), g) for g in groups]


def track_consensus(s: Samples, use: np.ndarray, cell: np.ndarray, seed: int = 0) -> np.ndarray:
    """Points of ``use`` that belong to consistent tracks, per cell (bool [N]).

    A track is one RoI of one stack: its points lie on one line.  A RoI that
    straddles two depths, or whose label is not the depth its texture has,
    gives a whole track off the true line (parallel, or with another slope),
    which point-wise robust fits cannot reject once such tracks are many.
    Per cell, each track with enough points is fitted; the track with the
    most support (points of tracks whose slope is within 20 % and offset
    within 0.4 px of it) wins, and only tracks that agree with it are kept.
    Cells with fewer than 3 judged tracks keep all their points.  Memory is
    linear in the number of points and tracks: tracks are index arrays, and
    with more than ``MAX_CANDIDATES`` tracks in a cell the winner is chosen
    among that many (seeded) candidates, their support counted in blocks.
    """
    keep = np.zeros_like(use)
    by_cell: dict[int, list[np.ndarray]] = {}
    for cid, g in _tracks(s, use, cell):
        by_cell.setdefault(cid, []).append(g)
    rng = np.random.default_rng(seed)
    for cid, groups in by_cell.items():
        tracks = []
        for g in groups:
            if g.size >= 5 and np.ptp(s.defocus[g]) >= 2 * s.slice_spacing:
                f = robust_line(s.defocus[g], s.disparity[g], s.confidence[g], seed=seed)
                if f is not None and f["gain_px_per_unit"] != 0:
                    tracks.append((g, f["gain_px_per_unit"], f["offset_px"], g.size))
        if len(tracks) < 3:
            for g in groups:
                keep[g] = True
            continue
        g_ = np.array([t[1] for t in tracks])
        o_ = np.array([t[2] for t in tracks])
        n_ = np.array([t[3] for t in tracks], dtype=np.float64)
        T = len(tracks)
        cand = np.arange(T) if T <= MAX_CANDIDATES else np.sort(rng.choice(T, MAX_CANDIDATES, replace=False))
        support = np.empty(cand.size)
        for a in range(0, cand.size, 64):  # 64 x T comparisons at a time
            c = cand[a:a + 64]
            agree = (np.abs(g_[c, None] - g_[None, :]) <= TRACK_SLOPE_TOL * np.abs(g_[c, None])) & \
                    (np.abs(o_[c, None] - o_[None, :]) <= TRACK_OFFSET_TOL_PX)
            support[a:a + 64] = agree @ n_
        best = int(cand[int(np.argmax(support))])
        agree_best = (np.abs(g_[best] - g_) <= TRACK_SLOPE_TOL * abs(g_[best])) & (np.abs(o_[best] - o_) <= TRACK_OFFSET_TOL_PX)
        for j in np.flatnonzero(agree_best):
            keep[tracks[j][0]] = True
    return keep


def _decorate(fit: dict[str, Any], spacing: float) -> dict[str, Any]:
    g = fit["gain_px_per_unit"]
    fit["dcc_units_per_px"] = 1.0 / g if g != 0 else float("inf")
    fit["gain_px_per_slice"] = g * spacing
    for k, v in list(fit.items()):
        if isinstance(v, float):
            fit[k] = float(f"{v:.6g}")
    return fit


# --------------------------------------------------------------------------- the calibration


def cell_index(cx: np.ndarray, cy: np.ndarray, sensor_hw: tuple[int, int], grid: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(row, col) of the grid cell holding each full-plane point (px)."""
    H, W = sensor_hw
    R, C = grid
    row = np.clip(np.floor(np.asarray(cy) / (H / R)).astype(np.int64), 0, R - 1)
    col = np.clip(np.floor(np.asarray(cx) / (W / C)).astype(np.int64), 0, C - 1)
    return row, col


def fit_calibration(samples: Samples, grid: tuple[int, int] = (3, 4), *, global_fit: bool = False,
                    method: str = DEFAULT_METHOD, max_shift: float = DEFAULT_MAX_SHIFT, refine: str = "upsample",
                    min_confidence: float = DEFAULT_MIN_CONFIDENCE, disparity_limit: float | None = None,
                    min_points: int = MIN_POINTS, flatfield: dict[str, str] | None = None,
                    stacks_dir: str | None = None, seed: int = 0) -> dict[str, Any]:
    """The CAL.json object (store.py) fitted from ``samples``."""
    R, C = (1, 1) if global_fit else (int(grid[0]), int(grid[1]))
    if R < 1 or C < 1:
        raise BadInput(f"grid must be at least 1x1, got {grid}")
    limit = float(disparity_limit) if disparity_limit is not None else round(DEFAULT_LIMIT_FRACTION * float(max_shift), 4)
    s = samples
    use = (s.confidence >= min_confidence) & (np.abs(s.disparity) <= limit) & np.isfinite(s.defocus)
    if use.sum() < 3:
        raise BadInput(f"only {int(use.sum())} measurements with confidence >= {min_confidence} and |disparity| <= {limit:g} px: "
                       "the stacks lack texture or in-focus labels")
    H, W = s.sensor_hw
    row, col = cell_index(s.cx, s.cy, s.sensor_hw, (R, C))
    # whole-track outliers: judged per cell of this grid (of the default 3 x 4 grid for a global fit,
    # so that both kinds are fitted to the same cleaned points)
    cr, cc = cell_index(s.cx, s.cy, s.sensor_hw, (3, 4)) if global_fit else (row, col)
    use = track_consensus(s, use, cr * (int(cc.max(initial=0)) + 1) + cc, seed=seed)
    gfit = robust_line(s.defocus[use], s.disparity[use], s.confidence[use], seed=seed)
    if gfit is None or gfit["gain_px_per_unit"] == 0:
        raise BadInput("the disparity does not change with defocus in these stacks: cannot calibrate")
    fits: list[dict[str, Any] | None] = []
    for r in range(R):
        for c in range(C):
            m = use & (row == r) & (col == c)
            f = None
            if m.sum() >= min_points and np.ptp(s.defocus[m]) >= 4 * s.slice_spacing:
                f = robust_line(s.defocus[m], s.disparity[m], s.confidence[m], seed=seed)
                if f is not None and (f["n_points"] < min_points or f["gain_px_per_unit"] == 0
                                      or np.sign(f["gain_px_per_unit"]) != np.sign(gfit["gain_px_per_unit"])):
                    f = None
            fits.append(f)
    if global_fit:
        fits = [dict(gfit)]
    have = [i for i, f in enumerate(fits) if f is not None]
    if not have:
        raise BadInput(f"no cell of the {R}x{C} grid has {min_points} usable measurements: use a coarser --grid or more stacks")
    cells = []
    for i, f in enumerate(fits):
        r, c = divmod(i, C)
        borrowed_from: list[list[int]] = []
        if f is None:  # mean of the nearest cells with data
            dist = np.array([math.hypot(divmod(j, C)[0] - r, divmod(j, C)[1] - c) for j in have])
            near = [have[k] for k in np.flatnonzero(dist <= dist.min() + 1e-9)]
            src = [fits[j] for j in near]
            f = {k: float(np.mean([q[k] for q in src])) for k in ("gain_px_per_unit", "offset_px", "residual_rms_px", "r2")}  # type: ignore[index]
            f["n_points"] = 0
            borrowed_from = [list(divmod(j, C)) for j in near]
        cell: dict[str, Any] = {"row": r, "col": c, "y0": round(r * H / R, 3), "y1": round((r + 1) * H / R, 3),
                "x0": round(c * W / C, 3), "x1": round((c + 1) * W / C, 3)}
        cell.update(_decorate(dict(f), s.slice_spacing))
        cell["borrowed"] = bool(borrowed_from)
        cell["borrowed_from"] = borrowed_from
        cells.append(cell)
    controller = _controller_block(s, use | (s.confidence < min_confidence), cells, (R, C), limit)
    # a subsample of the points, per cell, for plots (report.py)
    rng = np.random.default_rng(seed)
    crow, ccol = cell_index(s.cx, s.cy, s.sensor_hw, (R, C))
    cid = crow * C + ccol
    pick = []
    for i in range(R * C):
        idx = np.flatnonzero(cid == i)
        if idx.size > SAMPLES_PER_CELL:
            idx = np.sort(rng.choice(idx, SAMPLES_PER_CELL, replace=False))
        pick.append(idx)
    sel = np.concatenate(pick) if pick else np.zeros(0, np.int64)
    return {
        "format": FORMAT,
        "version": VERSION,
        "kind": "global" if global_fit else "per-position",
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "lens_units": s.lens_units,
        "sensor_hw": [int(H), int(W)],
        "grid": [R, C],
        "model": MODEL_TEXT,
        "estimator": {"method": method, "max_shift_px": float(max_shift), "refine": refine,
                      "min_confidence": float(min_confidence)},
        "slice_spacing": float(f"{s.slice_spacing:.6g}"),
        "disparity_limit_px": float(limit),
        "flatfield": flatfield,
        "stacks": {"dir": stacks_dir, "count": len(s.files), "files": [Path(f).name for f in s.files],
                   "measurements": int(s.disparity.size), "used": int(use.sum())},
        "global_fit": _decorate(dict(gfit), s.slice_spacing),
        "cells": cells,
        "controller": controller,
        "samples": {"cell": cid[sel].tolist(), "defocus": np.round(s.defocus[sel], 3).tolist(),
                    "disparity_px": np.round(s.disparity[sel], 4).tolist(),
                    "confidence": np.round(s.confidence[sel], 3).tolist()},
    }




def _controller_block(s: Samples, rows: np.ndarray, cells: list[dict[str, Any]], grid: tuple[int, int],
                      limit: float) -> dict[str, Any]:
    """Confidence threshold and stopping rule from the sweeps (hil_af.calibration.thresholds)."""
    from .thresholds import controller_thresholds

    R, C = grid
    row, col = cell_index(s.cx, s.cy, s.sensor_hw, grid)
    g = np.array([c["gain_px_per_unit"] for c in cells], np.float64).reshape(R, C)[row, col]
    o = np.array([c["offset_px"] for c in cells], np.float64).reshape(R, C)[row, col]
    pred = (s.disparity - o) / g
    near = rows & np.isfinite(s.defocus) & (np.abs(g * s.defocus) <= limit)
    return controller_thresholds(s.defocus, pred, s.confidence, near, s.slice_spacing)
