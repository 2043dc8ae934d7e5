"""The simulated rig carries the dual-pixel physics: disparity vs defocus and field position,
focus ground truth, vignetting, noise.  Disparity is measured here by an FFT cross-correlation
written in this file (not the package's estimators)."""

from __future__ import annotations

import numpy as np
import pytest

from hil_af.clock import SimClock
from hil_af.drivers.registry import open_rig
from hil_af.frames import centre_roi, grid_rois

GRID = grid_rois((256, 384), 3, 4)
CORNER = GRID[0]  # top-left cell: x ~ -0.75, y ~ -0.67
CENTRE = centre_roi((256, 384))


def xcorr_shift(left: np.ndarray, right: np.ndarray) -> float:
    """Horizontal shift (px) of ``right`` relative to ``left``: peak of the windowed circular
    cross-correlation on the dy = 0 row, refined by a parabola through the peak and its neighbours."""
    a = left.astype(np.float64) - left.mean()
    b = right.astype(np.float64) - right.mean()
    win = np.hanning(a.shape[0])[:, None] * np.hanning(a.shape[1])[None, :]
    c = np.fft.ifft2(np.conj(np.fft.fft2(a * win)) * np.fft.fft2(b * win)).real[0]
    n = len(c)
    i = int(np.argmax(c))
    lo, mid, hi = c[(i - 1) % n], c[i], c[(i + 1) % n]
    d = i + 0.5 * (lo - hi) / (lo - 2 * mid + hi)
    return float(d - n if d > n / 2 else d)


def open_chart(profile: str = "sim-default", noise: float = 0.0):
    return open_rig(f"sim://?seed=3&scene=chart&depth_m=0.25&noise={noise}&profile={profile}", clock=SimClock())


def disparity_at(rig, roi, defocus_dioptres: float) -> float:
    """Measured R-minus-L shift in ``roi`` with the lens set so that the RoI's defocus is ``defocus_dioptres``."""
    truth_d = rig.source.truth_dioptres(roi)[0]
    code = rig.lens_map.to_code(truth_d - defocus_dioptres)
    rig.lens.move_to(code)
    rig.clock.sleep(rig.lens.settle_time_s)
    frame = rig.source.capture()
    left, right = frame.crop(roi)
    return xcorr_shift(left, right)


@pytest.fixture(scope="module")
def chart():
    with open_chart() as rig:
        yield rig


def test_disparity_sign_flips_across_focus(chart):
    near = disparity_at(chart, CENTRE, +1.0)
    far = disparity_at(chart, CENTRE, -1.0)
    assert near > 0.5 and far < -0.5, (near, far)


def test_disparity_grows_with_defocus(chart):
    for sign in (+1, -1):
        d = [sign * disparity_at(chart, CENTRE, sign * dz) for dz in (0.5, 1.0, 2.0, 4.0)]
        assert all(b > a + 0.2 for a, b in zip(d, d[1:])), (sign, d)


def test_same_defocus_gives_different_disparity_at_centre_and_corner(chart):
    c = [disparity_at(chart, CENTRE, dz) for dz in (-2.0, 2.0)]
    k = [disparity_at(chart, CORNER, dz) for dz in (-2.0, 2.0)]
    slope_c, slope_k = (c[1] - c[0]) / 4, (k[1] - k[0]) / 4
    offset_c, offset_k = (c[1] + c[0]) / 2, (k[1] + k[0]) / 2
    assert abs(c[1] - k[1]) > 0.3, (c, k)  # same +2 D defocus, measurably different shift
    assert slope_k < 0.9 * slope_c, (slope_c, slope_k)  # gain falls towards the corner
    assert abs(offset_k - offset_c) > 0.15, (offset_c, offset_k)  # offset varies with field position


def test_profiles_differ_in_field_dependence():
    slopes = {}
    for prof in ("sim-default", "sim-wide"):
        with open_chart(prof) as rig:
            k = [disparity_at(rig, CORNER, dz) for dz in (-2.0, 2.0)]
            c = [disparity_at(rig, CENTRE, dz) for dz in (-2.0, 2.0)]
            slopes[prof] = (k[1] - k[0]) / (c[1] - c[0])  # corner gain relative to the centre
            rig.source.set_scene("white", depth_m=1.0)
            f = rig.source.capture()
            h, w = f.shape
            both = f.left + f.right
            slopes[prof + ":vignette"] = both[:16, :16].mean() / both[h // 2 - 8 : h // 2 + 8, w // 2 - 8 : w // 2 + 8].mean()
            slopes[prof + ":curvature"] = float(np.ptp(rig.truth(GRID)))
    assert slopes["sim-wide"] < slopes["sim-default"] - 0.15, slopes
    assert slopes["sim-wide:vignette"] < slopes["sim-default:vignette"] - 0.1, slopes
    assert slopes["sim-wide:curvature"] > 2 * slopes["sim-default:curvature"] > 0, slopes


def contrast(patch: np.ndarray) -> float:
    g = patch.astype(np.float64)
    lap = 4 * g[1:-1, 1:-1] - g[:-2, 1:-1] - g[2:, 1:-1] - g[1:-1, :-2] - g[1:-1, 2:]
    return float((lap**2).mean() / (g.mean() ** 2 + 1e-9))


@pytest.mark.parametrize("url", ["sim://?seed=1", "sim://?seed=5&profile=sim-wide"])
def test_truth_matches_contrast_peak_of_a_sweep(url):
    """Standard 3 x 4 RoIs and the finer 6 x 8 grid: the contrast peak is within 1 slice of truth."""
    rois = np.concatenate([GRID, grid_rois((256, 384), 6, 8)])
    with open_rig(url, clock=SimClock()) as rig:
        pos = rig.slice_positions()
        assert len(pos) == 49
        C = np.zeros((len(pos), len(rois)))
        for i, p in enumerate(pos):
            rig.lens.move_to(p)
            rig.clock.sleep(rig.lens.settle_time_s)
            f = rig.source.capture()
            for j, roi in enumerate(rois):
                left, right = f.crop(roi)
                C[i, j] = contrast(left + right)
        peak = C.argmax(axis=0)
        truth = rig.truth(rois)
        assert truth.dtype == np.float64 and truth.shape == (len(rois),)
        assert np.ptp(truth) > 100  # cards at several depths
        truth_slice = np.interp(truth, pos, np.arange(len(pos)))
        assert np.all(np.abs(peak - truth_slice) <= 1.0), np.round(peak - truth_slice, 2)


def test_larger_views_keep_the_truth_for_roi_inside_one_card():
    """``size=448x672`` (what the 112 px model's stacks use): 112 px RoIs inside one card cell
    (``simdata.cell_rois``) and the 112 px 3 x 4 grid peak in contrast within 1 slice of their truth."""
    from hil_af.model.simdata import cell_rois

    rois = np.concatenate([cell_rois((448, 672), 112)[::4], grid_rois((448, 672), 3, 4, 112)])
    with open_rig("sim://?seed=3&size=448x672", clock=SimClock()) as rig:
        pos = rig.slice_positions()
        C = np.zeros((len(pos), len(rois)))
        for i, p in enumerate(pos):
            rig.lens.move_to(p)
            rig.clock.sleep(rig.lens.settle_time_s)
            f = rig.source.capture()
            assert f.shape == (448, 672) and f.sensor_hw == (448, 672)
            for j, roi in enumerate(rois):
                left, right = f.crop(roi)
                C[i, j] = contrast(left + right)
        truth = rig.truth(rois)
        assert np.ptp(truth) > 100
        truth_slice = np.interp(truth, pos, np.arange(len(pos)))
        assert np.all(np.abs(C.argmax(axis=0) - truth_slice) <= 1.0), np.round(C.argmax(axis=0) - truth_slice, 2)


def test_white_scene_uniform_apart_from_vignetting():
    with open_rig("sim://?seed=2&scene=white&noise=0", clock=SimClock()) as rig:
        f = rig.source.capture()
        left, right = f.left.astype(np.float64), f.right.astype(np.float64)
        h, w = f.shape
        # L darker on the right, R darker on the left; both darker in the corners
        assert left[:, : w // 8].mean() > right[:, : w // 8].mean() * 1.1
        assert right[:, -w // 8 :].mean() > left[:, -w // 8 :].mean() * 1.1
        centre = (left + right)[h // 2 - 8 : h // 2 + 8, w // 2 - 8 : w // 2 + 8].mean()
        assert (left + right)[:16, :16].mean() < 0.9 * centre
        # apart from that smooth shading there is no structure: tiny second differences
        for v in (left, right):
            assert np.abs(np.diff(v, 2, axis=1)).max() <= 2.0
            assert np.abs(np.diff(v, 2, axis=0)).max() <= 2.0


def test_noise_variance_grows_with_signal():
    """Temporal variance of the frame difference: ~ signal / gain + read^2 (DN^2)."""
    var = {}
    for scene in ("white", "dark"):
        with open_rig(f"sim://?seed=4&scene={scene}", clock=SimClock()) as rig:
            p = rig.source.params
            a, b = rig.source.capture(), rig.source.capture()
            sl = (slice(100, 156), slice(160, 224))
            mean = (a.left[sl].mean() + b.left[sl].mean()) / 2
            var[scene] = (float(np.var(a.left[sl] - b.left[sl]) / 2), mean)
            if scene == "white":
                expected = mean / p.conversion_gain_e_per_dn + p.read_noise_dn**2 + 1 / 12
                assert var[scene][0] == pytest.approx(expected, rel=0.15)
    assert var["white"][1] > 20 * var["dark"][1]
    assert var["white"][0] > 5 * var["dark"][0], var


def test_dark_scene_is_dim_and_frames_are_10_bit_raw_minus_black():
    with open_rig("sim://?seed=1&scene=dark", clock=SimClock()) as rig:
        f = rig.source.capture()
        p = rig.source.params
        assert f.white_level == p.white_level - p.black_level
        assert np.all(f.left == np.round(f.left)) and f.left.min() >= -p.black_level
        assert f.left.mean() < 0.05 * p.exposure_dn
