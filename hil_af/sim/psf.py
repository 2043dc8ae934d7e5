"""Half-aperture point-spread functions and the field-dependent optics.

A dual-pixel sensor sees the lens pupil through two halves: the left view
integrates one half of the aperture, the right view the other.  A point out
of focus images to a disc of diameter ``blur_px_per_dioptre * |defocus|``
(pixels; defocus in dioptres = scene dioptres - lens focus dioptres); each
view gets a (smoothly cut) half of that disc.  The halves swap across the
focal plane, so the right-minus-left shift (disparity) changes sign with the
defocus and grows with it.  Here the half-disc shapes the blur, and the
centroids are then placed exactly at -/+ disparity/2 with

    disparity_px = g(x, y) * disparity_px_per_dioptre * defocus + o(x, y)

(see ``hil_af.sim.params`` for g, o, field curvature and vignetting).
OTFs are built directly at an FFT size for fast convolution: a sub-pixel
shift is a phase ramp, the base optical blur a Gaussian transfer function.

Real dual-pixel optics (Punnappurath et al., ICCP 2020; Abuolaim et al.,
ICCV 2021; the measured Pixel 4 data in docs/sim.md) depart from mirrored
half-discs; the optional terms below (all 0 by default, where the two
kernels are exact mirror images as above) model that:

- ``split_offset (+ split_offset_x * x)``: the line that divides the pupil
  between the two photodiodes sits off the pupil centre (a fraction of the
  blur radius R; microlens / chief-ray mismatch grows with the field), so
  the two halves differ in size and shape;
- ``psf_asymmetry``: the left and right halves have different edge softness
  (photodiode crosstalk differs), softness * (1 -/+ a);
- ``cats_eye``: mechanical vignetting off-axis clips the pupil disc with a
  second disc of the same radius displaced by ``cats_eye * R * (x, y)``
  (a cat's-eye pupil in the corners);
- ``focus_asymmetry``: the blur disc is ``(1 + a * sign(defocus))`` times
  larger behind focus than in front (spherical aberration), so the two
  sides of focus are not mirror images;
- ``coma_px_per_dioptre``: both views' centroids drift together by
  ``coma * defocus * (x, y)`` px (the image point moves with defocus);
- ``disparity_nonlinearity_per_dioptre`` q: disparity is
  ``g * k * (d + q * d * |d|) + o`` instead of linear in d.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .params import SimParams


def field_xy(cx: float, cy: float, hw: tuple[int, int]) -> tuple[float, float]:
    """Normalised field position in [-1, 1] of view pixel (cx, cy) (x right, y down)."""
    H, W = hw
    return (cx - W / 2.0) / (W / 2.0), (cy - H / 2.0) / (H / 2.0)


def r2(x, y):
    """Squared radius normalised to 1 in the corners."""
    return (np.asarray(x) ** 2 + np.asarray(y) ** 2) / 2.0


def disparity_gain(p: SimParams, x, y):
    """Multiplier on ``disparity_px_per_dioptre`` at field position (x, y)."""
    return 1.0 + p.disparity_gain_r2 * r2(x, y) + p.disparity_gain_x * np.asarray(x) + p.disparity_gain_y * np.asarray(y)


def disparity_offset_px(p: SimParams, x, y):
    """R-minus-L shift (pixels) at zero defocus at field position (x, y)."""
    return p.disparity_offset_x_px * np.asarray(x) + p.disparity_offset_y_px * np.asarray(y)


def curvature_dioptres(p: SimParams, x, y):
    """Field curvature: the lens focused at F dioptres is sharp at F + this at (x, y)."""
    return p.field_curvature_dioptres * r2(x, y)


def disparity_px(p: SimParams, defocus_dioptres, x, y):
    """Model disparity (R minus L centroid shift, pixels) for a defocus at (x, y)."""
    d = np.asarray(defocus_dioptres, dtype=np.float64)
    d = d + p.disparity_nonlinearity_per_dioptre * d * np.abs(d)
    return disparity_gain(p, x, y) * p.disparity_px_per_dioptre * d + disparity_offset_px(p, x, y)


def vignetting_maps(p: SimParams) -> tuple[np.ndarray, np.ndarray]:
    """Per-view relative illumination float32 [H, W]: radial falloff, L darker on the right, R on the left."""
    H, W = p.hw
    x = (np.arange(W) + 0.5 - W / 2.0) / (W / 2.0)
    y = (np.arange(H) + 0.5 - H / 2.0) / (H / 2.0)
    xx, yy = np.meshgrid(x, y)
    common = 1.0 - p.vignette_r2 * r2(xx, yy)
    gl, gr = 1.0 - p.view_gain_imbalance, 1.0 + p.view_gain_imbalance
    return ((gl * common * (1.0 - p.vignette_lr * xx)).astype(np.float32),
            (gr * common * (1.0 + p.vignette_lr * xx)).astype(np.float32))


def is_mirror_symmetric(p: SimParams) -> bool:
    """True when the two half-aperture kernels are exact mirror images (no asymmetric-PSF term set)."""
    return (p.split_offset == 0 and p.split_offset_x == 0 and p.psf_asymmetry == 0 and p.cats_eye == 0
            and p.coma_px_per_dioptre == 0)


def _fine_pupil(R: float, half: int, ss: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    nf = (2 * half + 1) * ss
    ax = (np.arange(nf, dtype=np.float64) - (nf - 1) / 2.0) / ss
    X, Y = np.meshgrid(ax, ax)
    return ax, X, Y


def _to_pixels(fine: np.ndarray, ax: np.ndarray, half: int) -> np.ndarray:
    """PSF (x) pixel box (x) source box sampled at pixel centres (triangle weights), normalised to sum 1."""
    pix = np.arange(-half, half + 1, dtype=np.float64)
    T = np.clip(1.0 - np.abs(pix[:, None] - ax[None, :]), 0.0, None)
    k = T @ fine @ T.T
    return k / k.sum()


def half_kernels(defocus_dioptres: float, p: SimParams, max_radius_px: float, fx: float = 0.0,
                 fy: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(left, right) half-aperture kernels at field position (fx, fy) with every asymmetric-PSF
    term of the module doc (odd squares of one size, each sums to 1, centred at the middle pixel;
    their centroids are placed later by ``half_aperture_otfs``)."""
    d = float(defocus_dioptres)
    R = blur_radius_px(d, p, max_radius_px)
    half = int(np.ceil(R)) + 1
    if R < 0.05:
        k = np.zeros((2 * half + 1, 2 * half + 1))
        k[half, half] = 1.0
        return k, k.copy()
    ss = 33 if R < 1 else (9 if R < 4 else 3)
    ax, X, Y = _fine_pupil(R, half, ss)
    pupil = np.hypot(X, Y) <= R
    if p.cats_eye:
        pupil &= np.hypot(X - p.cats_eye * R * fx, Y - p.cats_eye * R * fy) <= R
    disc = pupil.astype(np.float64)
    side = -1.0 if d >= 0 else 1.0  # the pupil image flips across the focal plane
    u = side * X + (p.split_offset + p.split_offset_x * fx) * R
    soft = p.aperture_softness * max(R, 0.25)
    sl = max(1.0 - p.psf_asymmetry, 0.05) * soft
    sr = max(1.0 + p.psf_asymmetry, 0.05) * soft
    left = disc * 0.5 * (1.0 + np.tanh(u / sl))
    right = disc * 0.5 * (1.0 - np.tanh(u / sr))
    if left.sum() <= 0 or right.sum() <= 0:  # a half with no light: fall back to the whole pupil
        left = right = disc
    return _to_pixels(left, ax, half), _to_pixels(right, ax, half)


def half_kernel(defocus_dioptres: float, p: SimParams, max_radius_px: float) -> np.ndarray:
    """Left-view half-aperture kernel (odd square, sums to 1, centred at its middle pixel).

    For defocus >= 0 the left view sees the left half of the disc, for
    defocus < 0 the right half (mirrored across the focal plane).  The
    disc radius is clipped to ``max_radius_px``.
    """
    R = blur_radius_px(defocus_dioptres, p, max_radius_px)
    half = int(np.ceil(R)) + 1
    ss = 33 if R < 1 else (9 if R < 4 else 3)  # fine samples per pixel (odd: one sits on the centre)
    nf = (2 * half + 1) * ss
    ax = (np.arange(nf, dtype=np.float64) - (nf - 1) / 2.0) / ss
    X, Y = np.meshgrid(ax, ax)
    disc = (np.hypot(X, Y) <= R).astype(np.float64)
    side = -1.0 if defocus_dioptres >= 0 else 1.0
    fine = disc * 0.5 * (1.0 + np.tanh(side * X / (p.aperture_softness * max(R, 0.25))))
    if fine.sum() <= 0:  # R ~ 0: a point
        k = np.zeros((2 * half + 1, 2 * half + 1))
        k[half, half] = 1.0
        return k
    # pixel-level kernel: the continuous PSF seen through the pixel aperture from a source at a
    # uniformly random sub-pixel position = PSF (x) box (x) box sampled at pixel centres (triangle weights)
    pix = np.arange(-half, half + 1, dtype=np.float64)
    T = np.clip(1.0 - np.abs(pix[:, None] - ax[None, :]), 0.0, None)
    k = T @ fine @ T.T
    s = k.sum()
    return k / s


def blur_radius_px(defocus_dioptres: float, p: SimParams, max_radius_px: float) -> float:
    """Radius (px) of the defocus disc (``focus_asymmetry`` applied), clipped to ``max_radius_px``."""
    d = float(defocus_dioptres)
    scale = 1.0 + p.focus_asymmetry * float(np.sign(d))
    return min(0.5 * p.blur_px_per_dioptre * scale * abs(d), max_radius_px)


def kernel_reach_px(defocus_dioptres: float, disparity: float, p: SimParams, max_radius_px: float) -> float:
    """How far (px) from its centre a view's kernel (disc, shift, base blur) has non-negligible weight."""
    R = blur_radius_px(defocus_dioptres, p, max_radius_px)
    drift = abs(p.coma_px_per_dioptre * float(defocus_dioptres)) * 1.5
    return R + 0.5 * R + 0.5 * abs(disparity) + drift + 3.0 * p.base_blur_sigma_px + 4.0


@lru_cache(maxsize=64)
def _freq(fft_shape: tuple[int, int], sigma: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    fh, fw = fft_shape
    fy = np.fft.fftfreq(fh)[:, None]
    fx = np.fft.rfftfreq(fw)[None, :]
    gauss = np.exp(-2.0 * (np.pi * sigma) ** 2 * (fy**2 + fx**2))
    return fx, gauss, (-np.arange(fh)) % fh


def _centred_otf(k: np.ndarray, fft_shape: tuple[int, int]) -> tuple[np.ndarray, float, float]:
    """rfft2 of kernel ``k`` placed centred at pixel (0, 0) (wrap-around) and its centroid (cx, cy), px."""
    fh, fw = fft_shape
    n = k.shape[0]
    c = n // 2
    idx = np.arange(n) - c
    cx = float((k.sum(axis=0) * idx).sum())
    cy = float((k.sum(axis=1) * idx).sum())
    arr = np.zeros(fft_shape)
    arr[np.ix_(idx % fh, idx % fw)] = k
    return np.fft.rfft2(arr), cx, cy


def half_aperture_otfs(defocus_dioptres: float, disparity: float, p: SimParams, fft_shape: tuple[int, int],
                       max_radius_px: float, fx: float = 0.0, fy: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """(OTF_left, OTF_right) complex128 [fh, fw // 2 + 1] for ``np.fft.irfft2(..., s=fft_shape)``.

    The kernels are centred at pixel (0, 0) (wrap-around), the right kernel
    is the mirror of the left, and both are shifted so their centroids sit at
    x = -disparity/2 (left) and +disparity/2 (right); the base blur is a
    Gaussian of sigma ``base_blur_sigma_px``.  With an asymmetric-PSF term set (module doc) the
    two kernels are built separately at field position (fx, fy), their centroids placed at
    -/+ disparity/2 plus the common drift ``coma * defocus * (fx, fy)``.
    """
    fh, fw = fft_shape
    if not is_mirror_symmetric(p):
        kl, kr = half_kernels(defocus_dioptres, p, max_radius_px, fx, fy)
        fxq, gauss, _ = _freq((int(fh), int(fw)), float(p.base_blur_sigma_px))
        fyq = np.fft.fftfreq(fh)[:, None]
        drift = p.coma_px_per_dioptre * float(defocus_dioptres)
        out = []
        for k, sgn in ((kl, -0.5), (kr, 0.5)):
            F, cx, cy = _centred_otf(k, (int(fh), int(fw)))
            sx = sgn * disparity + drift * fx - cx
            sy = drift * fy - cy
            out.append(F * gauss * np.exp(-2j * np.pi * (fxq * sx + fyq * sy)))
        return out[0], out[1]
    k = half_kernel(defocus_dioptres, p, max_radius_px)
    n = k.shape[0]
    c = n // 2
    cx = float((k.sum(axis=0) * (np.arange(n) - c)).sum())  # left centroid, px
    arr = np.zeros(fft_shape)
    idx = np.arange(n) - c
    arr[np.ix_(idx % fh, idx % fw)] = k
    fxr, gauss, mirror = _freq((int(fh), int(fw)), float(p.base_blur_sigma_px))
    FL = np.fft.rfft2(arr)
    FL *= gauss
    FR = np.conj(FL[mirror])  # mirror in x
    shift_l = -0.5 * disparity - cx  # move the left centroid from cx to -disparity/2; right mirrors
    ramp = np.exp(-2j * np.pi * fxr * shift_l)
    FL *= ramp
    FR *= np.conj(ramp)
    return FL, FR
