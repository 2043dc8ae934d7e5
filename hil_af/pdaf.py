"""Classical phase-detection AF estimators: disparity between the two views.

Pure functions on arrays, vectorised over RoIs: ``left`` and ``right`` are
float [P, h, w] patches (black level subtracted, DN) of the same RoIs.

Sign convention (docs/cli.md): the disparity is positive when the right
view is shifted to the right of the left view, i.e. ``right(x) ~ left(x - d)``.
Units: pixels of the views, along x (the dual-pixel split is horizontal).

Methods (``method=``):

- ``"xcorr"``: the cross-correlation focus function of Sliwinski & Wachel
  (2013), normalised: each view is normalised (zero mean, unit variance per
  patch, after an optional flat-field correction: per-view vignetting makes
  the raw L/R brightness differ); the central ``w - 2 * max_shift`` columns
  of the left patch (under an optional Tukey window, ``pdaf_xcorr._TUKEY``) are
  correlated along x with the right patch (linear correlation, as by a
  zero-padded FFT), the per-row correlations summed (the dy = 0 line of the
  2-D correlation), and each shift normalised by the energy of the right
  window it meets (a windowed NCC: no overlap bias towards 0).  The integer
  peak is refined to subpixel by evaluating the correlation on a fine grid
  around it as its zero-padded cross-spectrum interpolates it (band-limited
  upsampling with a Gaussian spectral taper against noise), then a parabola
  on that grid.  How it is computed per AF step: ``hil_af.pdaf_xcorr``.
- ``"zncc"``: block matching, zero-mean normalised cross-correlation of the
  central template of the left patch against shifted windows of the right.
- ``"ssd"``: block matching, sum of squared differences between the
  template and the shifted windows of the patch-normalised views (no
  per-window renormalisation, unlike ZNCC), scored as
  ``1 - ssd / (var_T + var_W)`` so that larger is better and 1 is a match.

Confidence in [0, 1]: the normalised correlation at the peak (noise and
missing texture lower it), times a uniqueness term (how far the peak stands
above the best other local maximum: repetitive texture lowers it), times a
texture term (patch contrast relative to its mean, so a flat or
near-flat patch scores 0), times the unsaturated fraction; a peak on the
edge of the search range is down-weighted.  Flat, saturated or non-finite
patches give disparity 0 and confidence 0, never an exception or a NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import BadInput
from .pdaf_xcorr import _EPS, parabola as _parabola, score_at_zero as _score_at_zero, scores as _xcorr_scores, xcorr as _xcorr

METHODS = ("xcorr", "zncc", "ssd")
DEFAULT_MAX_SHIFT = 8.0


@dataclass
class DisparityResult:
    """Per-RoI estimates (float64 [P] each).

    disparity_px: horizontal shift of the right view relative to the left, px.
    confidence: in [0, 1].
    peak: the matching score at the peak (normalised correlation, -1..1).
    """

    disparity_px: np.ndarray
    confidence: np.ndarray
    peak: np.ndarray


def _as_batch(a: np.ndarray, what: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise BadInput(f"{what}: expected patches [P, h, w] or one patch [h, w], got shape {a.shape}")
    return a


def _all_finite(a: np.ndarray, sums: np.ndarray) -> np.ndarray:
    """Per patch of a [P, h, w], whether every value is finite, given its sums [P, 1, 1]: a finite
    sum has only finite terms; a patch with a non-finite sum (NaN, inf or overflow) is checked value
    by value."""
    ok = np.isfinite(sums[:, 0, 0])
    if not ok.all():
        ok[~ok] = np.all(np.isfinite(a[~ok]), axis=(1, 2))
    return ok


def _fraction_at_least(a: np.ndarray, thr: float) -> np.ndarray:
    """Per patch of a [P, h, w] (finite), the fraction of its values >= thr (0 where its max is below)."""
    frac = np.zeros(a.shape[0])
    hot = a.max(axis=(1, 2)) >= thr
    if hot.any():
        frac[hot] = np.count_nonzero(a[hot] >= thr, axis=(1, 2)) / (a.shape[1] * a.shape[2])
    return frac


def _prepare(left: np.ndarray, right: np.ndarray, white_level: float | None,
             gains: tuple[np.ndarray, np.ndarray] | None):
    """Normalise each view per patch to zero mean, unit std; texture and saturation terms."""
    L = np.asarray(left, dtype=np.float64)
    R = np.asarray(right, dtype=np.float64)
    n = L.shape[1] * L.shape[2]
    sums = (L.sum(axis=(1, 2), keepdims=True), R.sum(axis=(1, 2), keepdims=True))
    bad = ~(_all_finite(L, sums[0]) & _all_finite(R, sums[1]))
    if bad.any():
        L = np.nan_to_num(L, nan=0.0, posinf=0.0, neginf=0.0)
        R = np.nan_to_num(R, nan=0.0, posinf=0.0, neginf=0.0)
        sums = (L.sum(axis=(1, 2), keepdims=True), R.sum(axis=(1, 2), keepdims=True))
    if white_level is not None and white_level > 0:
        thr = 0.98 * float(white_level)
        sat = np.maximum(_fraction_at_least(L, thr), _fraction_at_least(R, thr))
    else:
        sat = np.zeros(L.shape[0])
    if gains is not None:
        gl, gr = (np.asarray(g, dtype=np.float64) for g in gains)
        L = L * gl
        R = R * gr
        sums = (L.sum(axis=(1, 2), keepdims=True), R.sum(axis=(1, 2), keepdims=True))
    mL, mR = sums[0] / n, sums[1] / n  # the means (np.mean: the sum / the count)
    DL, DR = L - mL, R - mR  # new arrays: normalised in place below
    sL = np.sqrt((DL * DL).mean(axis=(1, 2), keepdims=True))
    sR = np.sqrt((DR * DR).mean(axis=(1, 2), keepdims=True))
    # texture: coefficient of variation of the weaker view; 0 for flat patches
    cv = np.minimum(sL / np.maximum(np.abs(mL), _EPS), sR / np.maximum(np.abs(mR), _EPS))[:, 0, 0]
    flat = (sL[:, 0, 0] <= 1e-9 * np.maximum(1.0, np.abs(mL[:, 0, 0]))) | (
        sR[:, 0, 0] <= 1e-9 * np.maximum(1.0, np.abs(mR[:, 0, 0])))
    texture = cv * cv / (cv * cv + 0.004**2)
    # no pre-filter: x-gradient and band-pass versions ranked the real Pixel 4 cells much worse
    np.divide(DL, np.maximum(sL, _EPS), out=DL)
    np.divide(DR, np.maximum(sR, _EPS), out=DR)
    valid = ~(bad | flat)
    return DL, DR, texture, sat, valid


def _uniqueness(score: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(peak - best other local max at >= 2 px from it) / peak, clipped to [0, 1]; score [P, n]."""
    P, n = score.shape
    peak = score[np.arange(P), idx]
    locmax = np.zeros_like(score, dtype=bool)
    if n >= 3:
        locmax[:, 1:-1] = (score[:, 1:-1] >= score[:, :-2]) & (score[:, 1:-1] >= score[:, 2:])
    locmax[:, 0] = score[:, 0] >= score[:, min(1, n - 1)]
    locmax[:, -1] = score[:, -1] >= score[:, max(n - 2, 0)]
    far = np.abs(np.arange(n)[None, :] - idx[:, None]) >= 2
    other = np.where(locmax & far, score, -np.inf).max(axis=1)
    other = np.where(np.isfinite(other), np.maximum(other, 0.0), 0.0)
    return np.clip((peak - other) / np.maximum(peak, _EPS), 0.0, 1.0)


def _block(L: np.ndarray, R: np.ndarray, S: int, ssd: bool):
    P, h, w = L.shape
    if w - 2 * S < 4:
        raise BadInput(f"patch width {w} too small for max_shift {S} (needs w >= 2*max_shift + 4)")
    shifts = np.arange(-S, S + 1)
    score = np.empty((P, shifts.size))
    T = L[:, :, S:w - S]
    vT = T.var(axis=(1, 2))
    if not ssd:
        T = (T - T.mean(axis=(1, 2), keepdims=True)) / np.maximum(np.sqrt(vT), _EPS)[:, None, None]
    for j, s in enumerate(shifts):
        Wd = R[:, :, S + s:w - S + s]
        vW = Wd.var(axis=(1, 2))
        if ssd:
            # plain SSD of the patch-normalised views (no per-window renormalisation),
            # scaled by the energies so that 1 is a perfect match and 0 no relation
            score[:, j] = 1.0 - ((T - Wd) ** 2).mean(axis=(1, 2)) / np.maximum(vT + vW, _EPS)
        else:
            Wd = (Wd - Wd.mean(axis=(1, 2), keepdims=True)) / np.maximum(np.sqrt(vW), _EPS)[:, None, None]
            score[:, j] = (T * Wd).mean(axis=(1, 2))
    i0 = np.argmax(score, axis=1)
    i = np.clip(i0, 1, 2 * S - 1)
    rows = np.arange(P)
    off = _parabola(score[rows, i - 1], score[rows, i], score[rows, i + 1])
    return shifts[i] + off, score[rows, i0], score, i0


def _batches(left: np.ndarray, right: np.ndarray, method: str, max_shift: float, refine: str = "upsample"):
    """``estimate``'s checks: (L, R [P, h, w], the shift searched S px), or None for no patches."""
    if method not in METHODS:
        raise BadInput(f"unknown PDAF method {method!r} (known: {', '.join(METHODS)})")
    if refine not in ("upsample", "parabola"):
        raise BadInput(f"unknown subpixel refinement {refine!r} (known: upsample, parabola)")
    L = _as_batch(left, "left")
    R = _as_batch(right, "right")
    if L.shape != R.shape:
        raise BadInput(f"left {L.shape} and right {R.shape} patches differ in shape")
    P, h, w = L.shape
    S = int(max_shift)
    if S < 1:
        raise BadInput(f"max_shift must be >= 1 px, got {max_shift}")
    if P == 0:
        return None
    if w < 8 or h < 1:
        raise BadInput(f"patches must be at least 8 px wide, got {w}x{h}")
    return L, R, min(S, (w - 4) // 2)


def _confidence(peak: np.ndarray, score: np.ndarray, i0: np.ndarray, S: int, texture: np.ndarray,
                sat: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """The confidence in [0, 1] (module doc) from the integer-shift scores [P, 2S+1], their peak
    index i0 [P] and value, and ``_prepare``'s terms; 0 where a patch is not valid."""
    uniq = _uniqueness(score, i0)
    edge = np.where((i0 == 0) | (i0 == 2 * S), 0.5, 1.0)
    conf = np.clip(peak, 0.0, 1.0) * (0.25 + 0.75 * uniq) * texture * np.clip(1.0 - 2.0 * sat, 0.0, 1.0) * edge
    return np.where(valid & np.isfinite(conf), conf, 0.0)


def estimate(left: np.ndarray, right: np.ndarray, *, method: str = "xcorr",
             max_shift: float = DEFAULT_MAX_SHIFT, white_level: float | None = None,
             gains: tuple[np.ndarray, np.ndarray] | None = None,
             refine: str = "upsample") -> DisparityResult:
    """Disparity (px) and confidence of each RoI from its left/right patches.

    left, right: [P, h, w] (or [h, w]) float patches, black level subtracted.
    max_shift: largest |disparity| searched, px (integer part used).
    white_level: saturation level after black subtraction (DN), for the
        saturation penalty; None disables it.
    gains: optional per-pixel flat-field gains (g_left, g_right), each
        broadcastable to [P, h, w], applied before normalising.
    refine: ``"upsample"`` (default) or ``"parabola"`` subpixel refinement
        (xcorr only; block matching uses a parabola).
    """
    checked = _batches(left, right, method, max_shift, refine)
    if checked is None:
        z = np.zeros(0)
        return DisparityResult(z, z.copy(), z.copy())
    L, R, S = checked
    Ln, Rn, texture, sat, valid = _prepare(L, R, white_level, gains)
    if method == "xcorr":
        d, peak, score, i0 = _xcorr(Ln, Rn, S, refine)
    else:
        d, peak, score, i0 = _block(Ln, Rn, S, ssd=(method == "ssd"))
    conf = _confidence(peak, score, i0, S, texture, sat, valid)
    d = np.where(valid & np.isfinite(d), d, 0.0)
    peak = np.where(valid & np.isfinite(peak), peak, 0.0)
    return DisparityResult(d.astype(np.float64), np.clip(conf, 0.0, 1.0).astype(np.float64), peak.astype(np.float64))


def structure(left: np.ndarray, right: np.ndarray, *, max_shift: float = DEFAULT_MAX_SHIFT,
              white_level: float | None = None) -> np.ndarray:
    """The xcorr confidence alone, float64 [P] in [0, 1]: ``estimate(left, right, method="xcorr",
    max_shift=.., white_level=..).confidence``, the same values (it comes from the integer-shift
    scores, whatever the refinement), without the disparity's sub-pixel refinement."""
    checked = _batches(left, right, "xcorr", max_shift)
    if checked is None:
        return np.zeros(0)
    L, R, S = checked
    Ln, Rn, texture, sat, valid = _prepare(L, R, white_level, None)
    return _searched_structure(Ln, Rn, texture, sat, valid, S)


def _searched_structure(Ln: np.ndarray, Rn: np.ndarray, texture: np.ndarray, sat: np.ndarray, valid: np.ndarray,
                        S: int) -> np.ndarray:
    """The xcorr confidence from ``_prepare``'s outputs by the full +-S search, float64 [P] in [0, 1]."""
    score = _xcorr_scores(Ln, Rn, S)[0]
    i0 = np.argmax(score, axis=1)
    conf = _confidence(score[np.arange(len(i0)), i0], score, i0, S, texture, sat, valid)
    return np.clip(conf, 0.0, 1.0).astype(np.float64)


def structure_at_least(left: np.ndarray, right: np.ndarray, threshold: float, *,
                       max_shift: float = DEFAULT_MAX_SHIFT, white_level: float | None = None) -> np.ndarray:
    """``structure(left, right, ...) >= threshold``, bool [P], the same decisions with less work: the
    confidence is the peak score x (0.25 + 0.75 x uniqueness) x texture x saturation term x edge term
    (``_confidence``), the peak is at least the score at shift 0, uniqueness >= 0 and the edge term
    >= 0.5, so ``clip(score at 0) x 0.125 x texture x saturation term`` is a lower bound that one
    product per RoI gives (``pdaf_xcorr.score_at_zero``), and ``texture x saturation term`` an upper
    bound.  The full +-``max_shift`` search runs only for the RoIs neither bound settles (a margin of
    1e-9 relative keeps float rounding from deciding)."""
    checked = _batches(left, right, "xcorr", max_shift)
    if checked is None:
        return np.zeros(0, dtype=bool)
    L, R, S = checked
    Ln, Rn, texture, sat, valid = _prepare(L, R, white_level, None)
    t = float(threshold)
    upper = np.where(valid, texture * np.clip(1.0 - 2.0 * sat, 0.0, 1.0), 0.0)
    lower = 0.125 * np.clip(_score_at_zero(Ln, Rn, S), 0.0, 1.0) * upper  # finite: _prepare zeroed non-finite views
    margin = 1e-9 * max(abs(t), 1e-12)
    out = lower >= t + margin
    todo = ~out & (upper >= t - margin)  # neither bound settles these: the full search
    if todo.any():
        i = np.flatnonzero(todo)
        out[i] = _searched_structure(Ln[i], Rn[i], texture[i], sat[i], valid[i], S) >= t
    return out


def crop_patches(left: np.ndarray, right: np.ndarray, rois: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Stack the RoIs (x, y, w, h) of two views into [P, h, w] arrays (all RoIs the same size)."""
    rois = np.asarray(rois, dtype=np.int64).reshape(-1, 4)
    if rois.shape[0] == 0:
        z = np.zeros((0, 1, 8), dtype=np.float32)
        return z, z.copy()
    sizes = {(int(r[2]), int(r[3])) for r in rois}
    if len(sizes) != 1:
        raise BadInput(f"crop_patches needs RoIs of one size, got {sorted(sizes)}")
    Ls = [left[y:y + h, x:x + w] for x, y, w, h in rois]
    Rs = [right[y:y + h, x:x + w] for x, y, w, h in rois]
    return np.stack(Ls), np.stack(Rs)


def estimate_rois(left: np.ndarray, right: np.ndarray, rois: np.ndarray, **kw) -> DisparityResult:
    """``estimate`` on the RoIs (x, y, w, h) of two full views; RoIs of different sizes are grouped.

    ``gains``, if given, are full-view gain maps (g_left, g_right) [H, W] and are cropped per RoI.
    """
    return estimate_windows(lambda sub: crop_patches(left, right, sub), rois, **kw)


def _size_groups(rois: np.ndarray) -> list[list[int]]:
    """Indices of the RoIs int [P, 4] grouped by size (w, h), in order of first appearance."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, (w, h) in enumerate(rois[:, 2:].tolist()):
        groups.setdefault((w, h), []).append(i)
    return list(groups.values())


def estimate_windows(patches: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], rois: np.ndarray,
                     **kw) -> DisparityResult:
    """``estimate_rois`` with the patches from ``patches(rois of one size) -> (L, R) [P, h, w]``: a
    frame's ``patches`` method (``DualPixelFrame``, or ``hil_af.roiframe.RoiFrame``, which decodes
    only those windows of the raw frame).  RoIs of different sizes are grouped; ``gains`` as there."""
    rois = np.asarray(rois, dtype=np.int64).reshape(-1, 4)
    gains = kw.pop("gains", None)
    P = rois.shape[0]
    d = np.zeros(P)
    c = np.zeros(P)
    pk = np.zeros(P)
    for idx in _size_groups(rois):
        sub = rois[idx]
        L, R = patches(sub)
        g = None
        if gains is not None:
            g = crop_patches(gains[0], gains[1], sub)
        res = estimate(L, R, gains=g, **kw)
        d[idx], c[idx], pk[idx] = res.disparity_px, res.confidence, res.peak
    return DisparityResult(d, c, pk)


def _per_size_group(patches: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], rois: np.ndarray,
                    fn: Callable[[np.ndarray, np.ndarray], np.ndarray], dtype: type) -> np.ndarray:
    """``fn(L, R)`` [p] of the patches of each group of equal-size RoIs, gathered into [P] of ``dtype``."""
    rois = np.asarray(rois, dtype=np.int64).reshape(-1, 4)
    out: np.ndarray = np.zeros(rois.shape[0], dtype=dtype)
    for idx in _size_groups(rois):
        out[idx] = fn(*patches(rois[idx]))
    return out


def windows_structure_at_least(patches: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], rois: np.ndarray,
                               threshold: float, **kw) -> np.ndarray:
    """``windows_structure(patches, rois, **kw) >= threshold``, bool [P], by ``structure_at_least``."""
    return _per_size_group(patches, rois, lambda L, R: structure_at_least(L, R, threshold, **kw), bool)


def windows_structure(patches: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]], rois: np.ndarray,
                      **kw) -> np.ndarray:
    """``structure`` of each RoI, float64 [P], the patches from ``patches`` as in ``estimate_windows``
    (RoIs of different sizes grouped); ``kw``: ``max_shift``, ``white_level``."""
    return _per_size_group(patches, rois, lambda L, R: structure(L, R, **kw), np.float64)
