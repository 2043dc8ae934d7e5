"""The five-channel PE-model encoding (numpy only)."""

import numpy as np
import pytest

from hil_af.errors import BadInput
from hil_af.model.encoding import (
    EncodingConfig,
    encode_fitted,
    encode_frame_rois,
    fit_patch,
    lens_pe_value,
    normalise_views,
    pe_planes,
    resample_matrix,
)


def _views(h=48, w=80, seed=0):
    rng = np.random.default_rng(seed)
    left = rng.uniform(50, 200, (h, w)).astype(np.float32)
    right = rng.uniform(50, 200, (h, w)).astype(np.float32)
    return left, right


def test_roi_pe_of_a_cropped_frame_uses_full_plane_coordinates():
    # frame cropped at origin (y0, x0) = (100, 40) of a 256 x 384 sensor; RoI (x=8, y=4, 64, 64) in view px
    cfg = EncodingConfig()
    left, right = _views(96, 128)
    x = encode_frame_rois(left, right, np.array([[8, 4, 64, 64]]), origin=(100, 40), sensor_hw=(256, 384),
                          slice_index=0, n_slices=49, cfg=cfg)
    assert x.shape == (1, 5, 64, 64)
    # pixel (y, x) = (0, 0) of the patch is view (4, 8) -> full (104, 48)
    assert x[0, 2, 0, 0] == pytest.approx(2 * (48 + 0.5) / 384 - 1)
    assert x[0, 3, 0, 0] == pytest.approx(2 * (104 + 0.5) / 256 - 1)
    # last pixel (63, 63) -> full (167, 111)
    assert x[0, 2, 63, 63] == pytest.approx(2 * (111 + 0.5) / 384 - 1)
    assert x[0, 3, 63, 63] == pytest.approx(2 * (167 + 0.5) / 256 - 1)
    # x varies along columns only, y along rows only
    assert np.ptp(x[0, 2], axis=0).max() == 0 and np.ptp(x[0, 3], axis=1).max() == 0


def test_pe_of_whole_sensor_spans_minus_one_to_one():
    px, py = pe_planes(np.array([0, 0, 384, 256]), (256, 384), 64, "area")
    # 384 / 64 = 6 px per output column: first centre at x = 3; 256 / 64 = 4 px per row: y = 2
    assert px[0, 0] == pytest.approx(-1 + 6 / 384) and px[0, -1] == pytest.approx(1 - 6 / 384)
    assert py[0, 0] == pytest.approx(-1 + 4 / 256) and py[-1, 0] == pytest.approx(1 - 4 / 256)
    assert np.all(np.abs(px) < 1) and np.all(np.abs(py) < 1)


@pytest.mark.parametrize("k,n,expected", [(0, 49, 0.0), (48, 49, 1.0), (12, 49, 0.25), (1, 3, 0.5)])
def test_lens_pe_plane(k, n, expected):
    left, right = _views()
    x = encode_frame_rois(left, right, np.array([[0, 0, 64, 48]]), (0, 0), (48, 80), k, n, EncodingConfig())
    assert np.all(x[0, 4] == np.float32(expected))
    assert lens_pe_value(k, n) == pytest.approx(expected)


@pytest.mark.parametrize("k,n", [(-1, 49), (49, 49), (0, 1)])
def test_lens_pe_rejects_bad_slice(k, n):
    with pytest.raises(BadInput):
        lens_pe_value(k, n)


def test_ablation_switches_give_zero_planes_and_keep_five_channels():
    left, right = _views()
    rois = np.array([[3, 5, 64, 40]])
    full = encode_frame_rois(left, right, rois, (0, 0), (48, 80), 7, 9, EncodingConfig())
    x = encode_frame_rois(left, right, rois, (0, 0), (48, 80), 7, 9, EncodingConfig(roi_pe=False, lens_pe=False))
    assert x.shape == full.shape == (1, 5, 64, 64)
    assert np.all(x[:, 2:] == 0) and np.any(full[:, 2:4] != 0) and np.all(full[:, 4] == 7 / 8)
    np.testing.assert_array_equal(x[:, :2], full[:, :2])


@pytest.mark.parametrize("n_in,n_out,tol", [(37, 64, 0.25), (64, 64, 1e-9), (101, 64, 0.25), (128, 64, 1e-9), (5, 8, 0.25)])
def test_area_resampling_preserves_mean_and_ramps(n_in, n_out, tol):
    m = resample_matrix(n_in, n_out)
    np.testing.assert_allclose(m.sum(axis=1), 1.0, atol=1e-12)
    # total mass: every input pixel contributes n_out/n_in in all
    np.testing.assert_allclose(m.sum(axis=0), n_out / n_in, atol=1e-12)
    # pixel-centre ramp -> output cell centres: exact for integer factors, within 1/4 input px otherwise
    ramp = np.arange(n_in) + 0.5
    np.testing.assert_allclose(m @ ramp, (np.arange(n_out) + 0.5) * n_in / n_out, atol=tol)


def test_odd_roi_sizes_are_fitted_consistently_with_pe():
    # a view whose value is the full-plane x coordinate: the resampled patch must equal the PE centres
    H, W = 120, 200
    view = np.tile(np.arange(W, dtype=np.float32) + 0.5, (H, 1))
    for fit in ("area", "crop"):
        for roi in ([11, 3, 101, 77], [0, 0, 37, 50], [20, 10, 64, 64]):
            p = fit_patch(view, roi, 64, fit)
            assert p.shape == (64, 64)
            px, _ = pe_planes(np.array(roi), (H, W), 64, fit)
            np.testing.assert_allclose(p, (px + 1) * W / 2, atol=0.25)  # within 1/4 px of the PE centre
    # crop keeps pixel scale: a 101-wide RoI cropped gives consecutive pixels centred in the RoI
    p = fit_patch(view, [11, 3, 101, 77], 64, "crop")
    assert p[0, 0] == pytest.approx(11 + (101 - 64) // 2 + 0.5) and p[0, 1] - p[0, 0] == pytest.approx(1.0)


def test_roi_outside_view_is_bad_input():
    left, _ = _views(48, 80)
    with pytest.raises(BadInput, match="not inside"):
        fit_patch(left, [40, 0, 64, 48], 64, "crop")


def test_normalisation_removes_per_view_gain_and_keeps_relative_contrast():
    left, right = _views(64, 64, seed=3)
    nl, nr = normalise_views(left, right)
    gl, gr = normalise_views(3.0 * left, 0.5 * right)  # different vignetting gain per view
    np.testing.assert_allclose(gl, nl, atol=1e-4)
    np.testing.assert_allclose(gr, nr, atol=1e-4)
    assert abs(nl.mean()) < 1e-4 and abs(nr.mean()) < 1e-4
    assert 0.5 * (nl.var() + nr.var()) == pytest.approx(1.0, rel=1e-2)  # eps=1e-3 on the std
    # a flat right view and a textured left one: common std keeps right ~0 instead of amplifying noise
    fl, fr = normalise_views(left, np.full_like(right, 100.0))
    assert np.abs(fr).max() < 1e-5 and fl.std() > 1.0


def test_normalisation_is_bit_identical_to_its_plain_float32_formula():
    """(v / max(mean v, eps) - 1) / (sqrt(mean of the two views' squares / 2) + eps), all in float32,
    written out plainly; batched over leading axes, any input dtype."""
    rng = np.random.default_rng(8)
    for t in range(60):
        shape = tuple(int(v) for v in rng.integers(1, 20, 2 + t % 3))
        left = (rng.uniform(0, 1000, shape) * [1e-6, 1.0, 1e3][t % 3]).astype([np.float32, np.float64, np.uint16][t % 3])
        right = np.zeros(shape, np.float32) if t % 7 == 0 else rng.uniform(0, 1000, shape).astype(np.float32)
        eps = [1e-3, 0.5][t % 2]
        got = normalise_views(left, right, eps)
        lf, rf = np.float32(left), np.float32(right)
        ax = (-2, -1)
        nl = lf / np.maximum(lf.mean(axis=ax, keepdims=True), np.float32(eps)) - np.float32(1)
        nr = rf / np.maximum(rf.mean(axis=ax, keepdims=True), np.float32(eps)) - np.float32(1)
        sd = np.sqrt(np.float32(0.5) * ((nl * nl).mean(axis=ax, keepdims=True) + (nr * nr).mean(axis=ax, keepdims=True)))
        sd = sd + np.float32(eps)
        for g, e in zip(got, (nl / sd, nr / sd)):
            assert g.dtype == np.float32
            np.testing.assert_array_equal(g, e)


def test_normalisation_into_given_arrays_writes_every_value_as_without_them():
    """``out=``: the same float32 values written into the given arrays (NaN-filled here, so a value
    left unwritten shows), also into the strided channel views of a [B, 5, S, S] tensor."""
    rng = np.random.default_rng(9)
    left = rng.uniform(0, 1000, (3, 16, 16)).astype(np.float32)
    right = rng.uniform(0, 1000, (3, 16, 16)).astype(np.float32)
    want = normalise_views(left, right, 1e-3)
    plain = (np.full((3, 16, 16), np.nan, np.float32), np.full((3, 16, 16), np.nan, np.float32))
    tensor = np.full((3, 5, 16, 16), np.nan, np.float32)
    for out in (plain, (tensor[:, 0], tensor[:, 1])):
        got = normalise_views(left, right, 1e-3, out=out)
        for g, o, w in zip(got, out, want):
            assert g is o
            np.testing.assert_array_equal(o, w)
    assert np.isnan(tensor[:, 2:]).all()


def test_encode_fitted_fills_every_channel_for_each_ablation():
    """Channels 0-1 the normalised views, 2-3 the RoI-PE ramps or zeros, 4 k / (n - 1) or zeros."""
    rng = np.random.default_rng(10)
    left = rng.uniform(10, 1000, (2, 32, 32)).astype(np.float32)
    right = rng.uniform(10, 1000, (2, 32, 32)).astype(np.float32)
    rois = np.array([[0, 0, 32, 32], [64, 32, 32, 32]])
    nl, nr = normalise_views(left, right, 1e-3)
    for roi_pe in (True, False):
        for lens_pe in (True, False):
            x = encode_fitted(left, right, rois, (64, 128), np.array([3, 6]), 9,
                              EncodingConfig(size=32, roi_pe=roi_pe, lens_pe=lens_pe))
            np.testing.assert_array_equal(x[:, 0], nl)
            np.testing.assert_array_equal(x[:, 1], nr)
            if roi_pe:  # x of the first column of RoI 1: 2 * (64 + 0.5) / 128 - 1
                assert x[1, 2, 5, 0] == np.float32(2 * 64.5 / 128 - 1) and x[1, 3, 0, 5] == np.float32(2 * 32.5 / 64 - 1)
            else:
                assert np.all(x[:, 2:4] == 0)
            assert np.all(x[0, 4] == (np.float32(3 / 8) if lens_pe else 0)) and np.all(x[1, 4] == (np.float32(6 / 8) if lens_pe else 0))


def test_flatfield_callable_is_applied_with_full_plane_roi():
    left, right = _views(96, 128)
    seen = []

    def ff(lp, rp, roi_full, sensor_hw):
        seen.append((roi_full, sensor_hw, lp.shape))
        return lp * 2.0, rp

    cfg = EncodingConfig()
    a = encode_frame_rois(left, right, np.array([[8, 4, 64, 64]]), (100, 40), (256, 384), 3, 9, cfg, flatfield=ff)
    b = encode_frame_rois(left, right, np.array([[8, 4, 64, 64]]), (100, 40), (256, 384), 3, 9, cfg)
    assert seen == [((48, 104, 64, 64), (256, 384), (64, 64))]
    np.testing.assert_allclose(a, b, atol=1e-4)  # a pure gain is removed by the per-view normalisation


def test_encode_fitted_checks_shapes():
    with pytest.raises(BadInput, match="patches must be"):
        encode_fitted(np.zeros((2, 32, 32)), np.zeros((2, 32, 32)), np.zeros((2, 4)), (64, 64), 0, 9, EncodingConfig())


def test_config_roundtrip_and_validation():
    cfg = EncodingConfig(size=32, roi_pe=False, fit="area")
    assert EncodingConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(BadInput):
        EncodingConfig(fit="stretch")
    with pytest.raises(BadInput, match="lacks"):
        EncodingConfig.from_dict({"size": 64})


@pytest.mark.parametrize("fit", ["crop", "area"])
def test_encode_fitted_planes_are_pe_planes_of_each_roi(fit):
    """The batch's RoI-PE and lens-PE channels, filled at once, are pe_planes / lens_pe_value per RoI."""
    rng = np.random.default_rng(2)
    rois = np.array([[0, 0, 64, 64], [37, 11, 20, 90], [300, 200, 100, 16], [5, 170, 64, 32]])
    cfg = EncodingConfig(size=32, fit=fit)
    ks = np.array([0, 7, 48, 20])
    x = encode_fitted(rng.normal(100, 5, (4, 32, 32)), rng.normal(100, 5, (4, 32, 32)), rois, (256, 384), ks, 49, cfg)
    for b, roi in enumerate(rois):
        px, py = pe_planes(roi, (256, 384), 32, fit)
        np.testing.assert_array_equal(x[b, 2], px)
        np.testing.assert_array_equal(x[b, 3], py)
        assert np.all(x[b, 4] == np.float32(lens_pe_value(int(ks[b]), 49)))
    with pytest.raises(BadInput, match="slice index 49 is outside"):
        encode_fitted(np.zeros((1, 32, 32)), np.zeros((1, 32, 32)), rois[:1], (256, 384), 49, 49, cfg)


def test_config_writes_the_shipped_cards_encoding_block_and_reads_every_key():
    """The card's ``encoding`` block (models/card.json, read by inference) is what training writes;
    from_dict takes every setting back, and names all missing required keys."""
    import json

    from hil_af.paths import models_dir

    shipped = json.loads((models_dir() / "card.json").read_text())["encoding"]
    assert EncodingConfig().to_dict() == shipped
    cfg = EncodingConfig(size=32, roi_pe=False, lens_pe=False, fit="area", eps=0.25)
    assert EncodingConfig.from_dict({**cfg.to_dict()}) == cfg
    assert EncodingConfig.from_dict({"size": 16, "roi_pe": True, "lens_pe": False}) == EncodingConfig(size=16, lens_pe=False)
    with pytest.raises(BadInput, match=r"^encoding config lacks roi_pe, lens_pe$"):
        EncodingConfig.from_dict({"size": 64})


@pytest.mark.parametrize("n_in,n_out", [(0, 4), (4, 0), (0, 0), (-1, 3)])
def test_resample_sizes_below_one_are_bad_input(n_in, n_out):
    with pytest.raises(BadInput, match=rf"^resample sizes must be >= 1, got {n_in} -> {n_out}$"):
        resample_matrix(n_in, n_out)


def test_resample_of_one_pixel_and_to_one_pixel():
    np.testing.assert_array_equal(resample_matrix(1, 1), [[1.0]])
    np.testing.assert_allclose(resample_matrix(1, 3), [[1.0], [1.0], [1.0]], rtol=1e-12)  # each cell inside the pixel
    np.testing.assert_allclose(resample_matrix(4, 1), [[0.25, 0.25, 0.25, 0.25]])  # the mean of the four


def test_pe_planes_are_float32_on_both_axes():
    px, py = pe_planes(np.array([10, 20, 64, 64]), (200, 300), 64, "crop")
    assert px.dtype == np.float32 and py.dtype == np.float32 and px.shape == py.shape == (64, 64)
    # pixel centres: x = 2 (10 + c + 0.5) / 300 - 1, y = 2 (20 + r + 0.5) / 200 - 1
    assert px[0, 0] == np.float32(2 * 10.5 / 300 - 1) and py[0, 0] == np.float32(2 * 20.5 / 200 - 1)


def test_flatfield_receives_the_rois_own_pixels():
    """On a view whose width is not twice the RoI's, with two RoIs at different places."""
    left, right = _views(90, 150, seed=3)
    seen = []

    def ff(lp, rp, roi_full, sensor_hw):
        seen.append((lp.copy(), rp.copy(), roi_full))
        return lp, rp

    rois = np.array([[5, 7, 40, 30], [100, 50, 33, 21]])
    cfg = EncodingConfig(size=16)  # RoIs larger than the patch: centre-cropped, as without a flat field
    x = encode_frame_rois(left, right, rois, (3, 11), (120, 200), 1, 5, cfg, flatfield=ff)
    np.testing.assert_array_equal(x, encode_frame_rois(left, right, rois, (3, 11), (120, 200), 1, 5, cfg))
    for (lp, rp, full), (x, y, w, h) in zip(seen, rois):
        np.testing.assert_array_equal(lp, left[y : y + h, x : x + w])
        np.testing.assert_array_equal(rp, right[y : y + h, x : x + w])
        assert full == (x + 11, y + 3, w, h)


def test_an_odd_crop_margin_rounds_the_crop_start_down_in_pixels_and_pe():
    """A 67 x 20 RoI into 64 px, crop fit: columns x + 1 .. x + 64 (margin 3 // 2 = 1), so the RoI-PE of
    column c is at full-plane x + 1 + c + 0.5, the same pixel centres the patch holds."""
    W, H = 200, 100
    view = np.tile(np.arange(W, dtype=np.float32) + 0.5, (H, 1))
    roi = np.array([20, 30, 67, 20])
    p = fit_patch(view, roi, 64, "crop")
    assert p[0, 0] == 21.5 and p[0, 63] == 84.5
    x = encode_fitted(p[None], p[None], roi[None], (H, W), 0, 5, EncodingConfig())
    np.testing.assert_allclose(x[0, 2, 0], 2 * (21 + np.arange(64) + 0.5) / W - 1, atol=1e-6)


def test_fit_patch_returns_float32_and_names_the_view_in_its_refusal():
    p = fit_patch(np.arange(80 * 48, dtype=np.uint16).reshape(48, 80), [3, 4, 37, 29], 16, "area")
    assert p.dtype == np.float32 and p.shape == (16, 16)
    with pytest.raises(BadInput, match=r"^RoI \(x=40, y=0, w=64, h=48\) is not inside the 80x48 view$"):
        fit_patch(np.zeros((48, 80)), [40, 0, 64, 48], 64, "crop")


def test_two_slices_are_the_shortest_sweep():
    assert (lens_pe_value(0, 2), lens_pe_value(1, 2)) == (0.0, 1.0)
    with pytest.raises(BadInput, match=r"^n_slices must be >= 2, got 1$"):
        lens_pe_value(0, 1)


def test_encode_fitted_checks_both_views_and_uses_the_configs_eps():
    rng = np.random.default_rng(4)
    good = rng.uniform(1, 3, (2, 16, 16)).astype(np.float32)
    for left, right in ((good, good[:, :8]), (good[:, :8], good)):
        with pytest.raises(BadInput, match="patches must be"):
            encode_fitted(left, right, np.zeros((2, 4)), (64, 64), 0, 9, EncodingConfig(size=16))
    cfg = EncodingConfig(size=16, eps=0.5)  # eps bounds the views' mean and pads their std
    x = encode_fitted(good, good[::-1], np.zeros((2, 4), int), (64, 64), 0, 9, cfg)
    nl, nr = normalise_views(good, good[::-1], 0.5)
    np.testing.assert_array_equal(x[:, 0], nl)
    np.testing.assert_array_equal(x[:, 1], nr)
    assert not np.allclose(nl, normalise_views(good, good[::-1])[0])


def test_without_lens_pe_the_slice_index_is_still_checked():
    cfg = EncodingConfig(size=16, lens_pe=False)
    z = np.ones((2, 16, 16), np.float32)
    x = encode_fitted(z, z, np.zeros((2, 4), int), (64, 64), np.array([0, 8]), 9, cfg)  # the first and last slice
    assert np.all(x[:, 4] == 0)
    for k in (9, -1):
        with pytest.raises(BadInput, match=rf"^slice index {k} is outside \[0, 9\)$"):
            encode_fitted(z, z, np.zeros((2, 4), int), (64, 64), np.array([0, k]), 9, cfg)


def test_config_refusals_name_the_bad_value():
    assert EncodingConfig(size=8).size == 8  # the smallest patch
    for kw, msg in (({"size": 7}, r"^encoding size must be >= 8, got 7$"),
                    ({"fit": "zoom"}, r"^encoding fit must be 'crop' or 'area', got 'zoom'$"),
                    ({"norm": "global"}, r"^encoding norm must be 'view-mean', got 'global'$")):
        with pytest.raises(BadInput, match=msg):
            EncodingConfig(**kw)


def test_normalisation_computes_in_float32_whatever_the_input_dtype():
    left, right = _views(16, 16, seed=9)
    nl, nr = normalise_views(left.astype(np.float64), right.astype(np.float64))
    assert nl.dtype == nr.dtype == np.float32
    ref_l, ref_r = normalise_views(left, right)
    np.testing.assert_array_equal(nl, ref_l)
    np.testing.assert_array_equal(nr, ref_r)
