"""The real-optics terms of the simulator (asymmetric dual-pixel PSFs, per-view gain, depth edges)
and the domain-randomised camera family.  Kernels and views are measured here with plain numpy."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from hil_af.clock import SimClock
from hil_af.drivers.registry import open_rig
from hil_af.errors import BadInput, FormatError
from hil_af.frames import grid_rois
from hil_af.sim.family import draw_params, parse_family
from hil_af.sim.params import SimParams
from hil_af.sim.psf import half_aperture_otfs, half_kernels, is_mirror_symmetric, vignetting_maps

ASYM = replace(SimParams(), split_offset=0.1, split_offset_x=0.2, psf_asymmetry=0.3, cats_eye=0.5,
               focus_asymmetry=0.2, coma_px_per_dioptre=0.3)


def centroid_x(k: np.ndarray) -> float:
    c = k.shape[1] // 2
    return float((k.sum(axis=0) * (np.arange(k.shape[1]) - c)).sum() / k.sum())


def test_default_kernels_are_mirror_images_and_asymmetric_ones_are_not():
    p = SimParams()
    assert is_mirror_symmetric(p) and not is_mirror_symmetric(ASYM)
    kl, kr = half_kernels(3.0, p, 30.0)
    np.testing.assert_allclose(kr, kl[:, ::-1], atol=1e-12)
    al, ar = half_kernels(3.0, ASYM, 30.0, fx=0.8, fy=0.5)
    assert np.abs(ar - al[:, ::-1]).max() > 0.01  # the halves differ in shape, not only in position
    assert abs(al.sum() - 1) < 1e-9 and abs(ar.sum() - 1) < 1e-9


def test_cats_eye_clips_the_pupil_off_axis_only():
    p = replace(SimParams(), cats_eye=0.6)
    ul, ur = half_kernels(4.0, p, 30.0, 0.0, 0.0)
    cl, cr = half_kernels(4.0, p, 30.0, 1.0, 1.0)
    area = lambda k: int((k > 1e-4).sum())  # noqa: E731
    assert area(cl) + area(cr) < 0.8 * (area(ul) + area(ur))


def test_focus_asymmetry_makes_the_two_sides_of_focus_differ():
    p = replace(SimParams(), focus_asymmetry=0.25)
    front, _ = half_kernels(-3.0, p, 30.0)
    back, _ = half_kernels(3.0, p, 30.0)
    assert back.shape[0] > front.shape[0]  # larger blur disc behind focus


@pytest.mark.parametrize("p", [SimParams(), ASYM], ids=["mirror", "asymmetric"])
def test_centroids_are_placed_at_minus_plus_half_the_disparity_plus_the_drift(p):
    shape = (96, 96)
    disp, dz, fx, fy = 1.7, 2.0, 0.6, -0.4
    OL, OR = half_aperture_otfs(dz, disp, p, shape, 30.0, fx, fy)
    kl, kr = np.fft.irfft2(OL, s=shape), np.fft.irfft2(OR, s=shape)
    x = np.fft.fftfreq(shape[1], 1 / shape[1])
    cl = float((kl.sum(axis=0) * x).sum() / kl.sum())
    cr = float((kr.sum(axis=0) * x).sum() / kr.sum())
    drift = p.coma_px_per_dioptre * dz * fx
    assert cr - cl == pytest.approx(disp, abs=0.02)
    assert 0.5 * (cl + cr) == pytest.approx(drift, abs=0.02)


def test_view_gain_imbalance_and_signed_lr_vignetting():
    p = replace(SimParams(), view_gain_imbalance=-0.09, vignette_lr=-0.11)
    vl, vr = vignetting_maps(p)
    ratio = (vl / vr).mean(axis=0)
    W = len(ratio)
    # left brighter, more so on the right, over the part of the field the real Pixel 4 crop covers (|x| < 2/3)
    assert ratio[5 * W // 6 - 1] > ratio[W // 2] > ratio[W // 6] > 1.0
    assert ratio[5 * W // 6 - 1] == pytest.approx(1.09 * 1.0733 / (0.91 * 0.9267), rel=0.02)  # (1-o)(1-vx) / (1+o)(1+vx)


def test_natural_scene_has_depth_edges_inside_cells_but_not_under_standard_roi_centres():
    with open_rig("sim://?seed=4&scene=natural", clock=SimClock()) as rig:
        sc = rig.source.scene
        assert sc.occ_of_cell is not None and (sc.occ_of_cell >= 0).sum() >= 2
        depth = sc.depth_map_dioptres((256, 384))
        r, c = map(int, np.argwhere(sc.occ_of_cell >= 0)[0])
        cell = depth[sc.cell_y[r]:sc.cell_y[r + 1], sc.cell_x[c]:sc.cell_x[c + 1]]
        assert len(np.unique(cell)) == 2  # an edge between two depths inside one cell
        rois = grid_rois((256, 384), 3, 4)
        centres = [(y + h / 2, x + w / 2) for x, y, w, h in rois]
        assert all(sc.occluder_at(cy, cx) == -1 for cy, cx in centres)
        # the occluder is rendered at its own depth: it changes the image where it lies
        plain = open_rig("sim://?seed=4&scene=cards", clock=SimClock())
        with plain:
            L1, _ = rig.source.render(500.0)
            L0, _ = plain.source.render(500.0)
        assert np.abs(L1 - L0).max() > 10


def test_family_draws_one_camera_per_seed_within_the_ranges():
    table = {"disparity_px_per_dioptre": {"log": [0.2, 2.0]}, "blur_per_disparity": [2.0, 4.0],
             "disparity_offset_x_slices": [-2.0, 2.0], "cats_eye": [0.0, 0.5]}
    a = draw_params(SimParams(), table, 7, 0.25)
    assert a == draw_params(SimParams(), table, 7, 0.25)
    b = draw_params(SimParams(), table, 8, 0.25)
    assert a != b
    for p in (a, b):
        assert 0.2 <= p.disparity_px_per_dioptre <= 2.0 and 0 <= p.cats_eye <= 0.5
        assert 2.0 <= p.blur_px_per_dioptre / p.disparity_px_per_dioptre <= 4.0
        assert abs(p.disparity_offset_x_px) <= 2.0 * p.disparity_px_per_dioptre * 0.25 + 1e-12
    with pytest.raises(FormatError, match="nonsense"):
        parse_family({"nonsense": [0, 1]})
    with pytest.raises(FormatError, match="lo > 0"):
        parse_family({"cats_eye": {"log": [0.0, 1.0]}})


def test_domain_random_profile_gives_different_cameras_and_keeps_one_across_scenes():
    with open_rig("sim://?profile=domain-random&seed=1", clock=SimClock()) as r1, \
            open_rig("sim://?profile=domain-random&seed=2", clock=SimClock()) as r2:
        p1 = r1.source.params
        assert p1 != r2.source.params
        r1.change_scene(3)
        assert r1.source.params == p1
        px_per_slice = p1.disparity_px_per_dioptre * 12.0 / 48
        assert 0.05 - 1e-9 <= px_per_slice <= 0.5 + 1e-9


def test_sim_params_reject_out_of_range_optics():
    with pytest.raises(FormatError, match="cats_eye"):
        SimParams.from_table({"cats_eye": 1.5})
    with pytest.raises((FormatError, BadInput), match="psf_asymmetry"):
        SimParams.from_table({"psf_asymmetry": -2})


def test_soft_scene_keeps_natural_geometry_but_softens_and_fades_card_textures():
    from hil_af.sim.scene import SOFT_TEXTURE, make_scene, soften

    nat = make_scene("natural", 7, (256, 384), 40, (0.3, 3.0))
    soft = make_scene("natural-soft", 7, (256, 384), 40, (0.3, 3.0))
    np.testing.assert_array_equal(nat.card_dioptres, soft.card_dioptres)  # same cards, same depths
    np.testing.assert_array_equal(nat.card_of_cell, soft.card_of_cell)
    np.testing.assert_array_equal(nat.occ_textures, soft.occ_textures)  # occluders untouched
    changed = [not np.array_equal(a, b) for a, b in zip(nat.textures, soft.textures)]
    assert 0 < sum(changed)

    def hf(t):  # mean |horizontal gradient| per unit std: falls with a pre-blur
        return np.abs(np.diff(t, axis=1)).mean() / t.std()

    for a, b, c in zip(nat.textures, soft.textures, changed):
        if c:
            assert b.std() < a.std() and hf(b) < 0.9 * hf(a)
            assert abs(float(b.mean()) - float(a.mean())) < 0.02  # mean reflectance kept
    # soften's draws stay in SOFT_TEXTURE's ranges: contrast factor <= hi, blur >= lo
    rng = np.random.default_rng(0)
    tex = np.random.default_rng(1).uniform(0, 1, (128, 128)).astype(np.float32)
    outs = [soften(tex, rng) for _ in range(40)]
    kept = sum(np.array_equal(o, tex) for o in outs)
    assert 0.1 * 40 <= kept <= 0.5 * 40  # about 1 - p unchanged
    lo, hi = SOFT_TEXTURE.contrast
    assert all(o.std() <= hi * tex.std() + 1e-6 for o in outs)
    with pytest.raises(BadInput):
        make_scene("natural-softer", 7, (256, 384), 40, (0.3, 3.0))
