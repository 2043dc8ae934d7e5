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
    """Two 8 px RoIs on a 40 x 24 view; RoI 0 at (8, 8) may move to x in [0, 32] and y in [0, 16]."""
    ps = load_patchset([make_stack(tmp_path / "a.npz", n=3, gts=(1, 2), size=8, seed=0)], EncodingConfig(size=8))
    assert tuple(ps.views[0].shape[2:]) == (24, 40) and ps.crop[0].tolist() == [8, 8]
    pairs = np.array([[0, 1]] * 300)
    x0, _ = ps.batch(pairs)
    W, H = ps.sensor_hw[0, 1], ps.sensor_hw[0, 0]
    for jitter, lo_x, hi_x, lo_y, hi_y in ((10, -8, 10, -8, 8), (1, -1, 1, -1, 1)):
        xj, _ = ps.batch(pairs, np.random.default_rng(jitter), jitter=jitter)
        dx = np.rint((xj[:, 2, 0, 0] - x0[:, 2, 0, 0]) * W / 2).astype(int)
        dy = np.rint((xj[:, 3, 0, 0] - x0[:, 3, 0, 0]) * H / 2).astype(int)
        assert (dx.min(), dx.max(), dy.min(), dy.max()) == (lo_x, hi_x, lo_y, hi_y)
        assert np.any(dx != dy)  # drawn apart for x and y
        for b in range(0, 300, 37):  # the pixels moved with the RoI-PE
            moved = np.array([[ps.crop[0, 0] + dx[b], ps.crop[0, 1] + dy[b], 8, 8]])
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
