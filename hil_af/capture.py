"""Lens sweeps into focal stacks, and the contrast-peak ground truth.

``sweep(rig)`` moves the lens through ``rig.slice_positions(n)`` in
increasing order, waits ``lens.settle_time_s`` seconds on ``rig.clock`` after
each move (3x after the first, possibly long, jump to the first slice),
captures one frame per slice and returns a ``FocalStack``.

Stored views: the frames a source gives are black-subtracted float32.  When
every value is an integer (raw sensor data), the sweep stores uint16 views
``frame + B`` with ``meta["black_level"] = B`` (lossless, half the size): B
is the source's black level (``frame.metadata["black_level"]``) when the
values fit, else the smallest B >= 0 that makes every value >= 0.  Otherwise
it stores the float32 frames as they are with ``meta["black_level"] = 0``.
``white_level`` is the frames' ``white_level`` + B; when no frame knows it,
the largest value + B (``meta["white_level_estimated"] = true``).
Lens positions are the frames' read-back ``lens_position`` where finite,
else the commanded ones (``meta["lens_positions_from"]`` says which).

Ground truth per RoI (``gt_index``): when the rig knows the truth
(``rig.truth``, e.g. the simulator or a replayed stack), the slice nearest
the true in-focus position (native lens units), -1 when that position lies
outside the swept range by more than half a slice step; for RoIs whose truth
the rig does not know (NaN, e.g. a replayed stack without that RoI), and on
rigs without truth, the contrast peak over the sweep (``contrast_curve`` +
``contrast_peak``), -1 when the curve has no clear peak (no texture).
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any, Callable, Sequence

import numpy as np

from .drivers.base import Rig
from .errors import BadInput, DeviceError
from .frames import DualPixelFrame, grid_rois, validate_rois
from .progress import bar as progress_bar
from .stacks import FocalStack

DEFAULT_GRID = (3, 4)
FIRST_MOVE_SETTLE_FACTOR = 3.0  # the first (long) move waits this many settle times
MIN_PEAK_CONFIDENCE = 0.25  # contrast_peak confidence below this -> gt -1 (flat curve)

RoiSpec = np.ndarray | Sequence[Sequence[int]] | Callable[[tuple[int, int]], np.ndarray] | None


# --------------------------------------------------------------------------- focus measure


def _views_of(stack_or_views: Any) -> tuple[np.ndarray, np.ndarray, float]:
    """(left, right, black_level) from a FocalStack, a (left, right) pair [n, H, W] or DualPixelFrames."""
    if isinstance(stack_or_views, FocalStack):
        return stack_or_views.left, stack_or_views.right, stack_or_views.black_level
    if isinstance(stack_or_views, (list, tuple)) and stack_or_views and isinstance(stack_or_views[0], DualPixelFrame):
        return (np.stack([f.left for f in stack_or_views]), np.stack([f.right for f in stack_or_views]), 0.0)
    if isinstance(stack_or_views, (list, tuple)) and len(stack_or_views) == 2:
        left, right = np.asarray(stack_or_views[0]), np.asarray(stack_or_views[1])
        if left.ndim == 2:
            left, right = left[None], right[None]
        if left.ndim != 3 or left.shape != right.shape:
            raise BadInput(f"contrast_curve: views must be two [n, H, W] arrays of equal shape, got {left.shape} and {right.shape}")
        return left, right, 0.0
    raise BadInput("contrast_curve: expected a FocalStack, a (left, right) pair of [n, H, W] arrays, or a list of DualPixelFrames")


def contrast_curve(stack_or_views: Any, rois: Any) -> np.ndarray:
    """Focus measure of each RoI on each slice: float64 [P, n] (dimensionless).

    The measure is the normalised Tenengrad of the full-aperture image L+R:
    mean of the squared Sobel gradient magnitude over the RoI (its 1-px border
    excluded) divided by the squared mean intensity, so it does not depend on
    exposure.  ``rois`` are (x, y, w, h) view pixels, each at least 3 x 3.
    Views are black-subtracted first when a FocalStack is given.
    """
    left, right, black = _views_of(stack_or_views)
    n, H, W = left.shape
    r = validate_rois(rois, (H, W))
    if np.any(r[:, 2] < 3) or np.any(r[:, 3] < 3):
        raise BadInput("contrast_curve: every RoI must be at least 3 x 3 pixels")
    out = np.empty((r.shape[0], n), dtype=np.float64)
    for i, (x, y, w, h) in enumerate(r.tolist()):
        p = left[:, y : y + h, x : x + w].astype(np.float32) + right[:, y : y + h, x : x + w].astype(np.float32)
        if black:
            p -= np.float32(2 * black)
        if not np.isfinite(p).all():
            raise BadInput(f"contrast_curve: RoI {i} holds non-finite pixel values")
        gx = (p[:, :-2, 2:] + 2 * p[:, 1:-1, 2:] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, 1:-1, :-2] + p[:, 2:, :-2])
        gy = (p[:, 2:, :-2] + 2 * p[:, 2:, 1:-1] + p[:, 2:, 2:]) - (p[:, :-2, :-2] + 2 * p[:, :-2, 1:-1] + p[:, :-2, 2:])
        energy = (gx.astype(np.float64) ** 2 + gy.astype(np.float64) ** 2).mean(axis=(1, 2))
        mean = np.abs(p.astype(np.float64).mean(axis=(1, 2)))
        out[i] = energy / np.maximum(mean, 1e-6) ** 2
    return out


def contrast_peak(curve: Any) -> tuple[float, float]:
    """(subpixel slice index of the peak, confidence in [0, 1]) of one focus curve [n].

    The index is the argmax refined by a parabola through it and its two
    neighbours (shift clipped to +-0.5; no refinement at either end).
    Confidence = (peak - median) / peak: ~0 for a flat curve (no texture, only
    noise), near 1 for a sharp single peak.  NaN index for an all-zero curve.
    """
    c = np.asarray(curve, dtype=np.float64)
    if c.ndim != 1 or c.size < 1:
        raise BadInput(f"contrast_peak: expected a 1-D curve, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise BadInput("contrast_peak: the curve holds non-finite values")
    k = int(np.argmax(c))
    peak = float(c[k])
    if peak <= 0:
        return float("nan"), 0.0
    shift = 0.0
    if 0 < k < c.size - 1:
        denom = c[k - 1] - 2 * c[k] + c[k + 1]
        if denom < 0:
            shift = float(np.clip(0.5 * (c[k - 1] - c[k + 1]) / denom, -0.5, 0.5))
    confidence = float(np.clip((peak - float(np.median(c))) / peak, 0.0, 1.0))
    return k + shift, confidence


def gt_from_truth(true_positions: Any, lens_positions: Any) -> np.ndarray:
    """Nearest slice (int16 [P]) to each true in-focus position (native units); -1 if NaN or
    outside the swept range by more than half the end slice step."""
    t = np.asarray(true_positions, dtype=np.float64).reshape(-1)
    lp = np.asarray(lens_positions, dtype=np.float64)
    lo = lp[0] - 0.5 * (lp[1] - lp[0])
    hi = lp[-1] + 0.5 * (lp[-1] - lp[-2])
    gt = np.full(t.shape, -1, dtype=np.int16)
    ok = np.isfinite(t) & (t >= lo) & (t <= hi)
    if ok.any():
        gt[ok] = np.argmin(np.abs(t[ok, None] - lp[None, :]), axis=1)
    return gt


def gt_from_contrast(stack_or_views: Any, rois: Any, min_confidence: float = MIN_PEAK_CONFIDENCE) -> tuple[np.ndarray, np.ndarray]:
    """(gt_index int16 [P], confidence float64 [P]) from the contrast peak of each RoI."""
    curves = contrast_curve(stack_or_views, rois)
    n = curves.shape[1]
    gt = np.full(curves.shape[0], -1, dtype=np.int16)
    conf = np.zeros(curves.shape[0], dtype=np.float64)
    for i, c in enumerate(curves):
        idx, conf[i] = contrast_peak(c)
        if math.isfinite(idx) and conf[i] >= min_confidence:
            gt[i] = int(np.clip(np.round(idx), 0, n - 1))
    return gt, conf


# --------------------------------------------------------------------------- sweep


def _slice_positions(rig: Rig, n_slices: int | None) -> np.ndarray:
    if n_slices is not None and (not isinstance(n_slices, (int, np.integer)) or n_slices < 2):
        raise BadInput(f"a sweep needs an integer number of slices >= 2, got {n_slices!r}")
    pos = np.asarray(rig.slice_positions(n_slices), dtype=np.float64).reshape(-1)
    if pos.size < 2 or not np.isfinite(pos).all():
        raise BadInput(f"rig {rig.name}: slice positions must be >= 2 finite numbers, got {pos.tolist()[:8]}")
    pos = np.sort(pos)
    if not (np.diff(pos) > 0).all():
        raise BadInput(f"rig {rig.name}: slice positions repeat: {pos.tolist()[:8]}...")
    lo, hi = rig.lens.range
    if pos[0] < lo or pos[-1] > hi:
        raise BadInput(f"rig {rig.name}: slice positions {pos[0]}..{pos[-1]} leave the lens range [{lo}, {hi}]")
    return pos


def _uint16_offset(left: np.ndarray, right: np.ndarray, hint: Any) -> int | None:
    """Black level B that stores black-subtracted views losslessly as uint16 (views + B in
    0..65535, all integer-valued): the source's own black level ``hint`` when it fits, else the
    smallest B >= 0 that lifts the minimum to 0; None when the data are not integers."""
    if not all((a == np.round(a)).all() for a in (left, right)):
        return None
    lo = float(min(left.min(), right.min()))
    hi = float(max(left.max(), right.max()))
    cands = []
    if isinstance(hint, (int, float)) and not isinstance(hint, bool) and math.isfinite(hint) and hint == int(hint):
        cands.append(int(hint))
    cands.append(max(0, int(-lo)))
    for b in cands:
        if b >= 0 and lo + b >= 0 and hi + b <= 65535:
            return b
    return None


def _lens_units(rig: Rig) -> str:
    """``meta["lens_units"]``: the lens's ``units`` attribute, the profile's ``[af] units``, else
    "dioptres" for libcamera lenses and "vcm_code" for every other driver (all DAC codes)."""
    for obj in (rig.lens, getattr(rig.lens, "inner", None), rig):
        u = getattr(obj, "units", None) or getattr(obj, "lens_units", None)
        if isinstance(u, str) and u:
            return u
    af = rig.profile.get("af")
    u = af.get("units") if isinstance(af, dict) else None
    if isinstance(u, str) and u:
        return u
    lens = getattr(rig.lens, "inner", rig.lens)  # see through spy+ wrappers
    return "dioptres" if "libcamera" in type(lens).__module__ else "vcm_code"


def sweep(
    rig: Rig,
    n_slices: int | None = None,
    rois: RoiSpec = None,
    progress: bool | None = None,
    *,
    scene: str | None = None,
    source: str = "hil-af sweep",
    min_confidence: float = MIN_PEAK_CONFIDENCE,
) -> FocalStack:
    """One lens sweep of ``rig`` as a FocalStack (see the module docstring).

    rois: int [P, 4] (x, y, w, h view pixels), a callable ``view_hw -> rois``,
    or None for ``grid_rois(view_hw, 3, 4)``.  The lens ends at the last slice.
    """
    positions = _slice_positions(rig, n_slices)
    n = positions.size
    left: np.ndarray | None = None
    right: np.ndarray | None = None
    actual = np.full(n, np.nan)
    first: DualPixelFrame | None = None
    white = []
    bar = progress_bar(positions, progress, desc=f"sweep {rig.name}", unit="slice", leave=False)
    try:
        for k, p in enumerate(bar):
            rig.lens.move_to(float(p))
            # the jump to the first slice can be long (from anywhere in the range): settle longer there
            rig.clock.sleep(float(rig.lens.settle_time_s) * (FIRST_MOVE_SETTLE_FACTOR if k == 0 else 1.0))
            f = rig.source.capture()
            if first is None:
                first = f
                left = np.empty((n, *f.shape), dtype=np.float32)
                right = np.empty((n, *f.shape), dtype=np.float32)
            elif f.shape != first.shape or f.sensor_hw != first.sensor_hw or f.origin != first.origin:
                raise DeviceError(f"rig {rig.name}: frame {k} is {f.shape} at {f.origin} on {f.sensor_hw}, "
                                  f"frame 0 was {first.shape} at {first.origin} on {first.sensor_hw}")
            left[k] = f.left  # type: ignore[index]
            right[k] = f.right  # type: ignore[index]
            actual[k] = f.lens_position
            if f.white_level is not None and math.isfinite(f.white_level):
                white.append(float(f.white_level))
    finally:
        bar.close()
    assert first is not None and left is not None and right is not None
    if not (np.isfinite(left).all() and np.isfinite(right).all()):
        raise DeviceError(f"rig {rig.name}: the source gave non-finite pixel values")

    lp = np.where(np.isfinite(actual), actual, positions)
    lp_from = "read-back" if np.isfinite(actual).all() else ("commanded" if not np.isfinite(actual).any() else "mixed")
    if not (np.diff(lp) > 0).all():
        lp, lp_from = positions, "commanded"

    black = _uint16_offset(left, right, first.metadata.get("black_level"))
    if black is None:
        store_l, store_r, black = left, right, 0
    else:
        store_l = (left + np.float32(black)).astype(np.uint16)
        store_r = (right + np.float32(black)).astype(np.uint16)

    meta: dict[str, Any] = {"format": "focal-stack", "version": 1, "black_level": black}
    if white:
        meta["white_level"] = max(white) + black
    else:
        meta["white_level"] = max(float(max(left.max(), right.max())), 1.0) + black
        meta["white_level_estimated"] = True
    meta["lens_units"] = _lens_units(rig)
    meta["lens_positions_from"] = lp_from
    if rig.lens_map is not None:
        meta["lens_dioptres"] = [float(v) for v in np.atleast_1d(rig.lens_map.to_dioptres(lp))]
    meta["source"] = source
    meta["rig"] = str(rig.name)
    if scene is not None:
        meta["scene"] = str(scene)
    meta["captured_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    view_hw = first.shape
    if rois is None:
        r = grid_rois(view_hw, *DEFAULT_GRID)
    elif callable(rois):
        r = validate_rois(rois(view_hw), view_hw)
    else:
        r = validate_rois(rois, view_hw)

    if rig.truth is not None:
        true_pos = np.asarray(rig.truth(r), dtype=np.float64).reshape(-1)
        if true_pos.shape != (r.shape[0],):
            raise DeviceError(f"rig {rig.name}: truth() gave {true_pos.shape} positions for {r.shape[0]} RoIs")
        gt = gt_from_truth(true_pos, lp)
        meta["gt_lens_positions"] = [float(v) if math.isfinite(v) else None for v in true_pos]
        unknown = ~np.isfinite(true_pos)
        if unknown.any():  # the rig does not know these RoIs: label them by their contrast peak
            cgt, _ = gt_from_contrast((left, right), r[unknown], min_confidence)
            gt[unknown] = cgt
        sources = np.where(unknown, "contrast peak", "rig truth")
    else:
        gt, conf = gt_from_contrast((left, right), r, min_confidence)
        meta["gt_confidence"] = [round(float(v), 4) for v in conf]
        sources = np.full(r.shape[0], "contrast peak")
    kinds = sorted(set(sources.tolist()), reverse=True)
    meta["gt_source"] = " + ".join(kinds) if kinds else "none"
    if len(kinds) > 1:
        meta["gt_sources"] = sources.tolist()

    stack = FocalStack(left=store_l, right=store_r, lens_positions=lp.astype(np.float64), rois=r, gt_index=gt,
                       sensor_hw=first.sensor_hw or first.shape, origin=first.origin, meta=meta)
    stack.validate(f"sweep of {rig.name}")
    return stack
