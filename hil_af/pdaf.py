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
  of the left patch (under an optional Tukey window, ``_TUKEY``) are
  correlated along x with the right patch by zero-padded FFT, the per-row
  correlations summed (the dy = 0 line of the 2-D correlation), and each
  shift normalised by the energy of the right window it meets (a windowed
  NCC: no overlap bias towards 0).  The integer peak is refined to subpixel
  by evaluating the correlation on a fine grid around it straight from the
  cross-spectrum (band-limited upsampling with a Gaussian spectral taper
  against noise), then a parabola on that grid.
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

METHODS = ("xcorr", "zncc", "ssd")
DEFAULT_MAX_SHIFT = 8.0
_EPS = 1e-12
_TAPER = 0.2  # Gaussian spectral taper of the fine correlation, in cycles/px (measured on noisy textures)


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


def _parabola(cm: np.ndarray, c0: np.ndarray, cp: np.ndarray) -> np.ndarray:
    """Vertex offset in (-0.5, 0.5) of the parabola through (-1, cm), (0, c0), (1, cp)."""
    den = cm - 2.0 * c0 + cp
    off = np.where(den < -_EPS, 0.5 * (cm - cp) / np.where(den < -_EPS, den, -1.0), 0.0)
    return np.clip(off, -0.5, 0.5)


def _prepare(left: np.ndarray, right: np.ndarray, white_level: float | None,
             gains: tuple[np.ndarray, np.ndarray] | None):
    """Normalise each view per patch to zero mean, unit std; texture and saturation terms."""
    L = np.asarray(left, dtype=np.float64)
    R = np.asarray(right, dtype=np.float64)
    bad = ~(np.all(np.isfinite(L), axis=(1, 2)) & np.all(np.isfinite(R), axis=(1, 2)))
    if bad.any():
        L = np.nan_to_num(L, nan=0.0, posinf=0.0, neginf=0.0)
        R = np.nan_to_num(R, nan=0.0, posinf=0.0, neginf=0.0)
    if white_level is not None and white_level > 0:
        thr = 0.98 * float(white_level)
        sat = np.maximum((L >= thr).mean(axis=(1, 2)), (R >= thr).mean(axis=(1, 2)))
    else:
        sat = np.zeros(L.shape[0])
    if gains is not None:
        gl, gr = (np.asarray(g, dtype=np.float64) for g in gains)
        L = L * gl
        R = R * gr
    mL = L.mean(axis=(1, 2), keepdims=True)
    mR = R.mean(axis=(1, 2), keepdims=True)
    sL = np.sqrt(((L - mL) ** 2).mean(axis=(1, 2), keepdims=True))
    sR = np.sqrt(((R - mR) ** 2).mean(axis=(1, 2), keepdims=True))
    # texture: coefficient of variation of the weaker view; 0 for flat patches
    cv = np.minimum(sL / np.maximum(np.abs(mL), _EPS), sR / np.maximum(np.abs(mR), _EPS))[:, 0, 0]
    flat = (sL[:, 0, 0] <= 1e-9 * np.maximum(1.0, np.abs(mL[:, 0, 0]))) | (
        sR[:, 0, 0] <= 1e-9 * np.maximum(1.0, np.abs(mR[:, 0, 0])))
    texture = cv * cv / (cv * cv + 0.004**2)
    # no pre-filter: x-gradient and band-pass versions ranked the real Pixel 4 cells much worse
    L = (L - mL) / np.maximum(sL, _EPS)
    R = (R - mR) / np.maximum(sR, _EPS)
    valid = ~(bad | flat)
    return L, R, texture, sat, valid


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


# Fraction of the template under cosine tapers (0: box, 1: Hann).  Measured
# (docs/pdaf-calibration.md): 0 gives the lowest subpixel error on noisy
# synthetic shifts and the best rank correlation on the real Pixel 4 scenes;
# the correlation is linear (zero-padded FFT), so no taper is needed against
# wrap-around.
_TUKEY = 0.0


def _taper_window(m: int) -> np.ndarray:
    """Tukey window of length m (cosine tapers over a fraction _TUKEY of it)."""
    a = _TUKEY
    if a <= 0:
        return np.ones(m)
    x = (np.arange(m) + 0.5) / m
    w = np.ones(m)
    lo = x < a / 2
    hi = x > 1 - a / 2
    w[lo] = 0.5 * (1 - np.cos(2 * np.pi * x[lo] / a))
    w[hi] = 0.5 * (1 - np.cos(2 * np.pi * (1 - x[hi]) / a))
    return w


def _window_sums(a: np.ndarray, taper: np.ndarray) -> np.ndarray:
    """sum_x taper(x) a(x + j) along the last axis for j = 0 .. w - m (the shifted windows of
    length m = len(taper) inside a): [..., w - m + 1].  A box taper (_TUKEY 0) by running sums."""
    m = taper.size
    if np.all(taper == 1.0):
        c = np.cumsum(a, axis=-1)
        out = c[..., m - 1:].copy()
        out[..., 1:] -= c[..., :-m]
        return out
    return np.einsum("...jx,x->...j", np.lib.stride_tricks.sliding_window_view(a, m, axis=-1), taper)


def _xcorr(L: np.ndarray, R: np.ndarray, S: int, refine: str):
    """Windowed normalised cross-correlation along x, by FFT, rows summed.

    The left template is the central ``w - 2S`` columns under the _TUKEY window;
    the right view is searched at shifts -S..S, each shifted window
    normalised by its own weighted mean and energy (no overlap bias).
    """
    P, h, w = L.shape
    m = w - 2 * S
    taper = _taper_window(m)
    win = np.zeros(w)
    win[S:S + m] = taper
    sw = win.sum()
    Lm = L - ((L * win).sum(axis=2, keepdims=True) / sw)
    Lc = Lm * win  # weighted, zero weighted mean per row
    eL = (Lc * Lm).sum(axis=2).sum(axis=1)  # [P]
    n = 1 << int(np.ceil(np.log2(w + S + 1)))
    FR = np.fft.rfft(R, n=n, axis=2)
    R2 = (R * R).sum(axis=1)  # [P, w]: the second moments are summed over rows
    FW = np.conj(np.fft.rfft(win, n=n))
    X = (np.conj(np.fft.rfft(Lc, n=n, axis=2)) * FR).sum(axis=1)  # [P, K]: sum_rows sum_x Lc(x) R(x+s)
    shifts = np.arange(-S, S + 1)
    num = np.fft.irfft(X, n=n, axis=1)[:, shifts % n]
    # the shifted windows' weighted first moments per row and second moments: R(x + s) for x in the
    # template's columns S .. S+m-1 stays inside 0 .. w-1, so shift s is window j = s + S of R
    m1 = _window_sums(R, taper)  # [P, h, 2S+1]
    m2 = _window_sums(R2, taper)  # [P, 2S+1]
    eR = m2 - (m1 * m1).sum(axis=1) / sw
    score = num / np.sqrt(np.maximum(eL[:, None] * eR, _EPS))
    i0 = np.argmax(score, axis=1)
    i = np.clip(i0, 1, 2 * S - 1)
    rows = np.arange(P)
    off = _parabola(score[rows, i - 1], score[rows, i], score[rows, i + 1])
    d = shifts[i] + off
    if refine == "upsample":
        # evaluate the band-limited correlation on a fine grid around the integer peak
        t = np.linspace(-1.0, 1.0, 21)
        K = X.shape[1]
        k = np.arange(K)
        wk = np.full(K, 2.0)
        wk[0] = 1.0
        if n % 2 == 0:
            wk[-1] = 1.0
        # e^(2 pi i (shift + t) k / n) (wk / n) [P, T, K], as the product of its shift and t factors
        ph = np.exp(2j * np.pi * shifts[i][:, None, None] * k / n) * (np.exp(2j * np.pi * t[:, None] * k / n) * (wk / n))
        taper_f = np.exp(-0.5 * (k / (n * _TAPER)) ** 2)  # low-pass: noise robustness
        numf = np.real(np.einsum("pk,ptk->pt", X * taper_f, ph))
        m1f = np.real(np.einsum("phk,ptk->pht", FW[None, None, :] * FR, ph))
        m2f = np.real(np.einsum("pk,ptk->pt", FW[None, :] * np.fft.rfft(R2, n=n, axis=1), ph))
        fine = numf / np.sqrt(np.maximum(eL[:, None] * (m2f - (m1f * m1f).sum(axis=1) / sw), _EPS))
        j = np.clip(np.argmax(fine, axis=1), 1, len(t) - 2)
        offf = _parabola(fine[rows, j - 1], fine[rows, j], fine[rows, j + 1])
        d = shifts[i] + t[j] + offf * (t[1] - t[0])
    peak = score[rows, i0]
    return d, peak, score, i0


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
        z = np.zeros(0)
        return DisparityResult(z, z.copy(), z.copy())
    if w < 8 or h < 1:
        raise BadInput(f"patches must be at least 8 px wide, got {w}x{h}")
    S = min(S, (w - 4) // 2)
    Ln, Rn, texture, sat, valid = _prepare(L, R, white_level, gains)
    if method == "xcorr":
        d, peak, score, i0 = _xcorr(Ln, Rn, S, refine)
    else:
        d, peak, score, i0 = _block(Ln, Rn, S, ssd=(method == "ssd"))
    uniq = _uniqueness(score, i0)
    edge = np.where((i0 == 0) | (i0 == 2 * S), 0.5, 1.0)
    conf = np.clip(peak, 0.0, 1.0) * (0.25 + 0.75 * uniq) * texture * np.clip(1.0 - 2.0 * sat, 0.0, 1.0) * edge
    conf = np.where(valid & np.isfinite(conf), conf, 0.0)
    d = np.where(valid & np.isfinite(d), d, 0.0)
    peak = np.where(valid & np.isfinite(peak), peak, 0.0)
    return DisparityResult(d.astype(np.float64), np.clip(conf, 0.0, 1.0).astype(np.float64), peak.astype(np.float64))


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
    groups: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(rois):
        groups.setdefault((int(r[2]), int(r[3])), []).append(i)
    for idx in groups.values():
        sub = rois[idx]
        L, R = patches(sub)
        g = None
        if gains is not None:
            g = crop_patches(gains[0], gains[1], sub)
        res = estimate(L, R, gains=g, **kw)
        d[idx], c[idx], pk[idx] = res.disparity_px, res.confidence, res.peak
    return DisparityResult(d, c, pk)
