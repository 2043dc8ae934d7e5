"""hil_af.model.dataset's rules on tiny numpy stacks (tests/synthetic.py, 8-12 px RoIs): seconds in all.

The split of whole stacks (``split_by_stack``, ``fine_tune_split``), a subset keeping every field
of its rows, model bins back to each sweep's slices, step-2 pairs of given start pairs, and the
stack search.  Expected values come from the docstrings' rules (counts of held-out stacks by
hand from ``round(val_frac * stacks)`` and its bounds)."""

from __future__ import annotations

import numpy as np
import pytest

from hil_af.errors import BadInput
from hil_af.model.dataset import find_stacks, fine_tune_split, load_patchset, split_by_stack, step2_pairs
from hil_af.model.encoding import EncodingConfig
from synthetic import make_stack


def _stacks(tmp_path, count, n=3):
    return [make_stack(tmp_path / f"s{i:02d}.npz", n=n, gts=(1,), size=8, seed=i) for i in range(count)]


def _ps(tmp_path, count):
    return load_patchset(_stacks(tmp_path, count), EncodingConfig(size=8))


@pytest.mark.parametrize("count,val_frac,held", [
    (4, 0.25, 1), (4, 0.5, 2),  # round(val_frac * stacks)
    (4, 0.1, 1), (2, 0.1, 1),   # at least one when val_frac > 0 and there are >= 2 stacks
    (2, 0.9, 1),                # never all of them
])
def test_split_holds_out_round_val_frac_of_the_stacks_within_its_bounds(tmp_path, count, val_frac, held):
    ps = _ps(tmp_path, count)
    tr, va, ids = split_by_stack(ps, val_frac, seed=0)
    assert len(ids) == held and len(set(ids)) == held
    assert sorted(set(va.stack_id.tolist())) == sorted(ids) and va.n_rois == held
    assert sorted(tr.stack_id.tolist()) == sorted(set(range(count)) - set(ids))  # the train set: every other stack


@pytest.mark.parametrize("count,val_frac", [(4, 0.0), (1, 0.5), (1, 0.0)])
def test_split_without_held_out_stacks_returns_the_set_itself(tmp_path, count, val_frac):
    ps = _ps(tmp_path, count)
    tr, va, ids = split_by_stack(ps, val_frac, seed=0)
    assert tr is ps and va is None and ids == []


@pytest.mark.parametrize("val_frac", [1.0, 1.5, -0.1])
def test_split_refuses_a_fraction_outside_zero_to_one(tmp_path, val_frac):
    with pytest.raises(BadInput, match=rf"^--val-frac must be in \[0, 1\), got {val_frac}$"):
        split_by_stack(_ps(tmp_path, 2), val_frac, seed=0)


def test_split_is_seeded_and_draws_distinct_stacks(tmp_path):
    ps = _ps(tmp_path, 10)
    draws = [split_by_stack(ps, 0.5, seed=s)[2] for s in range(8)]
    assert draws == [split_by_stack(ps, 0.5, seed=s)[2] for s in range(8)]  # the same seed, the same stacks
    assert all(len(set(d)) == 5 and d == sorted(d) for d in draws)  # five distinct stacks, sorted
    assert len({tuple(d) for d in draws}) > 1  # and the seed matters


@pytest.mark.parametrize("count,val_frac,held", [
    (2, 0.25, 1), (2, 0.9, 1),  # two sweeps: one held out (at most half)
    (3, 0.9, 1), (3, 0.25, 1),  # three: a third
    (9, 0.0, 1), (9, 0.25, 2), (9, 0.9, 3),  # at least one, round(val_frac * 9), at most a third
])
def test_fine_tune_split_holds_out_one_to_a_third_of_the_sweeps(tmp_path, count, val_frac, held):
    ps = _ps(tmp_path, count)
    tr, va, ids = fine_tune_split(ps, val_frac, seed=1)
    assert len(ids) == held and sorted(set(va.stack_id.tolist())) == ids
    assert not set(tr.stack_id.tolist()) & set(ids)
    assert fine_tune_split(ps, val_frac, seed=1)[2] == ids


def test_fine_tune_split_of_one_sweep_holds_out_nothing(tmp_path):
    ps = _ps(tmp_path, 1)
    tr, va, ids = fine_tune_split(ps, 0.25, seed=0)
    assert tr is ps and va is None and ids == []


def test_a_subset_keeps_every_field_of_its_rows(tmp_path):
    """Mixed sweep lengths, croppable 8 px RoIs and resampled 12 px ones: the subset's batch and labels
    are those of the same pairs in the whole set."""
    paths = [make_stack(tmp_path / "a.npz", n=5, gts=(1, 3), size=8, seed=0),
             make_stack(tmp_path / "b.npz", n=7, gts=(2, 6), size=12, seed=1)]
    ps = load_patchset(paths, EncodingConfig(size=8, fit="area"), n_bins=7)
    assert ps.croppable.tolist() == [True, True, False, False]
    rows = np.array([3, 0, 2])
    sub = ps.subset(rows)
    assert sub.n == 7 and sub.cfg == ps.cfg and sub.stacks == ps.stacks and sub.stack_meta == ps.stack_meta
    assert sub.n_rows.tolist() == [7, 5, 7] and sub.stack_id.tolist() == [1, 0, 1]
    local = sub.all_pairs()
    assert len(local) == 7 + 5 + 7
    x, y = sub.batch(local)
    x0, y0 = ps.batch(np.stack([rows[local[:, 0]], local[:, 1]], axis=1))
    np.testing.assert_array_equal(x, x0)
    np.testing.assert_array_equal(y, y0)


def test_model_bins_map_to_the_nearest_slice_of_each_rows_sweep(tmp_path):
    paths = [make_stack(tmp_path / "a.npz", n=5, gts=(1,), size=8, seed=0),
             make_stack(tmp_path / "b.npz", n=9, gts=(2,), size=8, seed=1)]
    ps = load_patchset(paths, EncodingConfig(size=8))  # 9 bins; sweep a has 5 slices: bin b -> slice b / 2
    rows = np.array([0, 0, 0, 0, 1, 1, 1])
    got = ps.to_stack_slice(rows, np.array([-3.0, 3.0, 5.2, 11.0, -1.0, 4.4, 20.0]))
    assert got.dtype == np.int64
    assert got.tolist() == [0, 2, 3, 4, 0, 4, 8]  # clipped to each sweep's [0, n_s - 1]; 3 / 2 rounds to even
    np.testing.assert_allclose(ps.label(np.array([0, 1])), [2.0, 2.0])  # gt 1 of 5 slices is bin 2; gt 2 of 9 is 2


def test_step2_pairs_start_from_the_given_pairs_only(tmp_path):
    ps = load_patchset([make_stack(tmp_path / "a.npz", n=5, gts=(1, 3), size=8, seed=0)], EncodingConfig(size=8))
    to_bin_4 = lambda x: np.tile(20.0 * np.eye(5)[4], (len(x), 1))  # noqa: E731  (all mass on the last bin)
    start = [[1, 0], [0, 2], [1, 4]]
    out = step2_pairs(ps, to_bin_4, batch=2, pairs=start)
    assert out.dtype == np.int64 and out.tolist() == [[1, 4], [0, 4], [1, 4]]


def test_stacks_are_found_in_subfolders(tmp_path):
    make_stack(tmp_path / "top.npz", n=3, gts=(1,), size=8)
    (tmp_path / "rig" / "day1").mkdir(parents=True)
    make_stack(tmp_path / "rig" / "day1" / "deep.npz", n=3, gts=(1,), size=8)
    assert [p.name for p in find_stacks(tmp_path)] == ["deep.npz", "top.npz"]


def test_batch_augments_only_when_asked_and_jitters_both_ways(tmp_path):
    ps = load_patchset([make_stack(tmp_path / "a.npz", n=3, gts=(1,), size=8, seed=0)], EncodingConfig(size=8))
    pairs = np.array([[0, 1]] * 200)
    x0, y0 = ps.batch(pairs)
    assert x0.dtype == np.float32 and y0.dtype == np.float32 and y0.tolist() == [1.0] * 200
    x1, _ = ps.batch(pairs, np.random.default_rng(0))  # an rng alone: noise 0 and jitter 0 by default
    np.testing.assert_array_equal(x1, x0)
    xj, _ = ps.batch(pairs, np.random.default_rng(1), jitter=3)  # the RoI lies 8 px from every border
    W, H = ps.sensor_hw[0, 1], ps.sensor_hw[0, 0]
    dx = np.rint((xj[:, 2, 0, 0] - x0[:, 2, 0, 0]) * W / 2).astype(int)
    dy = np.rint((xj[:, 3, 0, 0] - x0[:, 3, 0, 0]) * H / 2).astype(int)
    assert set(dx.tolist()) == set(dy.tolist()) == set(range(-3, 4))  # every shift in [-3, 3], both ways


def test_batch_jitter_is_clipped_at_the_view_borders_independently_in_x_and_y(tmp_path):
    """Two 8 px RoIs on a 40 x 24 view, at (8, 8) and (24, 8): a crop may start at x in [0, 32], y in [0, 16]."""
    ps = load_patchset([make_stack(tmp_path / "a.npz", n=3, gts=(1, 2), size=8, seed=0)], EncodingConfig(size=8))
    assert tuple(ps.views[0].shape[2:]) == (24, 40) and ps.crop.tolist() == [[8, 8], [24, 8]]
    W, H = ps.sensor_hw[0, 1], ps.sensor_hw[0, 0]
    for roi, jitter, lo_x, hi_x, lo_y, hi_y in ((0, 10, -8, 10, -8, 8), (1, 10, -10, 8, -8, 8), (0, 1, -1, 1, -1, 1)):
        pairs = np.array([[roi, 1]] * 300)
        x0, _ = ps.batch(pairs)
        xj, _ = ps.batch(pairs, np.random.default_rng(jitter), jitter=jitter)
        dx = np.rint((xj[:, 2, 0, 0] - x0[:, 2, 0, 0]) * W / 2).astype(int)
        dy = np.rint((xj[:, 3, 0, 0] - x0[:, 3, 0, 0]) * H / 2).astype(int)
        assert (dx.min(), dx.max(), dy.min(), dy.max()) == (lo_x, hi_x, lo_y, hi_y)
        assert np.any(dx != dy)  # drawn apart for x and y
        for b in range(0, 300, 37):  # the pixels moved with the RoI-PE
            moved = np.array([[ps.crop[roi, 0] + dx[b], ps.crop[roi, 1] + dy[b], 8, 8]])
            from hil_af.model.encoding import encode_frame_rois

            st_l, st_r = ps.views[0][1, 0].astype(np.float32), ps.views[0][1, 1].astype(np.float32)
            ref = encode_frame_rois(st_l, st_r, moved, (0, 0), (H, W), 1, 3, ps.cfg)[0]
            np.testing.assert_allclose(xj[b], ref, atol=1e-5)
    # no rng: no augmentation, whatever noise and jitter say (the inference encoding)
    np.testing.assert_array_equal(ps.batch(pairs[:5], None, noise=0.5, jitter=3)[0], x0[:5])


def test_batch_noise_has_one_uniform_std_per_sample_for_both_views(tmp_path):
    ps = load_patchset([make_stack(tmp_path / "a.npz", n=3, gts=(1,), size=16, seed=0)], EncodingConfig(size=16))
    pairs = np.array([[0, 1]] * 400)
    x0, _ = ps.batch(pairs)
    xn, _ = ps.batch(pairs, np.random.default_rng(7), noise=0.2)
    np.testing.assert_array_equal(xn[:, 2:], x0[:, 2:])  # the PE planes untouched
    sd = (xn[:, :2] - x0[:, :2]).std(axis=(2, 3))  # per sample and view
    assert sd.max() <= 0.2 * 1.15 and sd.min() < 0.2 * 0.1  # std drawn from U(0, 0.2)
    assert np.quantile(sd[:, 0], 0.25) == pytest.approx(0.05, abs=0.02)  # uniform: a quarter below 0.05
    big = sd[:, 0] > 0.05
    np.testing.assert_allclose(sd[big, 1] / sd[big, 0], 1.0, atol=0.3)  # the same std for both views
    assert np.ptp(sd[:, 0]) > 0.1  # drawn per sample
    xn1, _ = ps.batch(pairs[:50], np.random.default_rng(7), noise=0.5)
    assert not np.allclose(xn1[:, :2], x0[:50, :2], atol=1e-3)  # noise 0.5 (< 1) is applied too


def test_batch_uses_the_configs_eps_as_inference_does(tmp_path):
    from hil_af.model.encoding import encode_frame_rois
    from hil_af.stacks import load_stack

    path = make_stack(tmp_path / "a.npz", n=3, gts=(1,), size=8, seed=0)
    cfg = EncodingConfig(size=8, eps=0.5)
    ps = load_patchset([path], cfg)
    st = load_stack(path)
    f = st.frame(2)
    ref = encode_frame_rois(f.left, f.right, st.rois, st.origin, st.sensor_hw, 2, 3, cfg)
    np.testing.assert_allclose(ps.batch(np.array([[0, 2]]))[0], ref, atol=2e-2)
    plain = encode_frame_rois(f.left, f.right, st.rois, st.origin, st.sensor_hw, 2, 3, EncodingConfig(size=8))
    assert np.abs(ref[:, :2] - plain[:, :2]).max() > 0.1


def _placed_stack(tmp_path, name, gts, n=3, origin=(4, 6), meta_extra=None):
    """A synthetic stack moved to ``origin`` (y0, x0) of a larger sensor, with extra meta keys."""
    import json

    path = make_stack(tmp_path / f"{name}.npz", n=n, gts=gts, size=8, seed=len(name))
    with np.load(path) as z:
        d = dict(z)
    H, W = d["left"].shape[1:]
    d["origin"] = np.array(origin, np.int32)
    d["sensor_hw"] = np.array([H + 10, W + 20], np.int32)
    meta = json.loads(str(d["meta"]))
    meta.update(meta_extra or {})
    d["meta"] = np.array(json.dumps(meta))
    np.savez(path, **d)
    return path


def test_load_patchset_keeps_gt_from_slice_0_skips_stacks_without_gt_and_names_each_stack(tmp_path):
    none = _placed_stack(tmp_path, "none", gts=(-1, -1))
    a = _placed_stack(tmp_path, "a", gts=(0, -1, 2), meta_extra={"source": "sim", "scene": "s1", "rig": "r9", "x": 1})
    b = _placed_stack(tmp_path, "b", gts=(1,), n=2)  # two slices: the shortest sweep
    seen = []

    def progress(it):
        seen.append(list(it))
        return seen[-1]

    ps = load_patchset([none, a, b], EncodingConfig(size=8), progress=progress)
    assert seen == [[none, a, b]]
    assert ps.stacks == [str(a), str(b)] and ps.stack_id.tolist() == [0, 0, 1]
    assert ps.gt.tolist() == [0, 2, 1] and ps.n_rows.tolist() == [3, 3, 2] and ps.n == 3
    assert ps.stack_meta == [{"source": "sim", "scene": "s1", "rig": "r9"}, {}]
    assert ps.views[0].dtype == np.float16 and ps.views[0].shape == (3, 2, 24, 3 * 16 + 8)
    only_first = load_patchset([a, b], EncodingConfig(size=8), progress=lambda it: list(it)[:1])
    assert only_first.stacks == [str(a)]  # the stacks are the ones the progress wrapper yields


def test_load_patchset_refuses_a_one_slice_stack_and_sets_without_gt(tmp_path):
    one = _placed_stack(tmp_path, "one", gts=(0,), n=1)
    with pytest.raises(BadInput, match=r"one\.npz: a focal stack needs n >= 2 slices, got 1"):  # load_stack's check
        load_patchset([one], EncodingConfig(size=8))
    with pytest.raises(BadInput, match=r"^no RoI with a known ground truth"):
        load_patchset([_placed_stack(tmp_path, "none", gts=(-1,))], EncodingConfig(size=8))


def test_load_patchset_multiplies_the_views_by_the_flat_fields_gains_at_their_place(tmp_path):
    from hil_af.calibration.flatfield import FlatField
    from hil_af.stacks import load_stack

    path = _placed_stack(tmp_path, "a", gts=(1,), origin=(4, 6))
    st = load_stack(path)
    H, W = st.sensor_hw
    ff = FlatField(np.array([[1.0, 2.0]]), np.array([[1.5, 1.5]]), np.array([H / 2]), np.array([0.0, 100.0]), (H, W))
    ps = load_patchset([path], EncodingConfig(size=8), flatfield=ff)
    gain_x = 1.0 + (6 + np.arange(st.view_hw[1]) + 0.5) / 100.0  # 1 -> 2 over x = 0 .. 100, from x0 = 6
    want_l = (st.left.astype(np.float32) - st.black_level) * gain_x[None, None, :]
    want_r = (st.right.astype(np.float32) - st.black_level) * 1.5
    np.testing.assert_allclose(ps.views[0][:, 0], want_l, rtol=2e-3)
    np.testing.assert_allclose(ps.views[0][:, 1], want_r, rtol=2e-3)


def test_batch_of_an_ablation_model_has_zero_pe_planes(tmp_path):
    path = make_stack(tmp_path / "a.npz", n=3, gts=(1,), size=8, seed=0)
    for roi_pe, lens_pe in ((False, False), (False, True), (True, False)):
        ps = load_patchset([path], EncodingConfig(size=8, roi_pe=roi_pe, lens_pe=lens_pe))
        x, _ = ps.batch(np.array([[0, 2], [0, 1]]))
        assert np.all(x[:, 2:4] == 0) != roi_pe
        assert np.all(x[:, 4] == 0) != lens_pe
        if lens_pe:
            assert x[0, 4, 0, 0] == 1.0 and x[1, 4, 0, 0] == 0.5


def test_a_patchset_made_without_slice_counts_has_n_slices_per_row():
    from hil_af.model.dataset import PatchSet

    z = np.zeros(3, np.int64)
    ps = PatchSet([], z, np.zeros((3, 2), np.int64), np.ones(3, bool), z - 1, np.zeros((0,)), np.zeros((3, 4)),
                  np.zeros((3, 2), np.int64), np.array([0, 4, 6]), 7, EncodingConfig(size=8))
    assert ps.n_rows.dtype == np.int64 and ps.n_rows.tolist() == [7, 7, 7]
    np.testing.assert_array_equal(ps.label(np.array([2, 1])), [6.0, 4.0])


def _roi_stack(tmp_path, rois):
    """One 3-slice textured stack (48 x 64 view, gt 1) with the given RoIs (x, y, w, h)."""
    from hil_af.stacks import FocalStack, save_stack

    rng = np.random.default_rng(5)
    left = rng.integers(100, 900, (3, 48, 64)).astype(np.uint16)
    right = rng.integers(100, 900, (3, 48, 64)).astype(np.uint16)
    st = FocalStack(left, right, np.arange(3, dtype=np.float64), np.array(rois, dtype=np.int32),
                    np.ones(len(rois), dtype=np.int16), (60, 80), (5, 7),
                    {"format": "focal-stack", "version": 1, "black_level": 64, "white_level": 1023, "lens_units": "vcm_code"})
    save_stack(tmp_path / "r.npz", st)
    return tmp_path / "r.npz", st


@pytest.mark.parametrize("fit", ["area", "crop"])
def test_rois_of_one_patch_side_are_fitted_as_inference_fits_them_with_exact_pe(tmp_path, fit):
    """8 x 12 and 12 x 6 RoIs into 8 px patches: area-resampled (area), or read as inference reads
    them (crop: the window ``model_windows`` gives, cropped on the long side and grown about the
    centre on the short one, so every RoI is a plain crop); pixels as inference encodes them, RoI-PE
    exactly its pe_planes."""
    from hil_af.model.encoding import encode_frame_rois, model_windows, pe_planes

    rois = [[3, 4, 8, 12], [20, 9, 12, 6], [40, 30, 8, 8]]
    path, st = _roi_stack(tmp_path, rois)
    cfg = EncodingConfig(size=8, fit=fit)
    ps = load_patchset([path], cfg)
    assert ps.croppable.tolist() == [fit == "crop", fit == "crop", True]
    f = st.frame(2)
    wins = model_windows(st.rois, 8, st.view_hw, fit)
    if fit == "crop":
        np.testing.assert_array_equal(wins[1], [20, 8, 12, 8])  # 6 px tall, grown about its centre
    ref = encode_frame_rois(f.left, f.right, wins, st.origin, st.sensor_hw, 2, 3, cfg)
    x, _ = ps.batch(np.array([[0, 2], [1, 2], [2, 2]]))
    np.testing.assert_allclose(x[:, :2], ref[:, :2], atol=2e-2)  # views stored as float16
    for b, win in enumerate(wins):
        px, py = pe_planes(np.array(win) + [7, 5, 0, 0], (60, 80), 8, fit)
        np.testing.assert_allclose(x[b, 2], px, atol=1e-6)
        np.testing.assert_allclose(x[b, 3], py, atol=1e-6)


def test_the_model_needs_two_bins(tmp_path):
    path = make_stack(tmp_path / "a.npz", n=3, gts=(1,), size=8)
    assert load_patchset([path], EncodingConfig(size=8), n_bins=2).n == 2
    with pytest.raises(BadInput, match=r"^the model needs at least 2 output bins, got 1$"):
        load_patchset([path], EncodingConfig(size=8), n_bins=1)
