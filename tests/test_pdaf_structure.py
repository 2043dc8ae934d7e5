"""hil_af.pdaf.structure: the xcorr confidence alone, the values estimate gives, without the
disparity's sub-pixel refinement; the PE structure gate (controller views_structure) uses it, so
its decisions are those of the gate as it was defined (estimate_windows' confidence, parabola)."""

from __future__ import annotations

import numpy as np
import pytest

from hil_af.controller.methods import MethodConfig, views_structure
from hil_af.errors import BadInput
from hil_af.frames import DualPixelFrame
from hil_af.pdaf import estimate, estimate_windows, structure, windows_structure


def _pair(rng, P, h, w, shift, noise, kind):
    """Left/right patches [P, h, w] of one random texture, the right ``shift`` px to the right."""
    base = rng.uniform(0, 900, (P, h, w + 12))
    L = base[:, :, 6:6 + w] + rng.normal(0, noise, (P, h, w))
    R = base[:, :, 6 - shift:6 - shift + w] + rng.normal(0, noise, (P, h, w))
    if kind == "flat":
        L[0] = 500.0
    elif kind == "nan":
        R[0, 0, 0] = np.nan
    elif kind == "saturated":
        L[:, : h // 2] = 1023.0
    elif kind == "dark-noise":
        L, R = 2.0 + rng.normal(0, 1, L.shape), 2.0 + rng.normal(0, 1, R.shape)
    return L, R


CASES = [(P, h, w, shift, noise, kind, wl, ms)
         for P, h, w in ((12, 64, 64), (3, 16, 40), (1, 5, 8))
         for shift, noise, kind in ((0, 0.0, "plain"), (3, 5.0, "plain"), (-5, 60.0, "plain"), (2, 400.0, "plain"),
                                    (1, 2.0, "flat"), (1, 2.0, "nan"), (4, 3.0, "saturated"), (0, 0.0, "dark-noise"))
         for wl, ms in ((None, 8), (1023.0, 8), (959.0, 3))]


@pytest.mark.parametrize("P,h,w,shift,noise,kind,wl,ms", CASES)
def test_structure_is_estimates_xcorr_confidence_bit_for_bit(P, h, w, shift, noise, kind, wl, ms):
    rng = np.random.default_rng([P, h, w, shift + 10, ms, len(kind)])
    L, R = _pair(rng, P, h, w, shift, noise, kind)
    for dtype in (np.float32, np.float64):
        got = structure(L.astype(dtype), R.astype(dtype), max_shift=ms, white_level=wl)
        assert got.dtype == np.float64 and got.shape == (P,)
        for refine in ("parabola", "upsample"):
            want = estimate(L.astype(dtype), R.astype(dtype), method="xcorr", max_shift=ms, white_level=wl,
                            refine=refine).confidence
            assert got.tobytes() == want.tobytes(), (refine, got, want)


def test_structure_spans_both_sides_of_the_gate_threshold():
    """The cases above are no one-sided check: some pass the gate (0.05), some fail it."""
    rng = np.random.default_rng(3)
    values = np.concatenate([structure(*_pair(rng, 4, 32, 48, s, n, k), white_level=1023.0)
                             for s, n, k in ((2, 1.0, "plain"), (0, 0.0, "dark-noise"), (1, 2.0, "flat"))])
    gate = MethodConfig.pe_min_structure
    assert (values >= gate).any() and (values < gate).any()


def test_structure_checks_its_input_as_estimate_does():
    z = np.zeros((0, 8, 16))
    assert structure(z, z).shape == (0,)
    one = np.random.default_rng(1).uniform(1, 100, (8, 16))
    assert structure(one, one).shape == (1,)  # one patch [h, w]
    for left, right, ms in ((np.ones((2, 8, 16)), np.ones((2, 8, 17)), 8), (np.ones((2, 8, 16)), np.ones((2, 8, 16)), 0.5),
                            (np.ones((2, 8, 7)), np.ones((2, 8, 7)), 2), (np.ones((2, 2, 8, 16)), np.ones((2, 2, 8, 16)), 8)):
        with pytest.raises(BadInput):
            structure(left, right, max_shift=ms)
        with pytest.raises(BadInput):
            estimate(left, right, max_shift=ms)


def test_the_gate_decides_as_its_previous_definition_on_rois_of_mixed_sizes():
    """views_structure (windows_structure) vs the gate as defined before: estimate_windows' xcorr
    confidence with the parabola; the same values, so the same decisions, RoI for RoI."""
    rng = np.random.default_rng(5)
    H, W = 160, 240
    tex = rng.uniform(100, 900, (H, W + 4))
    left = tex[:, 2:W + 2] + rng.normal(0, 3, (H, W))
    right = tex[:, 0:W] + rng.normal(0, 3, (H, W))
    left[:, 150:] = 400.0 + rng.normal(0, 2, (H, 90))  # a flat strip: its RoIs fail the gate
    right[:, 150:] = 400.0 + rng.normal(0, 2, (H, 90))
    frame = DualPixelFrame(left.astype(np.float32), right.astype(np.float32), white_level=1023.0)
    rois = np.array([[0, 0, 64, 64], [160, 10, 64, 64], [20, 80, 32, 48], [170, 100, 32, 48], [60, 30, 64, 64]])
    got = views_structure(frame, rois)
    want = estimate_windows(frame.patches, rois, method="xcorr", max_shift=8, refine="parabola",
                            white_level=frame.white_level).confidence
    assert got.tobytes() == want.tobytes()
    gate = MethodConfig.pe_min_structure
    assert list(got >= gate) == [True, False, True, False, True]
    np.testing.assert_array_equal(windows_structure(frame.patches, rois, white_level=1023.0), got)


def test_windows_structure_passes_max_shift_and_white_level_on():
    """Per size group, windows_structure is structure with the caller's max_shift and white_level;
    the frame is made so that both matter (a 5 px shift beyond max_shift 3; a saturated band)."""
    rng = np.random.default_rng(11)
    H, W = 128, 200
    tex = rng.uniform(100, 900, (H, W + 10))
    left = tex[:, 5:W + 5] + rng.normal(0, 2, (H, W))
    right = tex[:, 0:W] + rng.normal(0, 2, (H, W))
    left[:24] = 1000.0  # saturated at white level 1000 (not at the default: none)
    frame = DualPixelFrame(left.astype(np.float32), right.astype(np.float32))
    rois = np.array([[10, 0, 64, 64], [100, 40, 64, 64], [30, 70, 40, 48]])
    got = windows_structure(frame.patches, rois, max_shift=3, white_level=1000.0)
    want = np.empty(3)
    want[:2] = structure(*frame.patches(rois[:2]), max_shift=3, white_level=1000.0)
    want[2:] = structure(*frame.patches(rois[2:]), max_shift=3, white_level=1000.0)
    assert got.tobytes() == want.tobytes()
    assert not np.allclose(windows_structure(frame.patches, rois), got)  # the defaults give other values
    assert not np.allclose(windows_structure(frame.patches, rois, max_shift=3), got)  # white_level matters


def test_windows_structure_takes_rois_as_floats_and_hands_the_patches_integers():
    """As estimate_windows: integral float RoIs are accepted, and ``patches`` gets them as integers
    (a window decoder that slices with the values it is given cannot take floats)."""
    rng = np.random.default_rng(12)
    img = rng.uniform(100, 900, (16, 48))
    seen = []

    def patches(sub):
        seen.append(sorted({(r[2], r[3]) for r in sub.tolist()}))
        crop = [img[y:y + h, x:x + w] for x, y, w, h in sub]
        return np.stack(crop), np.stack(crop)

    rois = np.array([[0.0, 0.0, 16.0, 8.0], [20.0, 2.0, 12.0, 8.0], [4.0, 4.0, 16.0, 8.0]])  # two widths
    got = windows_structure(patches, rois, max_shift=2)
    assert sorted(seen) == [[(12, 8)], [(16, 8)]]
    ints = rois.astype(np.int64)
    want = np.empty(3)
    want[[0, 2]] = structure(*patches(ints[[0, 2]]), max_shift=2)
    want[1:2] = structure(*patches(ints[1:2]), max_shift=2)
    assert got.tobytes() == want.tobytes()
    assert (got > 0).all()


# ---------------------------------------------------------------- the gate's bounds (structure_at_least)


@pytest.mark.parametrize("tukey", [0.0, 0.5])
@pytest.mark.parametrize("P,h,w,shift,noise,kind,wl,ms", CASES[::3])
def test_score_at_zero_is_the_full_searchs_shift_zero_column(P, h, w, shift, noise, kind, wl, ms, tukey, monkeypatch):
    """pdaf_xcorr.score_at_zero == scores(...)[0][:, S], box and Tukey template alike."""
    from hil_af import pdaf, pdaf_xcorr

    monkeypatch.setattr(pdaf_xcorr, "_TUKEY", tukey)
    L, R = _pair(np.random.default_rng(P + h + shift), P, h, w, shift, noise, kind)
    L, R, S = pdaf._batches(L, R, "xcorr", ms)
    Ln, Rn, *_ = pdaf._prepare(L, R, wl, None)
    want = pdaf_xcorr.scores(Ln, Rn, S)[0][:, S]
    np.testing.assert_allclose(pdaf_xcorr.score_at_zero(Ln, Rn, S), want, rtol=0, atol=1e-12)


@pytest.mark.parametrize("P,h,w,shift,noise,kind,wl,ms", CASES)
def test_structure_at_least_decides_as_structure_at_every_threshold(P, h, w, shift, noise, kind, wl, ms):
    """The same decision as ``structure >= t`` for thresholds around every RoI's own value (the
    bounds may settle a RoI only where they are sure) and at the ends."""
    from hil_af.pdaf import structure_at_least

    L, R = _pair(np.random.default_rng(7 * P + w + shift), P, h, w, shift, noise, kind)
    c = structure(L, R, max_shift=ms, white_level=wl)
    for t in sorted({0.0, 1e-9, 0.05, 0.5, 1.0, *c.tolist(), *np.nextafter(c, 2.0).tolist(), *(0.999 * c).tolist()}):
        got = structure_at_least(L, R, t, max_shift=ms, white_level=wl)
        assert got.dtype == bool and got.tolist() == (c >= t).tolist(), (t, c)


def test_structure_at_least_skips_the_search_where_the_bound_settles(monkeypatch):
    """Textured views at a small disparity pass on the shift-0 bound alone: no +-8 px search; a RoI
    of unrelated views (noise against texture) is searched, alone."""
    from hil_af import pdaf

    calls = []
    real = pdaf._xcorr_scores
    monkeypatch.setattr(pdaf, "_xcorr_scores", lambda L, R, S: calls.append(len(L)) or real(L, R, S))
    rng = np.random.default_rng(3)
    k = np.ones(5) / 5  # a smooth texture (defocused content is): its correlation at 1 px is high
    base = np.apply_along_axis(np.convolve, 2, rng.uniform(0, 900, (12, 64, 80)), k, "same")
    base = np.apply_along_axis(np.convolve, 1, base, k, "same")
    L, R = base[:, :, 8:72] + rng.normal(0, 2, (12, 64, 64)), base[:, :, 7:71] + rng.normal(0, 2, (12, 64, 64))
    assert pdaf.structure_at_least(L, R, 0.05, max_shift=8, white_level=1023.0).all()
    assert calls == []
    R[5] = rng.uniform(0, 900, (64, 64))  # RoI 5: the right view holds other content
    ok = pdaf.structure_at_least(L, R, 0.05, max_shift=8, white_level=1023.0)
    assert calls == [1] and ok.tolist() == (structure(L, R, max_shift=8, white_level=1023.0) >= 0.05).tolist()


def test_the_pe_gate_decides_with_the_bounds_as_views_structure_does():
    """The controller's gate (views_have_structure, what _pe_step applies) against views_structure on
    a frame with textured, flat and unrelated RoIs of two sizes."""
    from hil_af.controller.methods import views_have_structure

    rng = np.random.default_rng(11)
    base = rng.uniform(100, 900, (240, 330))
    L, R = base[:, 2:322].copy(), base[:, :320].copy()
    L[:60, :80] = 400.0  # a flat corner
    R[100:180, 200:300] = rng.uniform(100, 900, (80, 100))  # unrelated views there
    L[190:240, 250:320] = R[190:240, 250:320] = 1023.0  # a saturated corner (white level 1023)
    L[185:190, 250:320] = R[185:190, 250:320] = rng.uniform(100, 900, (5, 70))
    frame = DualPixelFrame(L, R, white_level=1023.0)
    rois = np.array([[0, 0, 64, 48], [90, 10, 64, 48], [200, 110, 64, 48], [10, 150, 40, 40], [230, 120, 40, 40],
                     [260, 180, 40, 40]])
    want = views_structure(frame, rois)
    for t in (0.0, 0.05, float(np.median(want)), 0.9):
        got = views_have_structure(frame, rois, t)
        assert got.dtype == bool and got.tolist() == (want >= t).tolist(), (t, want)
    assert views_have_structure(frame, rois, 0.05).tolist() == [False, True, False, True, False, False]


def test_structure_at_least_at_zero_passes_a_mostly_saturated_roi():
    """structure >= 0 holds for every RoI, a RoI more than half saturated included (its saturation
    term 1 - 2 x fraction is clipped to 0, not negative)."""
    from hil_af.pdaf import structure_at_least

    L, R = _pair(np.random.default_rng(5), 2, 32, 48, 1, 2.0, "plain")
    L[0, :24] = R[0, :24] = 1023.0  # 75 % of RoI 0's rows saturated
    assert structure(L, R, max_shift=8, white_level=1023.0)[0] == 0.0
    assert structure_at_least(L, R, 0.0, max_shift=8, white_level=1023.0).tolist() == [True, True]


def test_the_lower_bound_is_tight_and_never_settles_above_the_value():
    """Columns alternating 100 / 900 in both views: every even shift scores 1, so the peak is the
    search's first shift (edge term 0.5) and other maxima equal it (uniqueness 0): the confidence is
    exactly 0.125 x texture x saturation term, the bound itself.  Just above it the RoI fails, at it
    it passes: a looser factor than 0.125 would settle it wrongly."""
    from hil_af.pdaf import structure_at_least

    row = np.where(np.arange(64) % 2 == 0, 100.0, 900.0)
    L = np.broadcast_to(row, (2, 32, 64)).copy()
    c = structure(L, L.copy(), max_shift=8, white_level=1023.0)
    assert c[0] > 0.1 and np.allclose(c, c[0])
    assert structure_at_least(L, L.copy(), float(c[0]), max_shift=8, white_level=1023.0).all()
    assert not structure_at_least(L, L.copy(), float(np.nextafter(c[0], 1.0)), max_shift=8, white_level=1023.0).any()
