"""hil_af.pdaf on small hand-made inputs whose answers follow from its definitions.

The expected values come from the module docstring and docs/pdaf-calibration.md (sign convention
``right(x) = left(x - d)``, the parabola vertex, the uniqueness / texture / saturation / edge
terms of the confidence), never from the code's output.  The patches are small so that the
whole file runs in seconds: it is the test list of ``benchmarks/mutation.py pdaf``
(tests/test_pdaf.py holds the slower statistical checks on 64x64 patches).
"""

from __future__ import annotations

import numpy as np
import pytest

from hil_af import pdaf, pdaf_xcorr
from hil_af.errors import BadInput
from hil_af.pdaf import METHODS, crop_patches, estimate, estimate_rois, estimate_windows


def smooth(rng, P, h, w, sigma=1.5):
    """Periodic band-limited texture [P, h, w] with unit std (Gaussian-filtered noise along x)."""
    a = rng.standard_normal((P, h, w))
    f = np.fft.rfftfreq(w)
    t = np.fft.irfft(np.fft.rfft(a, axis=-1) * np.exp(-2 * (np.pi * sigma * f) ** 2), n=w, axis=-1)
    return t / t.std(axis=(1, 2), keepdims=True)


def rolled_pair(d, h=6, w=32, pad=16, seed=0, mean=100.0, contrast=20.0):
    """L, R [P, h, w] with R(x) = L(x - d_i) exactly (integer d, a roll of a wider periodic texture)."""
    base = smooth(np.random.default_rng(seed), len(d), h, w + 2 * pad)
    L = mean + contrast * base[:, :, pad:pad + w]
    R = np.stack([mean + contrast * np.roll(b, int(k), axis=-1)[:, pad:pad + w] for b, k in zip(base, d)])
    return L, R


def fourier_pair(d, h=6, w=32, pad=16, seed=0):
    """As rolled_pair, for fractional d (band-limited Fourier shift of the periodic texture)."""
    base = smooth(np.random.default_rng(seed), len(d), h, w + 2 * pad)
    f = np.fft.rfftfreq(w + 2 * pad)
    sh = np.fft.irfft(np.fft.rfft(base, axis=-1) * np.exp(-2j * np.pi * f * np.asarray(d)[:, None, None]),
                      n=w + 2 * pad, axis=-1)
    return 100 + 20 * base[:, :, pad:pad + w], 100 + 20 * sh[:, :, pad:pad + w]


# ---------------------------------------------------------------- disparity: sign, integer and subpixel shifts


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("refine", ["upsample", "parabola"])
def test_integer_shifts_have_the_contract_sign(method, refine):
    d = [-3, 0, 2, 4]
    L, R = rolled_pair(d)
    res = estimate(L, R, method=method, max_shift=5, refine=refine)
    np.testing.assert_allclose(res.disparity_px, d, atol=0.1)
    back = estimate(R, L, method=method, max_shift=5, refine=refine)  # swapping the views flips the sign
    np.testing.assert_allclose(back.disparity_px, -np.array(d), atol=0.1)


@pytest.mark.parametrize("method", ["xcorr", "zncc"])
def test_a_shifted_copy_correlates_perfectly(method):
    # normalised correlation: an exact (integer) shift scores 1, whatever the right view's gain and offset
    L, R = rolled_pair([2, -1])
    res = estimate(L, 0.6 * R + 7.0, method=method, max_shift=4)
    np.testing.assert_allclose(res.peak, 1.0, atol=1e-6)
    np.testing.assert_allclose(res.disparity_px, [2, -1], atol=0.1)


def test_ssd_score_of_identical_views_is_one():
    # 1 - ssd / (var_T + var_W): identical windows give ssd 0
    L, _ = rolled_pair([0])
    res = estimate(L, L.copy(), method="ssd", max_shift=3)
    assert res.peak[0] == pytest.approx(1.0, abs=1e-9)
    assert res.disparity_px[0] == pytest.approx(0.0, abs=0.05)


def test_upsampled_xcorr_recovers_subpixel_shifts():
    d = np.array([-2.7, -0.5, 0.3, 1.25, 3.6])
    L, R = fourier_pair(d)
    res = estimate(L, R, max_shift=5)
    np.testing.assert_allclose(res.disparity_px, d, atol=0.05)
    assert np.all(res.confidence > 0.8)


@pytest.mark.parametrize("method", ["zncc", "ssd"])
def test_block_matching_parabola_lands_between_the_integers(method):
    d = np.array([-1.5, 0.5, 2.5])  # half-pixel shifts: the two neighbours of the peak score alike
    L, R = fourier_pair(d)
    res = estimate(L, R, method=method, max_shift=4)
    np.testing.assert_allclose(res.disparity_px, d, atol=0.15)


def test_max_shift_is_capped_by_the_patch_width():
    # w = 12: at most (12 - 4) // 2 = 4 px is searched, however large max_shift is
    L, R = rolled_pair([3, -3], w=12)
    for m in METHODS:
        res = estimate(L, R, method=m, max_shift=50)
        np.testing.assert_allclose(res.disparity_px, [3, -3], atol=0.15)
        assert np.all(np.abs(res.disparity_px) <= 4.5)


# ---------------------------------------------------------------- confidence terms (docs/pdaf-calibration.md)


@pytest.mark.parametrize("method", METHODS)
def test_texture_term_is_one_half_at_a_coefficient_of_variation_of_0_004(method):
    # texture = cv^2 / (cv^2 + 0.004^2), cv = std / mean of the weaker view; after normalising, the
    # two pairs below are the same pattern, so only the texture term differs between them
    L, R = rolled_pair([1], mean=0.0, contrast=1.0)
    k = 4.0 / min(L.std(), R.std())  # the weaker view's std: 4 DN on a mean of ~1000

    def term(a, b):
        cv = min(a.std() / a.mean(), b.std() / b.mean())
        return cv**2 / (cv**2 + 0.004**2)

    lo_L, lo_R, hi_L, hi_R = 1000 + k * L, 1000 + k * R, 1000 + 100 * k * L, 1000 + 100 * k * R
    assert term(lo_L, lo_R) == pytest.approx(0.5, abs=0.01)  # cv ~ 0.004
    lo = estimate(lo_L, lo_R, method=method, max_shift=4)
    hi = estimate(hi_L, hi_R, method=method, max_shift=4)  # cv ~ 0.4: term ~ 1
    assert lo.confidence[0] / hi.confidence[0] == pytest.approx(term(lo_L, lo_R) / term(hi_L, hi_R), rel=1e-6)
    assert lo.disparity_px[0] == pytest.approx(hi.disparity_px[0], abs=1e-6)


@pytest.mark.parametrize("method", METHODS)
def test_saturation_term_is_one_minus_twice_the_saturated_fraction(method):
    L, R = rolled_pair([2])
    white = float(np.quantile(np.concatenate([L.ravel(), R.ravel()]), 0.9)) / 0.98
    thr = 0.98 * white  # "saturated": at or above 98 % of the white level
    sat = max(np.mean(L >= thr), np.mean(R >= thr))
    assert 0 < sat < 0.5
    free = estimate(L, R, method=method, max_shift=4)
    capped = estimate(L, R, method=method, max_shift=4, white_level=white)
    assert capped.confidence[0] == pytest.approx(free.confidence[0] * (1 - 2 * sat), rel=1e-9)
    # half or more of the pixels saturated: confidence 0 (the term is clipped at 0)
    assert estimate(L, R, method=method, max_shift=4, white_level=float(np.median(L)) / 0.98).confidence[0] == 0.0


@pytest.mark.parametrize("method", METHODS)
def test_repetitive_texture_keeps_only_a_quarter_of_the_confidence(method):
    # a sinusoid of period 6 px matches as well at +-6 px as at 0: uniqueness 0, confidence
    # peak * (0.25 + 0.75 * 0) * texture, with peak 1 (ssd: its score of a perfect match) and texture ~ 1
    x = np.arange(32)
    L = np.broadcast_to(100 + 20 * np.sin(2 * np.pi * x / 6), (1, 6, 32)).copy()
    res = estimate(L, L.copy(), method=method, max_shift=8)
    cv = L.std() / L.mean()
    assert res.confidence[0] == pytest.approx(0.25 * cv**2 / (cv**2 + 0.004**2), abs=0.01)


def test_a_peak_on_the_edge_of_the_search_range_is_down_weighted():
    # zncc of an exact shift of 3 px: searched to 4 px the peak is inside, to 3 px it is on the edge
    L, R = rolled_pair([3], w=32)
    inside = estimate(L, R, method="zncc", max_shift=4)
    edge = estimate(L, R, method="zncc", max_shift=3)
    assert inside.peak[0] == pytest.approx(1.0) and edge.peak[0] == pytest.approx(1.0)
    assert edge.confidence[0] / inside.confidence[0] == pytest.approx(0.5, abs=0.1)


def test_flat_and_nonfinite_patches_give_zero_disparity_and_confidence():
    L, R = rolled_pair([2, 2, 2])
    L[0], R[0] = 50.0, 50.0                       # flat
    L[1, 2, 3] = np.nan                           # NaN in the left view
    R[2, 0, 0] = np.inf                           # inf in the right view
    for m in METHODS:
        res = estimate(L, R, method=m, max_shift=4)
        np.testing.assert_array_equal(res.disparity_px, 0.0)
        np.testing.assert_array_equal(res.confidence, 0.0)
        np.testing.assert_array_equal(res.peak, 0.0)


def test_nonfinite_values_do_not_spoil_the_other_patches():
    L, R = rolled_pair([2, -2])
    L[0, 0, 0] = np.nan
    res = estimate(L, R, max_shift=4)
    assert res.confidence[0] == 0.0
    assert res.disparity_px[1] == pytest.approx(-2.0, abs=0.1) and res.confidence[1] > 0.8


def test_flat_gain_maps_change_nothing_and_gains_undo_a_view_gain_pattern():
    L, R = rolled_pair([1, -2])
    ref = estimate(L, R, max_shift=4)
    g = np.random.default_rng(3).uniform(0.5, 1.5, L.shape)  # a per-pixel gain pattern on the right view
    fixed = estimate(L, R * g, max_shift=4, gains=(np.ones_like(g), 1.0 / g))
    np.testing.assert_allclose(fixed.disparity_px, ref.disparity_px, atol=1e-9)
    np.testing.assert_allclose(fixed.confidence, ref.confidence, rtol=1e-9)
    spoilt = estimate(L, R * g, max_shift=4)
    assert np.all(spoilt.peak < 0.9)  # without the correction the pattern breaks the match
    left_fixed = estimate(L * g, R, max_shift=4, gains=(1.0 / g, np.ones_like(g)))
    np.testing.assert_allclose(left_fixed.disparity_px, ref.disparity_px, atol=1e-9)


# ---------------------------------------------------------------- the pieces, from their definitions


def test_parabola_vertex():
    # y = -(x - v)^2 + c through x = -1, 0, 1 has its vertex at v
    for v in (-0.4, 0.0, 0.25):
        cm, c0, cp = -(-1 - v) ** 2, -(v**2), -(1 - v) ** 2
        assert float(pdaf._parabola(np.array([cm]), np.array([c0]), np.array([cp]))[0]) == pytest.approx(v)
    # a vertex beyond half a step is clipped to +-0.5; a line or an upward parabola gives 0
    v = 0.9
    assert float(pdaf._parabola(np.array([-(-1 - v) ** 2]), np.array([-(v**2)]), np.array([-(1 - v) ** 2]))[0]) == 0.5
    assert float(pdaf._parabola(np.array([-(-1 + v) ** 2]), np.array([-(v**2)]), np.array([-(1 + v) ** 2]))[0]) == -0.5
    assert float(pdaf._parabola(np.array([0.0]), np.array([1.0]), np.array([2.0]))[0]) == 0.0
    assert float(pdaf._parabola(np.array([1.0]), np.array([0.0]), np.array([1.0]))[0]) == 0.0


def test_uniqueness_against_the_best_other_local_maximum_two_or_more_away():
    score = np.array([
        [0.0, 0.2, 1.0, 0.2, 0.5, 0.1],   # other local max 0.5 at distance 2: (1 - 0.5) / 1
        [0.6, 0.1, 1.0, 0.3, 0.2, 0.1],   # the first sample is a local max when >= its neighbour
        [0.1, 0.2, 1.0, 0.1, 0.0, 0.3],   # so is the last
        [0.1, 0.9, 1.0, 0.9, 0.1, 0.0],   # the neighbours are not local maxima: nothing else, 1
        [0.0, 0.95, 1.0, 0.2, 0.1, 0.0],  # a shoulder right next to the peak does not count
        [-0.5, -0.9, 0.8, -0.9, -0.2, -0.3],  # a negative other maximum counts as 0
    ])
    idx = np.full(6, 2)
    np.testing.assert_allclose(pdaf._uniqueness(score, idx), [0.5, 0.4, 0.7, 1.0, 1.0, 1.0])
    # the peak at the start of the row: the local max at index 2 is 2 away
    np.testing.assert_allclose(pdaf._uniqueness(np.array([[1.0, 0.1, 0.8, 0.1]]), np.array([0])), [0.2])
    # an equal other peak: 0
    np.testing.assert_allclose(pdaf._uniqueness(np.array([[1.0, 0.0, 0.0, 1.0]]), np.array([0])), [0.0])


def test_prepare_normalises_each_view_and_measures_texture_and_saturation():
    rng = np.random.default_rng(4)
    L = 50 + 5 * rng.standard_normal((2, 4, 8))
    R = 80 + 2 * rng.standard_normal((2, 4, 8))
    L[1, 0, :3] = 99.0        # 3 of 32 pixels at the white level (100 * 0.98 = 98 is saturated)
    R[1, 1, :5] = 98.0        # 5 of 32 exactly at the threshold
    Ln, Rn, texture, sat, valid = pdaf._prepare(L, R, 100.0, None)
    np.testing.assert_allclose(Ln.mean(axis=(1, 2)), 0.0, atol=1e-12)
    np.testing.assert_allclose(Ln.std(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(Rn.std(axis=(1, 2)), 1.0)
    np.testing.assert_allclose(Ln[0], (L[0] - L[0].mean()) / L[0].std())
    np.testing.assert_allclose(sat, [0.0, 5 / 32])
    cv = np.minimum(L.std(axis=(1, 2)) / L.mean(axis=(1, 2)), R.std(axis=(1, 2)) / R.mean(axis=(1, 2)))
    np.testing.assert_allclose(texture, cv**2 / (cv**2 + 0.004**2))
    assert valid.tolist() == [True, True]
    # no white level (or 0): no saturation term
    assert pdaf._prepare(L, R, None, None)[3].tolist() == [0.0, 0.0]
    assert pdaf._prepare(L, R, 0.0, None)[3].tolist() == [0.0, 0.0]
    # gains multiply the views before normalising
    g = rng.uniform(0.5, 2.0, L.shape)
    Lg = pdaf._prepare(L, R, None, (g, np.ones_like(g)))[0]
    np.testing.assert_allclose(Lg, pdaf._prepare(L * g, R, None, None)[0])


def test_prepare_flags_flat_and_nonfinite_patches():
    L = np.stack([np.full((2, 8), 7.0), np.arange(16.0).reshape(2, 8), np.arange(16.0).reshape(2, 8),
                  np.arange(16.0).reshape(2, 8)])
    R = L.copy()
    R[2, 1, 1] = np.inf
    R[3] = -3.0                                 # flat right view, negative mean
    Ln, Rn, texture, sat, valid = pdaf._prepare(L, R, None, None)
    assert valid.tolist() == [False, True, False, False]
    assert texture[0] == 0.0
    assert np.all(np.isfinite(Ln)) and np.all(np.isfinite(Rn))


def test_tukey_window(monkeypatch):
    # _TUKEY = 0 (the setting): a box; 1: a Hann window sin^2(pi x) at the pixel centres x = (i + 0.5) / m;
    # 0.5: cosine tapers over the outer quarters and 1 in the middle half
    np.testing.assert_array_equal(pdaf_xcorr.taper_window(6), np.ones(6))
    monkeypatch.setattr(pdaf_xcorr, "_TUKEY", 1.0)
    x = (np.arange(8) + 0.5) / 8
    np.testing.assert_allclose(pdaf_xcorr.taper_window(8), np.sin(np.pi * x) ** 2)
    monkeypatch.setattr(pdaf_xcorr, "_TUKEY", 0.5)
    w = pdaf_xcorr.taper_window(8)
    np.testing.assert_allclose(w[2:6], 1.0)
    np.testing.assert_allclose(w[:2], 0.5 * (1 - np.cos(2 * np.pi * x[:2] / 0.5)))
    np.testing.assert_allclose(w[6:], w[:2][::-1])


def test_a_tapered_template_still_finds_the_shift(monkeypatch):
    monkeypatch.setattr(pdaf_xcorr, "_TUKEY", 0.5)
    L, R = rolled_pair([2, -3])
    np.testing.assert_allclose(estimate(L, R, max_shift=4).disparity_px, [2, -3], atol=0.1)


# ---------------------------------------------------------------- RoIs, windows and input checks


def test_crop_patches_takes_x_y_w_h():
    img = np.arange(20 * 30, dtype=np.float32).reshape(20, 30)
    L, R = crop_patches(img, img + 1000, np.array([[2, 3, 8, 4], [10, 0, 8, 4]]))
    np.testing.assert_array_equal(L[0], img[3:7, 2:10])
    np.testing.assert_array_equal(L[1], img[0:4, 10:18])
    np.testing.assert_array_equal(R[1], img[0:4, 10:18] + 1000)
    z = crop_patches(img, img, np.zeros((0, 4)))
    assert z[0].shape == z[1].shape == (0, 1, 8)
    with pytest.raises(BadInput, match=r"^crop_patches needs RoIs of one size, got \[\(8, 4\), \(9, 4\)\]$"):
        crop_patches(img, img, np.array([[0, 0, 8, 4], [0, 0, 9, 4]]))


def test_estimate_rois_groups_sizes_keeps_the_order_and_crops_the_gains():
    rng = np.random.default_rng(5)
    base = smooth(rng, 1, 24, 80)[0]
    left = 100 + 20 * base[:, 8:72]
    right = 100 + 20 * np.roll(base, 2, axis=1)[:, 8:72]
    g = rng.uniform(0.5, 1.5, left.shape)
    rois = np.array([[4, 2, 24, 8], [30, 10, 16, 6], [20, 12, 24, 8]])
    res = estimate_rois(left, right * g, rois, max_shift=4, gains=(np.ones_like(g), 1.0 / g))
    np.testing.assert_allclose(res.disparity_px, 2.0, atol=0.1)
    np.testing.assert_allclose(res.peak, 1.0, atol=1e-6)  # each RoI got its own part of the gain map
    one = estimate(*crop_patches(left, right, rois[1:2]), max_shift=4)
    assert res.confidence[1] == pytest.approx(one.confidence[0])
    seen = []

    def patches(sub):
        seen.append(sub.copy())
        return crop_patches(left, right, sub)

    w = estimate_windows(patches, rois, max_shift=4)
    np.testing.assert_allclose(w.disparity_px, res.disparity_px, atol=1e-9)
    assert sorted(len(s) for s in seen) == [1, 2]  # one call per RoI size
    empty = estimate_rois(left, right, np.zeros((0, 4)))
    assert empty.disparity_px.shape == empty.confidence.shape == empty.peak.shape == (0,)


def test_one_patch_and_an_empty_batch():
    L, R = rolled_pair([2])
    one = estimate(L[0], R[0], max_shift=4)
    assert one.disparity_px.shape == (1,) and one.disparity_px[0] == pytest.approx(2.0, abs=0.1)
    z = estimate(np.zeros((0, 4, 16)), np.zeros((0, 4, 16)))
    assert z.disparity_px.shape == z.confidence.shape == z.peak.shape == (0,)
    assert z.disparity_px.dtype == np.float64


def test_input_errors_name_what_is_wrong():
    a = np.zeros((1, 4, 16))
    cases = [
        (dict(left=a, right=a, method="magic"), r"^unknown PDAF method 'magic' \(known: xcorr, zncc, ssd\)$"),
        (dict(left=a, right=a, refine="cubic"), r"^unknown subpixel refinement 'cubic' \(known: upsample, parabola\)$"),
        (dict(left=np.zeros(5), right=a), r"^left: expected patches \[P, h, w\] or one patch \[h, w\], got shape \(5,\)$"),
        (dict(left=a, right=np.zeros((1, 1, 4, 16))), r"^right: expected patches \[P, h, w\] or one patch \[h, w\], got shape \(1, 1, 4, 16\)$"),
        (dict(left=a, right=a[:, :, :12]), r"^left \(1, 4, 16\) and right \(1, 4, 12\) patches differ in shape$"),
        (dict(left=a, right=a, max_shift=0.9), r"^max_shift must be >= 1 px, got 0\.9$"),
        (dict(left=np.zeros((1, 4, 7)), right=np.zeros((1, 4, 7))), r"^patches must be at least 8 px wide, got 7x4$"),
        (dict(left=np.zeros((1, 0, 16)), right=np.zeros((1, 0, 16))), r"^patches must be at least 8 px wide, got 16x0$"),
    ]
    for kw, msg in cases:
        with pytest.raises(BadInput, match=msg):
            estimate(**kw)
    assert estimate(np.zeros((1, 4, 8)), np.zeros((1, 4, 8)), max_shift=1).confidence[0] == 0.0  # 8 px is enough
