"""The xcorr estimator's correlation (``hil_af.pdaf`` method ``"xcorr"``), computed per AF step.

The definitions (``hil_af.pdaf`` module doc): the left template is the central
``m = w - 2S`` columns of the normalised left patch under the Tukey taper
(weighted mean removed per row); the correlation at shift ``s`` is
``c(s) = sum_rows sum_x Lc(x) R(x + s)`` (``Lc`` zero outside the template),
normalised by the energy of the right window it meets; the sub-pixel
refinement evaluates the band-limited (zero-padded length-``n`` DFT)
interpolation of ``c`` and of the right windows' moments on a fine grid of
``FINE_T`` offsets around the integer peak, ``c`` under a Gaussian spectral
taper (``_TAPER`` cycles/px).

How they are computed (the same values as the cross-spectrum formulation up to
float64 rounding: tests/test_pdaf_xcorr.py compares them with it):

- ``c`` at every shift from one matrix product per patch, ``T^T R`` ([m, w]:
  the template columns against every right column, rows summed), whose
  diagonals are the shifts: no FFT of the patch rows;
- the fine grid: each interpolated quantity is a fixed linear function of the
  samples it interpolates (the interpolation kernel depends only on the patch
  width, the search range and the offset), so the kernels are tabulated once
  per geometry over one period (``_kernel_tables``, cached, tens of kB), gathered
  at each RoI's peak (``_fine_kernels``) and applied with matrix products.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

_EPS = 1e-12
_TAPER = 0.2  # Gaussian spectral taper of the fine correlation, in cycles/px (measured on noisy textures)
FINE_T = np.linspace(-1.0, 1.0, 21)  # the fine grid's offsets from the integer peak, px
# Fraction of the template under cosine tapers (0: box, 1: Hann); see hil_af.pdaf.
_TUKEY = 0.0
_GEMM_MACS = 1 << 16  # multiply-adds per BLAS call (_matmul): OpenBLAS threads only above 65536 x its GEMM_MULTITHREAD_THRESHOLD (>= 1)


def taper_window(m: int, a: float | None = None) -> np.ndarray:
    """Tukey window of length m (cosine tapers over a fraction ``a`` of it; default _TUKEY)."""
    a = _TUKEY if a is None else a
    if a <= 0:
        return np.ones(m)
    x = (np.arange(m) + 0.5) / m
    w = np.ones(m)
    lo = x < a / 2
    hi = x > 1 - a / 2
    w[lo] = 0.5 * (1 - np.cos(2 * np.pi * x[lo] / a))
    w[hi] = 0.5 * (1 - np.cos(2 * np.pi * (1 - x[hi]) / a))
    return w


def fft_length(w: int, S: int) -> int:
    """The zero-padded DFT length the band-limited interpolation is defined on (power of 2 >= w + S + 1)."""
    return 1 << int(np.ceil(np.log2(w + S + 1)))


def window_sums(a: np.ndarray, taper: np.ndarray) -> np.ndarray:
    """sum_x taper(x) a(x + j) along the last axis for j = 0 .. w - m (the shifted windows of
    length m = len(taper) inside a): [..., w - m + 1].  A box taper (_TUKEY 0) by running sums."""
    m = taper.size
    if np.all(taper == 1.0):
        c = np.cumsum(a, axis=-1)
        out = c[..., m - 1:].copy()
        out[..., 1:] -= c[..., :-m]
        return out
    return np.einsum("...jx,x->...j", np.lib.stride_tricks.sliding_window_view(a, m, axis=-1), taper)


def _matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b`` of stacked float64 matrices [P, M, K] @ [P, K, N], in BLAS calls of at most
    ``_GEMM_MACS`` multiply-adds each: a BLAS library threads larger products (OpenBLAS above
    65536 x GEMM_MULTITHREAD_THRESHOLD), and an AF step stays on its core (on a loaded machine
    the threaded product of the wide second look took 40 times the CPU time of the single-threaded one)."""
    P, M, K = a.shape
    N = b.shape[2]
    rows = max(1, _GEMM_MACS // max(1, K * N))
    if rows >= M:
        return np.matmul(a, b)
    out = np.empty((P, M, N))
    for r in range(0, M, rows):
        np.matmul(a[:, r:r + rows], b, out=out[:, r:r + rows])
    return out


def _diagonals(C: np.ndarray, first: int, count: int) -> np.ndarray:
    """Sums along the diagonals ``first .. first + count - 1`` (column - row) of C [P, m, w] that lie
    wholly inside it (0 <= first, first + count - 1 + m - 1 <= w - 1): [P, count]."""
    P, m, w = C.shape
    s0, s1, s2 = C.strides
    band = np.lib.stride_tricks.as_strided(C[:, :, first:], shape=(P, count, m), strides=(s0, s2, s1 + s2),
                                           writeable=False)
    return band.sum(axis=2)


def _all_diagonals(C: np.ndarray) -> np.ndarray:
    """Sums along every diagonal of C [P, m, w], column - row = -(m - 1) .. w - 1: [P, w + m - 1]."""
    P, m, w = C.shape
    Z = np.zeros((P, m, w + m - 1))
    z0, z1, z2 = Z.strides  # row x of C lands at column (y - x) + m - 1 of Z
    np.lib.stride_tricks.as_strided(Z[:, :, m - 1:], shape=(P, m, w), strides=(z0, z1 - z2, z2))[...] = C
    return Z.sum(axis=1)


def _fine_kernels(w: int, S: int, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Interpolation kernels of the fine grid for patches w px wide searched at +-S px, at the
    integer peak shifts s (px, int [P]) and the fine offsets t (FINE_T):

    G [P, T, w]: the right windows' moments, ``m1f(s + t) = sum_y G[p, t, y] R(y)`` (the taper
    window's correlation with a row of R, trig-interpolated from its length-n DFT);
    Hk [P, T, w + m - 1]: the correlation, ``numf(s + t) = sum_lag Hk[p, t, lag] c(lag)`` over the
    lags -(S + m - 1) .. w - 1 - S of ``c`` (the spectrally tapered trig interpolation).
    Both are gathered from the two kernels' tables over one period (``_kernel_tables``)."""
    m = w - 2 * S
    g, hk = _kernel_tables(w, S, _TUKEY)
    n = g.shape[1]
    y = np.arange(w)
    lags = np.arange(-(m - 1), w) - S
    G = g[:, (s[:, None] - y[None, :]) % n].transpose(1, 0, 2)  # g(s + t - y)
    Hk = hk[:, (s[:, None] - lags[None, :]) % n].transpose(1, 0, 2)  # h(s + t - lag)
    return G, Hk


@lru_cache(maxsize=16)
def _kernel_tables(w: int, S: int, tukey: float) -> tuple[np.ndarray, np.ndarray]:
    """The two kernels at u = q + t for q = 0 .. n-1 and t in FINE_T (period n), float64 [T, n]
    each (read-only, cached per geometry and taper): ``g(u) = Re sum_k (wk / n) FW(k) e^(2 pi i k u / n)``
    (FW: the conjugate DFT of the taper window), ``h(u) = sum_k (wk / n) taper_f(k) cos(2 pi k u / n)``."""
    m = w - 2 * S
    n = fft_length(w, S)
    K = n // 2 + 1
    k = np.arange(K)
    wk = np.full(K, 2.0)
    wk[0] = 1.0
    if n % 2 == 0:
        wk[-1] = 1.0
    win = np.zeros(w)
    win[S:S + m] = taper_window(m, tukey)
    FW = np.conj(np.fft.rfft(win, n=n))
    taper_f = np.exp(-0.5 * (k / (n * _TAPER)) ** 2)
    q = np.arange(n)
    theta = 2 * np.pi * (q[None, :, None] + FINE_T[:, None, None]) * k / n  # [T, n, K]: at u = q + t
    g = (wk / n * (FW.real * np.cos(theta) - FW.imag * np.sin(theta))).sum(axis=2)
    hk = (wk / n * taper_f * np.cos(theta)).sum(axis=2)
    g.flags.writeable = False
    hk.flags.writeable = False
    return g, hk


def parabola(cm: np.ndarray, c0: np.ndarray, cp: np.ndarray) -> np.ndarray:
    """Vertex offset in (-0.5, 0.5) of the parabola through (-1, cm), (0, c0), (1, cp)."""
    den = cm - 2.0 * c0 + cp
    off = np.where(den < -_EPS, 0.5 * (cm - cp) / np.where(den < -_EPS, den, -1.0), 0.0)
    return np.clip(off, -0.5, 0.5)


def scores(L: np.ndarray, R: np.ndarray, S: int):
    """The integer-shift scores of ``xcorr`` (module doc) of normalised patches L, R float64
    [P, h, w] at shifts -S..S: (scores [P, 2S+1], and for the sub-pixel refinement: the template
    energies eL [P], the products C [P, m, w], the rows' second moments R2 [P, w], the taper's sum)."""
    P, h, w = L.shape
    m = w - 2 * S
    taper = taper_window(m)
    sw = taper.sum()
    T = L[:, :, S:S + m]  # the template columns (Lc is zero elsewhere)
    box = bool(np.all(taper == 1.0))  # _TUKEY 0: x * 1.0 is x, so the products are skipped
    Tm = T - ((T if box else T * taper).sum(axis=2, keepdims=True) / sw)
    Tc = Tm if box else Tm * taper  # weighted, zero weighted mean per row
    eL = (Tc * Tm).sum(axis=2).sum(axis=1)  # [P]
    C = _matmul(Tc.transpose(0, 2, 1), R)  # [P, m, w]: sum_rows Tc(x) R(y)
    num = _diagonals(C, 0, 2 * S + 1)  # shift s = j - S: R(S + x + s) is column x + j
    # the shifted windows' weighted first moments per row and second moments: R(x + s) for x in the
    # template's columns S .. S+m-1 stays inside 0 .. w-1, so shift s is window j = s + S of R
    R2 = (R * R).sum(axis=1)  # [P, w]: the second moments are summed over rows
    m1 = window_sums(R, taper)  # [P, h, 2S+1]
    m2 = window_sums(R2, taper)  # [P, 2S+1]
    eR = m2 - (m1 * m1).sum(axis=1) / sw
    return num / np.sqrt(np.maximum(eL[:, None] * eR, _EPS)), eL, C, R2, sw


def score_at_zero(L: np.ndarray, R: np.ndarray, S: int) -> np.ndarray:
    """``scores(L, R, S)[0][:, S]`` (the normalised correlation at shift 0) without the other shifts:
    the template against the right window at the same columns, float64 [P] (equal to that column up
    to float64 rounding: tests/test_pdaf_structure.py).  The structure gate's cheap lower bound."""
    P, h, w = L.shape
    m = w - 2 * S
    taper = taper_window(m)
    sw = taper.sum()
    box = bool(np.all(taper == 1.0))  # _TUKEY 0: the taper products are skipped, as in scores
    T = L[:, :, S:S + m]
    W0 = R[:, :, S:S + m]  # window j = S of R: shift 0
    Tm = T - (T if box else T * taper).sum(axis=2, keepdims=True) / sw
    Tc = Tm if box else Tm * taper
    Wt = W0 if box else W0 * taper
    num = np.einsum("pyx,pyx->p", Tc, W0)
    m1 = Wt.sum(axis=2)  # [P, h]
    eR = np.einsum("pyx,pyx->p", Wt, W0) - np.einsum("py,py->p", m1, m1) / sw
    eL = np.einsum("pyx,pyx->p", Tc, Tm)
    return num / np.sqrt(np.maximum(eL * eR, _EPS))


def xcorr(L: np.ndarray, R: np.ndarray, S: int, refine: str):
    """Windowed normalised cross-correlation along x, rows summed (module doc), of normalised
    patches L, R float64 [P, h, w] at shifts -S..S: (disparity px [P], peak score [P], scores
    [P, 2S+1], integer peak index [P]); ``refine`` "upsample" or "parabola" (sub-pixel)."""
    P, h, w = L.shape
    score, eL, C, R2, sw = scores(L, R, S)
    i0 = np.argmax(score, axis=1)
    i = np.clip(i0, 1, 2 * S - 1)
    rows = np.arange(P)
    shifts = np.arange(-S, S + 1)
    off = parabola(score[rows, i - 1], score[rows, i], score[rows, i + 1])
    d = shifts[i] + off
    if refine == "upsample":
        Gi, Hk = _fine_kernels(w, S, shifts[i])  # [P, T, w], [P, T, w + m - 1]
        numf = _matmul(Hk, _all_diagonals(C)[:, :, None])[:, :, 0]  # [P, T]
        m1f = _matmul(R, Gi.transpose(0, 2, 1))  # [P, h, T]
        m2f = _matmul(Gi, R2[:, :, None])[:, :, 0]  # [P, T]
        fine = numf / np.sqrt(np.maximum(eL[:, None] * (m2f - (m1f * m1f).sum(axis=1) / sw), _EPS))
        j = np.clip(np.argmax(fine, axis=1), 1, FINE_T.size - 2)
        offf = parabola(fine[rows, j - 1], fine[rows, j], fine[rows, j + 1])
        d = shifts[i] + FINE_T[j] + offf * (FINE_T[1] - FINE_T[0])
    peak = score[rows, i0]
    return d, peak, score, i0
