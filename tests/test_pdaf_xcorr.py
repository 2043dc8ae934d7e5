"""The xcorr estimator's per-step computation (hil_af.pdaf_xcorr) and the patch normalisation
(hil_af.pdaf._prepare) against the straightforward computations of their definitions: the
correlation by zero-padded FFT (the cross-spectrum, summed over rows) and the fine grid evaluated
from that spectrum (band-limited upsampling), the windowed NCC by explicit loops over shifts and
rows, and the normalisation as plain per-patch means, standard deviations and counts."""

from __future__ import annotations

import numpy as np
import pytest

from hil_af import pdaf, pdaf_xcorr

GEOMETRIES = [(12, 64, 64, 12), (12, 64, 64, 8), (3, 64, 192, 36), (1, 8, 8, 2), (2, 16, 100, 1), (4, 32, 48, 5)]


def _pair(rng, P, h, w, S):
    """Normalised L, R [P, h, w] float64: a smooth texture, R shifted by an integer in -S..S plus noise."""
    tex = rng.normal(0, 1, (P, h, w + 2 * S + 2)).cumsum(axis=2)
    sh = rng.integers(-S, S + 1, P)
    L = tex[:, :, S + 1:S + 1 + w]
    R = np.stack([tex[p, :, S + 1 - sh[p]:S + 1 - sh[p] + w] for p in range(P)]) + rng.normal(0, 0.3, (P, h, w))
    return pdaf._prepare(L, R, None, None)[:2]


def _spectral_xcorr(L, R, S, refine):
    """The correlation and its fine grid from the zero-padded cross-spectrum (the definitions)."""
    P, h, w = L.shape
    m = w - 2 * S
    win = np.zeros(w)
    win[S:S + m] = pdaf_xcorr.taper_window(m)
    sw = win.sum()
    Lm = L - (L * win).sum(axis=2, keepdims=True) / sw
    Lc = Lm * win
    eL = (Lc * Lm).sum(axis=(1, 2))
    n = 1 << int(np.ceil(np.log2(w + S + 1)))
    FR = np.fft.rfft(R, n=n, axis=2)
    R2 = (R * R).sum(axis=1)
    FW = np.conj(np.fft.rfft(win, n=n))
    X = (np.conj(np.fft.rfft(Lc, n=n, axis=2)) * FR).sum(axis=1)
    shifts = np.arange(-S, S + 1)
    num = np.fft.irfft(X, n=n, axis=1)[:, shifts % n]
    FM1 = FW * FR
    m1 = np.fft.irfft(FM1, n=n, axis=2)[:, :, shifts % n]  # window sums of R at each shift, by FFT
    m2 = np.fft.irfft(FW * np.fft.rfft(R2, n=n, axis=1), n=n, axis=1)[:, shifts % n]
    score = num / np.sqrt(np.maximum(eL[:, None] * (m2 - (m1 * m1).sum(axis=1) / sw), 1e-12))
    i0 = np.argmax(score, axis=1)
    i = np.clip(i0, 1, 2 * S - 1)
    rows = np.arange(P)
    d = shifts[i] + pdaf_xcorr.parabola(score[rows, i - 1], score[rows, i], score[rows, i + 1])
    if refine == "upsample":
        t = np.linspace(-1.0, 1.0, 21)
        k = np.arange(X.shape[1])
        wk = np.where((k == 0) | (k == n // 2), 1.0, 2.0)
        ph = np.exp(2j * np.pi * (shifts[i][:, None, None] + t[:, None]) * k / n) * (wk / n)  # [P, T, K]
        taper_f = np.exp(-0.5 * (k / (n * 0.2)) ** 2)
        numf = np.real(np.einsum("pk,ptk->pt", X * taper_f, ph))
        m1f = np.real(np.einsum("phk,ptk->pht", FM1, ph))
        m2f = np.real(np.einsum("pk,ptk->pt", FW * np.fft.rfft(R2, n=n, axis=1), ph))
        fine = numf / np.sqrt(np.maximum(eL[:, None] * (m2f - (m1f * m1f).sum(axis=1) / sw), 1e-12))
        j = np.clip(np.argmax(fine, axis=1), 1, len(t) - 2)
        d = shifts[i] + t[j] + pdaf_xcorr.parabola(fine[rows, j - 1], fine[rows, j], fine[rows, j + 1]) * (t[1] - t[0])
    return d, score[rows, i0], score, i0


@pytest.mark.parametrize("tukey", [0.0, 0.5])
@pytest.mark.parametrize("P,h,w,S", GEOMETRIES)
def test_xcorr_equals_the_cross_spectrum_computation(P, h, w, S, tukey, monkeypatch):
    monkeypatch.setattr(pdaf_xcorr, "_TUKEY", tukey)
    rng = np.random.default_rng(P * 1000 + w + S)
    for _ in range(3):
        L, R = _pair(rng, P, h, w, S)
        for refine in ("upsample", "parabola"):
            d, peak, score, i0 = pdaf_xcorr.xcorr(L, R, S, refine)
            rd, rpeak, rscore, ri0 = _spectral_xcorr(L, R, S, refine)
            np.testing.assert_array_equal(i0, ri0)
            np.testing.assert_allclose(score, rscore, rtol=0, atol=1e-9)
            np.testing.assert_allclose(peak, rpeak, rtol=0, atol=1e-9)
            np.testing.assert_allclose(d, rd, rtol=0, atol=1e-9)


def test_integer_scores_are_the_windowed_ncc_of_each_shift():
    """score[s] = sum_rows sum_x Tc(x) W_s(x) / sqrt(eT eW): the template's and the shifted right
    window's weighted, per-row centred energies, by explicit loops (tapered template)."""
    rng = np.random.default_rng(11)
    P, h, w, S = 2, 6, 20, 3
    L, R = _pair(rng, P, h, w, S)
    m = w - 2 * S
    tw = np.hanning(m + 2)[1:-1]  # any positive weights: the NCC's definition holds for each
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(pdaf_xcorr, "taper_window", lambda n, a=None: tw)
        score = pdaf_xcorr.xcorr(L, R, S, "parabola")[2]
    for p in range(P):
        for j, s in enumerate(range(-S, S + 1)):
            num = eT = eW = 0.0
            for r in range(h):
                T = L[p, r, S:S + m]
                W = R[p, r, S + s:S + s + m]
                Tc = T - np.dot(tw, T) / tw.sum()
                Wc = W - np.dot(tw, W) / tw.sum()
                num += np.dot(tw * Tc, W)
                eT += np.dot(tw * Tc, Tc)
                eW += np.dot(tw * Wc, Wc)
            assert score[p, j] == pytest.approx(num / np.sqrt(eT * eW), abs=1e-12)


def test_fine_kernel_tables_are_cached_per_geometry_and_taper(monkeypatch):
    g, hk = pdaf_xcorr._kernel_tables(64, 12, 0.0)
    assert pdaf_xcorr._kernel_tables(64, 12, 0.0)[0] is g
    assert not g.flags.writeable and not hk.flags.writeable
    assert g.shape == hk.shape == (21, 128)
    G, Hk = pdaf_xcorr._fine_kernels(64, 12, np.array([-12, 0, 12]))
    assert G.shape == (3, 21, 64) and Hk.shape == (3, 21, 64 + 40 - 1)
    monkeypatch.setattr(pdaf_xcorr, "_TUKEY", 0.5)
    assert not np.array_equal(pdaf_xcorr._fine_kernels(64, 12, np.array([0]))[0], G[1:2])


def _plain_prepare(left, right, white_level, gains):
    """The normalisation as written from its definition (plain means, stds and fractions)."""
    L = np.asarray(left, dtype=np.float64)
    R = np.asarray(right, dtype=np.float64)
    bad = ~(np.all(np.isfinite(L), axis=(1, 2)) & np.all(np.isfinite(R), axis=(1, 2)))
    if bad.any():
        L = np.nan_to_num(L, nan=0.0, posinf=0.0, neginf=0.0)
        R = np.nan_to_num(R, nan=0.0, posinf=0.0, neginf=0.0)
    sat = np.zeros(L.shape[0])
    if white_level is not None and white_level > 0:
        thr = 0.98 * float(white_level)
        sat = np.maximum((L >= thr).mean(axis=(1, 2)), (R >= thr).mean(axis=(1, 2)))
    if gains is not None:
        L, R = L * gains[0], R * gains[1]
    mL, mR = L.mean(axis=(1, 2), keepdims=True), R.mean(axis=(1, 2), keepdims=True)
    sL = np.sqrt(((L - mL) ** 2).mean(axis=(1, 2), keepdims=True))
    sR = np.sqrt(((R - mR) ** 2).mean(axis=(1, 2), keepdims=True))
    cv = np.minimum(sL / np.maximum(np.abs(mL), 1e-12), sR / np.maximum(np.abs(mR), 1e-12))[:, 0, 0]
    flat = (sL[:, 0, 0] <= 1e-9 * np.maximum(1.0, np.abs(mL[:, 0, 0]))) | (
        sR[:, 0, 0] <= 1e-9 * np.maximum(1.0, np.abs(mR[:, 0, 0])))
    return ((L - mL) / np.maximum(sL, 1e-12), (R - mR) / np.maximum(sR, 1e-12),
            cv * cv / (cv * cv + 0.004**2), sat, ~(bad | flat))


def test_prepare_is_bit_identical_to_the_plain_normalisation_and_leaves_its_input_alone():
    rng = np.random.default_rng(12)
    for trial in range(200):
        P, h, w = (int(v) for v in rng.integers(1, 6, 3))
        dtype = np.float32 if trial % 2 else np.float64
        L = rng.normal(500, [0.0, 1e-12, 1.0, 100.0][trial % 4], (P, h, w)).astype(dtype)
        R = rng.normal(500, 50, (P, h, w)).astype(np.float32)
        if trial % 3 == 0:  # NaN, +-inf, and finite values whose sum overflows
            # (trial // 6) % 4: trial % 4 alone would give the float64 (even) trials only NaN and -inf
            L[rng.integers(P)] = [np.nan, np.inf, -np.inf, 1e308][(trial // 6) % 4] if dtype == np.float64 else np.nan
        if trial % 5 == 0:
            R[0, 0] = 1023.0  # a saturated row
        wl = [None, 0.0, 1023.0, 520.0][trial % 4]
        gains = None if trial % 4 else (rng.uniform(0.5, 1.5, (P, h, w)), rng.uniform(0.5, 1.5, (P, h, w)))
        L0, R0 = L.copy(), R.copy()
        with np.errstate(all="ignore"):
            got = pdaf._prepare(L, R, wl, gains)
            want = _plain_prepare(L0, R0, wl, gains)
        np.testing.assert_array_equal(L, L0)  # a float64 input is not normalised in place
        np.testing.assert_array_equal(R, R0)
        for g, e in zip(got, want):
            assert g.dtype == e.dtype and g.shape == e.shape
            np.testing.assert_array_equal(g, e)


def test_products_are_split_into_small_blas_calls_with_the_same_result(monkeypatch):
    rng = np.random.default_rng(13)
    a, b = rng.normal(size=(3, 10, 7)), rng.normal(size=(3, 7, 5))
    calls = []
    real = np.matmul

    def counting(x, y, **kw):  # the numpy boundary: how big each product handed to BLAS is
        calls.append(x.shape[1] * x.shape[2] * y.shape[2])
        return real(x, y, **kw)

    monkeypatch.setattr(pdaf_xcorr, "_GEMM_MACS", 70)  # 2 rows of 7 x 5 per call
    monkeypatch.setattr(pdaf_xcorr.np, "matmul", counting)
    got = pdaf_xcorr._matmul(a, b)
    monkeypatch.undo()
    np.testing.assert_allclose(got, a @ b, rtol=0, atol=1e-12)
    assert calls == [70] * 5
    assert pdaf_xcorr._GEMM_MACS == 1 << 16
    L, R = _pair(np.random.default_rng(14), 2, 64, 192, 36)  # the wide second look's geometry
    with monkeypatch.context() as m:
        m.setattr(pdaf_xcorr, "_GEMM_MACS", 1 << 30)  # one call per product
        whole = pdaf_xcorr.xcorr(L, R, 36, "upsample")
    for g, e in zip(pdaf_xcorr.xcorr(L, R, 36, "upsample"), whole):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-12)
