"""hil_af.pdaf against direct (naive) computations of its definitions, on small patches.

A second batch to tests/test_pdaf_units.py, written against the mutants that survived it
(docs/mutation.md lists them): each score of every method is recomputed here with plain
loops from docs/pdaf-calibration.md (zero-mean NCC per row for xcorr, per window for zncc,
``1 - ssd / (var_T + var_W)`` for ssd), the subpixel step from its definition (a parabola
through the three scores around the integer peak; for xcorr's default a 0.1-px grid of the
band-limited correlation, evaluated here by a plain trigonometric sum over the spectrum of
the circular correlations), the confidence as the product of its documented terms, and the
edge cases of the pieces (flatness threshold, saturation at 98 % of the white level,
plateaus of the uniqueness term, the Tukey window's symmetry) from their definitions.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from hil_af import pdaf, pdaf_xcorr
from hil_af.errors import BadInput
from hil_af.pdaf import METHODS, crop_patches, estimate, estimate_windows


def sines(d, h=4, w=24, noise=0.0, seed=1):
    """L, R [P, h, w]: a sum of 5 random sinusoids per row plus a row offset, R(x) = L(x - d_p) + noise."""
    rng = np.random.default_rng(seed)
    P = len(d)
    f = rng.uniform(0.03, 0.3, (P, h, 5, 1))
    a = rng.uniform(0.5, 1.5, (P, h, 5, 1))
    ph = rng.uniform(0, 2 * np.pi, (P, h, 5, 1))
    off = rng.uniform(-2, 2, (P, h, 1))  # per-row offsets: the row-centred xcorr differs from zncc
    x = np.arange(w, dtype=np.float64)
    dd = np.asarray(d, dtype=np.float64)[:, None, None, None]
    L = 50 + off + (a * np.sin(2 * np.pi * f * x + ph)).sum(axis=2)
    R = 50 + off + (a * np.sin(2 * np.pi * f * (x - dd) + ph)).sum(axis=2)
    return L, R + noise * rng.standard_normal(R.shape)


def normalised(a):
    a = np.asarray(a, dtype=np.float64)
    return (a - a.mean(axis=(1, 2), keepdims=True)) / a.std(axis=(1, 2), keepdims=True)


def naive_scores(L, R, S, method, taper=None):
    """[P, 2S+1] scores at shifts -S..S of the central w - 2S columns of L against R, by loops."""
    L, R = normalised(L), normalised(R)
    P, h, w = L.shape
    m = w - 2 * S
    wt = np.ones(m) if taper is None else taper
    out = np.zeros((P, 2 * S + 1))
    for p in range(P):
        T = L[p, :, S:S + m]
        for j, s in enumerate(range(-S, S + 1)):
            W = R[p, :, S + s:S + s + m]
            if method == "zncc":
                out[p, j] = np.mean((T - T.mean()) * (W - W.mean())) / (T.std() * W.std())
            elif method == "ssd":
                out[p, j] = 1 - np.mean((T - W) ** 2) / (T.var() + W.var())
            else:  # row-centred (weighted) means, energies summed over the rows
                Tc = T - (T * wt).sum(axis=1, keepdims=True) / wt.sum()
                Wc = W - (W * wt).sum(axis=1, keepdims=True) / wt.sum()
                out[p, j] = (wt * Tc * Wc).sum() / np.sqrt((wt * Tc**2).sum() * (wt * Wc**2).sum())
    return out


def vertex(cm, c0, cp):
    """Vertex of the parabola through (-1, cm), (0, c0), (1, cp), clipped to +-0.5 (0 if not a maximum)."""
    den = cm - 2 * c0 + cp
    return float(np.clip(0.5 * (cm - cp) / den, -0.5, 0.5)) if den < -1e-12 else 0.0


def naive_uniqueness(row, i0):
    """(peak - best other local maximum >= 2 px away, 0 if none or negative) / peak, in [0, 1]."""
    n = len(row)
    others = [row[j] for j in range(n) if abs(j - i0) >= 2
              and (j == 0 or row[j] >= row[j - 1]) and (j == n - 1 or row[j] >= row[j + 1])]
    other = max(max(others), 0.0) if others else 0.0
    return min(max((row[i0] - other) / max(row[i0], 1e-12), 0.0), 1.0)


def texture(L, R):
    cv = np.minimum(L.std(axis=(1, 2)) / np.abs(L.mean(axis=(1, 2))), R.std(axis=(1, 2)) / np.abs(R.mean(axis=(1, 2))))
    return cv**2 / (cv**2 + 0.004**2)


# ---------------------------------------------------------------- scores, parabola refinement, confidence


@pytest.mark.parametrize("w,S", [(24, 5), (16, 6), (12, 1), (9, 2)])
@pytest.mark.parametrize("tukey", [0.0, 0.5, 1.0])
def test_xcorr_scores_are_the_row_centred_windowed_ncc_at_every_shift(monkeypatch, w, S, tukey):
    # the running-sum / FFT scores equal the direct loop at every shift, out to the search edge
    # (w - 2S = 4: the template and each window are 4 columns), for the box, Tukey 0.5 and Hann
    monkeypatch.setattr(pdaf_xcorr, "_TUKEY", tukey)
    L, R = sines([1.3, -S, S], w=w, noise=0.3)
    score = pdaf._xcorr(normalised(L), normalised(R), S, "parabola")[2]
    np.testing.assert_allclose(score, naive_scores(L, R, S, "xcorr", pdaf_xcorr.taper_window(w - 2 * S)), atol=1e-9)


def test_window_sums_are_weighted_sums_of_every_window(monkeypatch):
    a = np.random.default_rng(2).standard_normal((2, 3, 11))
    for taper in (np.ones(4), np.array([0.2, 1.0, 0.7, 0.1]), np.array([0.5, 0.5, 0.5])):
        want = np.stack([(a[..., j:j + taper.size] * taper).sum(-1) for j in range(11 - taper.size + 1)], -1)
        np.testing.assert_allclose(pdaf_xcorr.window_sums(a, taper), want, atol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_peak_disparity_and_confidence_follow_from_the_naive_scores(method):
    # noisy pairs whose integer peak falls on both edges (-S, S), next to an edge and inside: the peak is
    # the best score, the disparity the parabola through the three scores around it (kept off the ends),
    # the confidence peak x (0.25 + 0.75 uniqueness) x texture x (0.5 on an edge)
    S = 4
    d = [-S, -S + 1, -1.4, 0.35, 2.6, S]
    L, R = sines(d, w=24, noise=0.25, seed=3)
    res = estimate(L, R, method=method, max_shift=S, refine="parabola")
    sc = naive_scores(L, R, S, method)
    i0 = sc.argmax(axis=1)
    assert set(i0) >= {0, 1, 2 * S}  # the cases this test is about
    np.testing.assert_allclose(res.peak, sc.max(axis=1), atol=1e-9)
    assert np.all(res.peak < 0.999)
    i = np.clip(i0, 1, 2 * S - 1)
    want_d = [i[p] - S + vertex(*sc[p, i[p] - 1:i[p] + 2]) for p in range(len(d))]
    np.testing.assert_allclose(res.disparity_px, want_d, atol=1e-9)
    u = np.array([naive_uniqueness(sc[p], i0[p]) for p in range(len(d))])
    edge = np.where((i0 == 0) | (i0 == 2 * S), 0.5, 1.0)
    want_c = np.clip(sc.max(axis=1), 0, 1) * (0.25 + 0.75 * u) * texture(L, R) * edge
    np.testing.assert_allclose(res.confidence, want_c, rtol=1e-9)


def band_limited_xcorr(L, R, S):
    """xcorr's default disparity from its definition: the row-centred template correlated with R, and the
    window moments, as circular correlations of the zero-padded rows (length n: the smallest power of two
    above w + S, so no shift wraps); each evaluated between the samples by the trigonometric sum over its
    DFT (the numerator under the Gaussian taper exp(-f^2 / (2 * 0.2^2)), f in cycles/px); the normalised
    correlation on a 0.1-px grid from -1 to 1 px around the integer peak (kept off the search ends), and
    a parabola through the grid's best sample and its neighbours (kept off the grid's ends)."""
    L, R = normalised(L), normalised(R)
    P, h, w = L.shape
    m, n = w - 2 * S, 1 << (w + S).bit_length()
    Lc = np.zeros((P, h, n))
    Lc[:, :, S:S + m] = L[:, :, S:S + m] - L[:, :, S:S + m].mean(axis=2, keepdims=True)
    win = np.zeros(n)
    win[S:S + m] = 1.0
    Rz = np.zeros((P, h, n))
    Rz[:, :, :w] = R

    def circ(a, b):  # c[s] = sum_x a(x) b((x + s) mod n)
        return np.stack([(a * np.roll(b, -s, axis=-1)).sum(-1) for s in range(n)], -1)

    c, m1, m2 = circ(Lc, Rz).sum(axis=1), circ(win, Rz), circ(win, Rz * Rz).sum(axis=1)
    eL = (Lc**2).sum(axis=(1, 2))
    k = np.fft.fftfreq(n) * n

    def at(seq, u, taper=False):  # band-limited value of the n-periodic sequence at the points u
        C = np.fft.fft(seq, axis=-1) * (np.exp(-0.5 * (k / n / 0.2) ** 2) if taper else 1.0)
        return np.real(np.exp(2j * np.pi * np.multiply.outer(u, k) / n) @ C[..., None])[..., 0] / n

    out = []
    t = np.arange(-10, 11) / 10
    for p in range(P):
        s = np.arange(-S, S + 1) % n
        score = c[p, s] / np.sqrt(eL[p] * (m2[p, s] - (m1[p][:, s] ** 2).sum(0) / m))
        s0 = int(np.clip(score.argmax(), 1, 2 * S - 1)) - S
        u = s0 + t
        eR = at(m2[p], u) - (np.stack([at(r, u) for r in m1[p]]) ** 2).sum(0) / m
        fine = at(c[p], u, taper=True) / np.sqrt(eL[p] * eR)
        j = int(np.clip(fine.argmax(), 1, 19))
        out.append(s0 + t[j] + 0.1 * vertex(*fine[j - 1:j + 2]))
    return np.array(out)


@pytest.mark.parametrize("w,S", [(27, 4), (20, 5)])  # n = 32 with w + S + 1 = 32, and 32 with 26
def test_upsampled_xcorr_is_the_parabola_on_the_0_1_px_grid_of_the_band_limited_correlation(w, S):
    d = [-S, -2.55, -0.3, 0.45, 1.8, S]
    L, R = sines(d, w=w, noise=0.05, seed=4)
    got = estimate(L, R, max_shift=S).disparity_px
    np.testing.assert_allclose(got, band_limited_xcorr(L, R, S), atol=1e-8)
    np.testing.assert_allclose(got, d, atol=0.15)


def test_upsampled_xcorr_at_the_search_ends():
    # an exact shift of -S / +S: the grid is centred one integer inside, its best sample is its end, so the
    # parabola sits on the second sample (+-0.9) and is clipped to half a step: -S + 0.05 and S - 0.05
    S = 4
    L, R = sines([-S, S], w=24, seed=5)
    np.testing.assert_allclose(estimate(L, R, max_shift=S).disparity_px, [-S + 0.05, S - 0.05], atol=1e-9)


def test_method_names_pick_their_scores():
    # a mismatch that every method scores differently (row offsets and noise): each peak is its own score
    L, R = sines([1.2], w=20, noise=0.4, seed=6)
    peaks = {m: estimate(L, R, method=m, max_shift=3, refine="parabola").peak[0] for m in METHODS}
    for m in METHODS:
        assert peaks[m] == pytest.approx(naive_scores(L, R, 3, m).max(), abs=1e-9)
    assert len({round(v, 6) for v in peaks.values()}) == 3


def test_one_row_patches_are_enough():
    L, R = sines([1.5, -2.0], h=1, w=24)
    np.testing.assert_allclose(estimate(L, R, max_shift=4).disparity_px, [1.5, -2.0], atol=0.05)


def test_block_matching_refuses_a_template_under_4_px():
    # estimate() caps max_shift so that this cannot happen; the block matcher checks it itself
    with pytest.raises(BadInput, match=r"^patch width 10 too small for max_shift 4 \(needs w >= 2\*max_shift \+ 4\)$"):
        pdaf._block(np.zeros((1, 2, 10)), np.zeros((1, 2, 10)), 4, ssd=False)


# ---------------------------------------------------------------- the pieces at their boundaries


def test_float32_views_give_the_float64_results():
    # frames hold float32 views; the estimators compute in float64 whatever comes in
    L, R = sines([1.3, -0.6], noise=0.2, seed=7)
    L32, R32 = L.astype(np.float32), R.astype(np.float32)
    for m in METHODS:
        a = estimate(L32, R32, method=m, max_shift=4, white_level=60.0)
        b = estimate(L32.astype(np.float64), R32.astype(np.float64), method=m, max_shift=4, white_level=60.0)
        for x, y in ((a.disparity_px, b.disparity_px), (a.confidence, b.confidence), (a.peak, b.peak)):
            np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


def test_texture_uses_the_weaker_view_and_saturation_counts_either_view_at_98_percent():
    rng = np.random.default_rng(8)
    L = 60 + 0.2 * rng.standard_normal((1, 4, 8))   # cv ~ 0.003: the weaker view is the left one
    R = 40 + 4 * rng.standard_normal((1, 4, 8))
    tex = pdaf._prepare(L, R, None, None)[2]
    np.testing.assert_allclose(tex, texture(L, R))
    assert texture(L, R)[0] < 0.7
    L[0, 0, :4] = 98.0                               # 4 of 32 left pixels exactly at 98 % of 100
    assert pdaf._prepare(L, R, 100.0, None)[3].tolist() == [4 / 32]
    # float data: white level 1.0, three of 32 pixels at it
    F = rng.uniform(0.2, 0.5, (1, 4, 8))
    F[0, 1, :3] = 1.0
    assert pdaf._prepare(F, F * 0.9, 1.0, None)[3].tolist() == [3 / 32]


def test_flat_means_a_std_at_most_1e_9_of_max_1_and_the_mean():
    a = 1e-9
    rng = np.random.default_rng(9)
    cases = [  # (view, flat?)
        (np.array([[[a, -a] * 4]]), True),                                     # std exactly 1e-9, mean 0
        (1.5 * np.array([[[a, -a] * 4]]), False),                              # 1.5e-9 around 0
        (1e6 + 5e-4 * np.array([[[1.0, -1.0] * 4, [-1.0, 1.0] * 4]]), True),   # 5e-4 on 1e6: 5e-10 of it
        (1e6 + 4e-3 * np.array([[[1.0, -1.0] * 4, [-1.0, 1.0] * 4]]), False),
    ]
    for view, flat in cases:
        t = 5 + rng.standard_normal(view.shape)
        assert pdaf._prepare(view, t, None, None)[4].tolist() == [not flat]
        assert pdaf._prepare(t, view, None, None)[4].tolist() == [not flat]


def test_nonfinite_patches_and_flat_parabolas_raise_no_floating_point_warnings():
    L, R = sines([1.0] * 6)
    L[0, 0, 0], L[1, 0, 0], R[2, 1, 1], R[3, 1, 1], L[4, 2, 2], R[5] = np.inf, -np.inf, np.inf, -np.inf, np.nan, np.inf
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for m in METHODS:
            res = estimate(L, R, method=m, max_shift=4)
            assert res.confidence.tolist() == [0.0] * 6 and res.disparity_px.tolist() == [0.0] * 6
        # three equal scores, and a line: no curvature, no division
        assert pdaf._parabola(np.array([0.3, 0.0]), np.array([0.3, 1.0]), np.array([0.3, 2.0])).tolist() == [0.0, 0.0]


def test_parabola_treats_a_curvature_of_minus_1e_12_as_none():
    cm = 2.0**-41
    c0 = (cm + 1e-12) / 2  # cm - 2 c0 + 0 is exactly -1e-12
    assert cm - 2.0 * c0 == -1e-12
    assert pdaf._parabola(np.array([cm]), np.array([c0]), np.array([0.0])).tolist() == [0.0]


def test_uniqueness_plateaus_and_the_ends_of_the_row():
    rows = [  # (scores, peak index, uniqueness)
        ([1.0, 0.5, 0.5, 0.0], 0, 0.5),        # a plateau is a local maximum, its far end counts
        ([0.0, 0.5, 0.5, 1.0], 3, 0.5),        # ... from the other side too
        ([0.5, 0.5, 1.0, 0.0], 2, 0.5),        # the first sample on a plateau with its neighbour
        ([0.0, 0.2, 1.0, 0.5, 0.5], 2, 0.5),   # the last sample on a plateau with its neighbour
        ([0.0, 0.1, 1.0, 0.2, 0.6], 2, 0.4),   # the last sample above its neighbour
        ([0.0, 0.2, 1.0, 0.7, 0.5], 2, 1.0),   # the last sample below its neighbour: not a maximum
        ([-0.5, -0.2, -0.9, -0.8], 1, 0.0),    # a negative peak: clipped to 0
    ]
    for row, i0, want in rows:
        assert naive_uniqueness(row, i0) == pytest.approx(want)
        assert pdaf._uniqueness(np.array([row]), np.array([i0]))[0] == pytest.approx(want)


def test_tukey_window_is_symmetric_for_any_taper_fraction(monkeypatch):
    # the cosine taper over the first a/2 of the window, its mirror image over the last a/2
    for a in (0.3, 0.7):
        monkeypatch.setattr(pdaf_xcorr, "_TUKEY", a)
        x = (np.arange(20) + 0.5) / 20
        want = np.where(x < a / 2, 0.5 * (1 - np.cos(2 * np.pi * x / a)), 1.0)
        want = np.minimum(want, want[::-1])
        np.testing.assert_allclose(pdaf_xcorr.taper_window(20), want, atol=1e-12)


# ---------------------------------------------------------------- RoIs


def test_rois_as_floats_and_sizes_grouped_by_width_and_height():
    img = np.random.default_rng(10).uniform(10, 20, (12, 40)).astype(np.float32)
    L, R = crop_patches(img, img + 1, np.array([[2.0, 3.0, 8.0, 4.0]]))  # integral floats are fine
    np.testing.assert_array_equal(L[0], img[3:7, 2:10])
    assert L.dtype == np.float32
    z = crop_patches(img, img, [])
    assert z[0].dtype == z[1].dtype == np.float32  # float32 views: float32 patches, an empty batch too
    seen = []

    def patches(sub):  # a window decoder that slices with the values it is given
        seen.append(sorted({(r[2], r[3]) for r in sub.tolist()}))
        return np.stack([img[y:y + h, x:x + w] for x, y, w, h in sub]), np.stack([img[y:y + h, x:x + w] for x, y, w, h in sub])

    rois = np.array([[0.0, 0.0, 16.0, 8.0], [20.0, 2.0, 12.0, 8.0], [4.0, 4.0, 16.0, 8.0]])  # one height, two widths
    res = estimate_windows(patches, rois, max_shift=2)
    assert sorted(seen) == [[(12, 8)], [(16, 8)]]
    np.testing.assert_allclose(res.peak, 1.0, atol=1e-9)  # L == R
    np.testing.assert_allclose(res.disparity_px, 0.0, atol=0.1)
