"""Classical PDAF estimators (hil_af.pdaf) on synthetic patches with known shifts."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil_af.errors import BadInput
from hil_af.pdaf import METHODS, crop_patches, estimate, estimate_rois


def texture(rng, P, h, w, sigma=1.5):
    """Smooth random texture [P, h, w] (Gaussian-filtered white noise, unit-ish std)."""
    a = rng.standard_normal((P, h, w))
    fx = np.fft.rfftfreq(w)
    fy = np.fft.fftfreq(h)
    G = np.exp(-2 * (np.pi * sigma) ** 2 * (fx[None, :] ** 2 + fy[:, None] ** 2))
    t = np.fft.irfft2(np.fft.rfft2(a) * G, s=(h, w))
    return t / t.std(axis=(1, 2), keepdims=True)


def shift_x(a, d):
    """a(x - d): the patch moved to the right by d px (Fourier shift, periodic)."""
    f = np.fft.rfftfreq(a.shape[-1])
    d = np.asarray(d, dtype=np.float64).reshape(-1, 1, 1)
    return np.fft.irfft(np.fft.rfft(a, axis=-1) * np.exp(-2j * np.pi * f * d), n=a.shape[-1], axis=-1)


def pair(rng, d, h=64, w=64, mean=200.0, contrast=40.0, noise=0.0, gain_right=1.0):
    """Left/right patches [P, h, w] where the right view is the left moved right by d px."""
    P = len(d)
    base = texture(rng, P, h, 2 * w)
    L = mean + contrast * base[:, :, w // 2:w // 2 + w]
    R = mean + contrast * shift_x(base, d)[:, :, w // 2:w // 2 + w]
    L = L + rng.normal(0, noise, L.shape) if noise else L
    R = R + rng.normal(0, noise, R.shape) if noise else R
    return L.astype(np.float32), (R * gain_right).astype(np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_subpixel_shifts_recovered_with_the_contract_sign(method):
    rng = np.random.default_rng(1)
    d = rng.uniform(-6, 6, 64)
    L, R = pair(rng, d)
    res = estimate(L, R, method=method, max_shift=8)
    assert res.disparity_px.shape == (64,)
    err = res.disparity_px - d
    assert np.sqrt(np.mean(err**2)) < 0.05, method
    assert np.all(res.confidence > 0.8)
    # swapping the views flips the sign
    back = estimate(R, L, method=method, max_shift=8)
    np.testing.assert_allclose(back.disparity_px, -d, atol=0.15)


def test_integer_roll_sign_is_positive_when_right_view_moves_right():
    rng = np.random.default_rng(2)
    img = texture(rng, 1, 48, 96)[0] * 30 + 100
    L = img[:, 20:84]
    R = np.roll(img, 3, axis=1)[:, 20:84]  # R(x) = img(x - 3): moved right by 3 px
    for m in METHODS:
        assert estimate(L, R, method=m).disparity_px[0] == pytest.approx(3.0, abs=0.05)


@pytest.mark.parametrize("method", METHODS)
def test_view_gain_difference_does_not_bias(method):
    """Per-view vignetting: the right view 40 % darker must not change the shift."""
    rng = np.random.default_rng(3)
    d = rng.uniform(-4, 4, 32)
    L, R = pair(rng, d, gain_right=0.6)
    res = estimate(L, R, method=method)
    assert np.sqrt(np.mean((res.disparity_px - d) ** 2)) < 0.05


def test_upsampled_refinement_beats_parabola_on_noisy_texture():
    rng = np.random.default_rng(4)
    d = rng.uniform(-5, 5, 300)
    L, R = pair(rng, d, noise=12.0)  # contrast 40 -> SNR ~ 3
    up = estimate(L, R, refine="upsample").disparity_px - d
    pa = estimate(L, R, refine="parabola").disparity_px - d
    assert np.sqrt(np.mean(up**2)) < np.sqrt(np.mean(pa**2))


def test_noise_lowers_confidence_monotonically():
    rng = np.random.default_rng(5)
    d = rng.uniform(-3, 3, 64)
    confs = []
    for noise in (0.0, 10.0, 40.0, 160.0):
        L, R = pair(np.random.default_rng(5), d, noise=noise)
        confs.append(float(np.median(estimate(L, R).confidence)))
    assert confs[0] > confs[1] > confs[2] > confs[3]
    assert confs[0] > 0.9 and confs[3] < 0.2


@pytest.mark.parametrize("method", METHODS)
def test_flat_noise_saturated_and_nonfinite_patches_give_low_confidence_never_nan(method):
    rng = np.random.default_rng(6)
    flat = np.full((64, 64), 500.0, np.float32)
    zero = np.zeros((64, 64), np.float32)
    noise_only = 500 + rng.normal(0, 5, (2, 64, 64)).astype(np.float32)
    sat = np.full((64, 64), 1023.0, np.float32)
    nan = flat.copy()
    nan[3, 4] = np.nan
    inf = flat.copy()
    inf[0, 0] = np.inf
    L = np.stack([flat, zero, noise_only[0], sat, nan, inf])
    R = np.stack([flat, zero, noise_only[1], sat, nan, inf])
    res = estimate(L, R, method=method, white_level=1023.0)
    assert np.all(np.isfinite(res.disparity_px)) and np.all(np.isfinite(res.confidence))
    assert res.confidence[[0, 1, 3, 4, 5]].max() == 0.0
    assert res.confidence[2] < 0.1
    np.testing.assert_array_equal(res.disparity_px[[0, 1, 4, 5]], 0.0)


def test_partly_saturated_texture_is_penalised():
    rng = np.random.default_rng(7)
    d = np.full(2, 2.0)
    L, R = pair(rng, d, mean=900, contrast=150)
    clean = estimate(L, R, white_level=4095.0).confidence
    clipped = estimate(np.minimum(L, 900), np.minimum(R, 900), white_level=900.0).confidence
    assert np.all(clipped < 0.5 * clean)


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), scale=st.sampled_from([0.0, 1e-6, 1.0, 1e4]),
       method=st.sampled_from(METHODS), h=st.integers(1, 12), w=st.integers(8, 40))
def test_any_input_gives_finite_estimates_and_confidence_in_unit_range(seed, scale, method, h, w):
    rng = np.random.default_rng(seed)
    L = (rng.random((3, h, w)) * scale).astype(np.float32)
    R = (rng.random((3, h, w)) * scale).astype(np.float32)
    res = estimate(L, R, method=method, max_shift=8)
    assert np.all(np.isfinite(res.disparity_px))
    assert np.all((res.confidence >= 0) & (res.confidence <= 1))
    assert np.all(np.abs(res.disparity_px) <= 8.5)


def test_bad_input_is_rejected_with_a_clear_error():
    a = np.zeros((2, 16, 16), np.float32)
    with pytest.raises(BadInput, match="unknown PDAF method"):
        estimate(a, a, method="magic")
    with pytest.raises(BadInput, match="differ in shape"):
        estimate(a, a[:, :, :12])
    with pytest.raises(BadInput, match="max_shift"):
        estimate(a, a, max_shift=0)
    with pytest.raises(BadInput, match=r"\[P, h, w\]"):
        estimate(np.zeros(5), np.zeros(5))
    with pytest.raises(BadInput, match="at least 8 px wide"):
        estimate(np.zeros((1, 8, 4)), np.zeros((1, 8, 4)))
    assert estimate(np.zeros((0, 8, 16)), np.zeros((0, 8, 16))).disparity_px.shape == (0,)


def test_estimate_rois_groups_sizes_and_crops_gains():
    rng = np.random.default_rng(8)
    img = texture(rng, 1, 128, 192)[0] * 30 + 300
    left = img[:, 16:176]
    right = np.roll(img, 2, axis=1)[:, 16:176]
    rois = np.array([[10, 10, 64, 64], [80, 40, 48, 48], [90, 60, 64, 64]], np.int32)
    res = estimate_rois(left, right, rois)
    np.testing.assert_allclose(res.disparity_px, 2.0, atol=0.05)
    # a gain map that darkens the right view by a smooth ramp changes nothing once undone
    ramp = np.linspace(0.6, 1.0, left.shape[1])[None, :] * np.ones((left.shape[0], 1))
    res2 = estimate_rois(left, right * ramp, rois, gains=(np.ones_like(ramp), 1.0 / ramp))
    np.testing.assert_allclose(res2.disparity_px, 2.0, atol=0.05)
    L, R = crop_patches(left, right, rois[[0, 2]])
    assert L.shape == (2, 64, 64)
    with pytest.raises(BadInput, match="one size"):
        crop_patches(left, right, rois)


def _write_frame(path, left, right, black=64.0):
    from hil_af.frames import DualPixelFrame
    from hil_af.stacks import save_frame

    fr = DualPixelFrame(left=left, right=right, white_level=4095.0 - black)
    save_frame(path, fr, black_level=black, dtype="float32")


def test_disparity_command_json_per_cli_contract(tmp_path, capsys):
    from hil_af.cli import main

    rng = np.random.default_rng(9)
    img = texture(rng, 1, 192, 320)[0] * 40 + 400
    left = img[:, 32:288]
    right = shift_x(img[None], 2.5)[0][:, 32:288]
    _write_frame(tmp_path / "f.npz", left, right)
    assert main(["disparity", str(tmp_path / "f.npz"), "--grid", "2x3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    cells = out["cells"]
    assert len(cells) == 6
    assert [(c["row"], c["col"]) for c in cells] == [(r, c) for r in range(2) for c in range(3)]
    for c in cells:
        assert set(c) >= {"row", "col", "x", "y", "w", "h", "disparity_px", "confidence"}
        assert c["disparity_px"] == pytest.approx(2.5, abs=0.1)
        assert 0.8 < c["confidence"] <= 1.0
        assert c["x"] + c["w"] <= 256 and c["y"] + c["h"] <= 192
    # --json PATH writes the same object to a file
    assert main(["disparity", str(tmp_path / "f.npz"), "--grid", "1x1", "--method", "zncc", "--json", str(tmp_path / "o.json")]) == 0
    assert json.loads((tmp_path / "o.json").read_text())["cells"][0]["disparity_px"] == pytest.approx(2.5, abs=0.1)


def test_disparity_command_bad_inputs_exit_2(tmp_path, capsys):
    from hil_af.cli import main

    rng = np.random.default_rng(10)
    img = texture(rng, 1, 64, 64)[0] * 40 + 400
    _write_frame(tmp_path / "f.npz", img, img)
    assert main(["disparity", str(tmp_path / "f.npz"), "--grid", "3by4"]) == 2
    assert "--grid" in capsys.readouterr().err
    assert main(["disparity", str(tmp_path / "f.npz"), "--grid", "20x20"]) == 2
    assert "grid 20x20" in capsys.readouterr().err
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 truncated")
    assert main(["disparity", str(tmp_path / "bad.npz")]) == 2
    assert "bad.npz" in capsys.readouterr().err


@pytest.mark.parametrize("taper", [np.ones(9), 0.5 - 0.5 * np.cos(2 * np.pi * (np.arange(9) + 0.5) / 9)])
def test_window_sums_are_the_shifted_windows_weighted_sums(taper):
    """xcorr's shifted-window moments: running sums for the box taper, a sliding dot product otherwise."""
    from hil_af.pdaf_xcorr import window_sums as _window_sums

    a = np.random.default_rng(4).normal(size=(3, 5, 20))
    got = _window_sums(a, taper)
    want = np.stack([(a[..., j:j + 9] * taper).sum(axis=-1) for j in range(20 - 9 + 1)], axis=-1)
    assert got.shape == (3, 5, 12)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
