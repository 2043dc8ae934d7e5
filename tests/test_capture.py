"""Lens sweeps, contrast-peak labels and ``hil-af capture-stack`` (on replay:// and sim:// rigs)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from hil_af.capture import contrast_curve, contrast_peak, gt_from_contrast, gt_from_truth, sweep
from hil_af.cli import main
from hil_af.clock import SimClock
from hil_af.drivers.registry import open_rig
from hil_af.errors import BadInput
from hil_af.frames import grid_rois
from hil_af.stacks import FocalStack, load_stack

GTS = (2, 5, 9)  # in-focus slice of each textured RoI


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma < 0.3:
        return img
    fy = np.fft.fftfreq(img.shape[0])[:, None]
    fx = np.fft.rfftfreq(img.shape[1])[None, :]
    otf = np.exp(-2 * (np.pi * sigma) ** 2 * (fx**2 + fy**2))
    return np.fft.irfft2(np.fft.rfft2(img) * otf, s=img.shape)


def blur_stack(path: Path, n=12, gts=GTS, size=32, flat=True, dtype=np.uint16, seed=0) -> Path:
    """A numpy-made stack: RoI i holds random texture blurred by sigma 0.8 * |k - gts[i]| px; plus a flat RoI."""
    rng = np.random.default_rng(seed)
    P = len(gts) + (1 if flat else 0)
    H, W = size + 16, P * (size + 8) + 8
    left = np.full((n, H, W), 300.0)
    rois = []
    for i in range(P):
        x0 = 8 + i * (size + 8)
        tex = rng.random((size, size)) * 600 + 200
        for k in range(n):
            left[k, 8 : 8 + size, x0 : x0 + size] = 500.0 if i >= len(gts) else gaussian_blur(tex, 0.8 * abs(k - gts[i]))
        rois.append((x0, 8, size, size))
    left = np.round(left).astype(dtype)  # integer-valued, as raw data are, in either dtype
    gt = list(gts) + ([-1] if flat else [])
    meta = {"format": "focal-stack", "version": 1, "black_level": 16, "white_level": 1023, "lens_units": "vcm_code",
            "lens_dioptres": [float(12 - k) for k in range(n)]}
    np.savez(path, left=left, right=left.copy(), lens_positions=np.linspace(100, 900, n), rois=np.array(rois, np.int32),
             gt_index=np.array(gt, np.int16), sensor_hw=np.array([H, W], np.int32), origin=np.array([0, 0], np.int32),
             meta=np.array(json.dumps(meta)))
    return path


@pytest.fixture
def stack_path(tmp_path):
    return blur_stack(tmp_path / "blur.npz")


# ---------------------------------------------------------------- pure functions


def test_contrast_peak_subpixel_and_confidence():
    k = np.arange(21)
    idx, conf = contrast_peak(100 - (k - 10.3) ** 2 + 500)
    assert idx == pytest.approx(10.3, abs=1e-9) and 0 < conf < 0.1  # a shallow bump on a high floor: low confidence
    sharp = np.exp(-0.5 * ((k - 6.0) / 1.5) ** 2) + 0.01
    idx, conf = contrast_peak(sharp)
    assert idx == pytest.approx(6.0, abs=1e-9) and conf > 0.9
    idx, conf = contrast_peak(np.full(21, 3.0))
    assert conf == 0.0
    idx, conf = contrast_peak(np.linspace(5, 1, 9))  # peak at the end: no refinement
    assert idx == 0.0
    idx, conf = contrast_peak(np.zeros(5))
    assert np.isnan(idx) and conf == 0.0
    with pytest.raises(BadInput, match="non-finite"):
        contrast_peak([1.0, np.nan, 2.0])
    with pytest.raises(BadInput, match="1-D"):
        contrast_peak(np.ones((2, 3)))


def test_contrast_curve_peaks_at_focus_and_ignores_exposure(stack_path):
    s = load_stack(stack_path)
    curves = contrast_curve(s, s.rois)
    assert curves.shape == (4, s.n)
    for i, g in enumerate(GTS):
        assert int(np.argmax(curves[i])) == g
        idx, conf = contrast_peak(curves[i])
        assert round(idx) == g and conf > 0.5
    assert contrast_peak(curves[3])[1] < 0.05  # the flat RoI: no peak
    # a brighter exposure gives the same measure (views are black-subtracted, then normalised)
    L = (s.left.astype(np.float64) - 16) * 3
    np.testing.assert_allclose(contrast_curve((L, L), s.rois[:3]), curves[:3], rtol=1e-5)
    gt, conf = gt_from_contrast(s, s.rois)
    assert gt.tolist() == [*GTS, -1]
    with pytest.raises(BadInput, match="at least 3 x 3"):
        contrast_curve(s, [[0, 0, 2, 8]])
    with pytest.raises(BadInput, match="not inside"):
        contrast_curve(s, [[0, 0, 8, 100]])


def test_gt_from_truth_nearest_and_out_of_range():
    lp = np.array([100.0, 200, 300, 400])
    t = [100, 149, 151, 400, 449, 451, 51, 49, np.nan]
    assert gt_from_truth(t, lp).tolist() == [0, 0, 1, 3, 3, -1, 0, -1, -1]


# ---------------------------------------------------------------- sweep


def test_sweep_of_a_replayed_numpy_stack_reproduces_it(stack_path, capsys):
    src = load_stack(stack_path)
    clock = SimClock()
    with open_rig(f"replay://{stack_path}?settle_ms=20", clock=clock) as rig:
        s = sweep(rig, rois=src.rois, progress=None)  # the default: a bar only on a terminal
        assert rig.lens.position == 900.0  # ends at the last slice
    assert capsys.readouterr().err == ""  # no progress bar when stderr is not a TTY
    assert isinstance(s, FocalStack) and s.n == src.n
    assert clock.monotonic() >= src.n * 0.020 - 1e-9  # waited the settle time after every move
    np.testing.assert_array_equal(s.lens_positions, src.lens_positions)
    assert s.left.dtype == np.uint16
    np.testing.assert_array_equal(s.left.astype(np.int64) - s.meta["black_level"], src.left.astype(np.int64) - 16)
    assert s.meta["white_level"] - s.meta["black_level"] == 1023 - 16
    assert s.gt_index.tolist() == [*GTS, -1]  # the rig's truth (the stack's own gt)
    # the flat RoI has no gt in the stack (truth NaN): its label came from its (flat) contrast curve
    assert s.meta["gt_source"] == "rig truth + contrast peak"
    assert s.meta["gt_sources"] == ["rig truth"] * 3 + ["contrast peak"]
    assert s.meta["lens_units"] == "vcm_code" and s.meta["format"] == "focal-stack" and s.meta["version"] == 1
    np.testing.assert_allclose(s.meta["lens_dioptres"], src.dioptres())
    assert s.sensor_hw == src.sensor_hw and s.origin == src.origin
    s.validate()


def test_sweep_labels_unknown_rois_by_contrast(stack_path):
    src = load_stack(stack_path)
    shifted = src.rois.copy()
    shifted[:, 1] -= 1  # not the stack's RoIs: the rig does not know their truth
    with open_rig(f"replay://{stack_path}", clock=SimClock()) as rig:
        s = sweep(rig, rois=shifted, progress=False)
        assert s.meta["gt_source"] == "contrast peak"
        assert s.gt_index.tolist() == [*GTS, -1]
        rig.truth = None  # a rig that knows no truth at all
        s = sweep(rig, rois=src.rois, progress=False)
        assert s.gt_index.tolist() == [*GTS, -1] and len(s.meta["gt_confidence"]) == 4
        mixed = sweep(rig, rois=np.concatenate([src.rois[:1], shifted[1:2]]), progress=False)
    assert mixed.gt_index.tolist() == [GTS[0], GTS[1]]


def test_sweep_slice_subsets_default_rois_and_float_data(tmp_path):
    p = blur_stack(tmp_path / "f.npz", dtype=np.float32, flat=False)
    with open_rig(f"replay://{p}", clock=SimClock()) as rig:
        s = sweep(rig, n_slices=5, progress=False)
        assert s.n == 5 and s.rois.shape == (12, 4)  # default grid 3x4
        # commanded 100, 300, ... 900; recorded: the replayed slice's own (read-back) positions
        stack_lp = np.linspace(100, 900, 12)
        expect = [stack_lp[np.argmin(np.abs(stack_lp - c))] for c in (100, 300, 500, 700, 900)]
        np.testing.assert_allclose(s.lens_positions, expect)
        assert s.meta["lens_positions_from"] == "read-back"
        f = sweep(rig, rois=rig.source.stack.rois, progress=False)
    assert f.left.dtype == np.uint16  # integer-valued float data is stored losslessly as uint16
    q = tmp_path / "g.npz"
    with np.load(p) as z:
        a = dict(z)
    a["left"] = a["left"] + np.float32(0.5)
    a["right"] = a["left"]
    np.savez(q, **a)
    with open_rig(f"replay://{q}", clock=SimClock()) as rig:
        g = sweep(rig, rois=rig.source.stack.rois, progress=False)
    assert g.left.dtype == np.float32 and g.meta["black_level"] == 0
    np.testing.assert_array_equal(g.left, a["left"] - 16)


def test_sweep_rejects_bad_slice_counts(stack_path):
    with open_rig(f"replay://{stack_path}", clock=SimClock()) as rig:
        with pytest.raises(BadInput, match="slices >= 2"):
            sweep(rig, n_slices=1)
        rig.af_positions = None
        rig.profile = {"af": {"range": [0, 2000]}}
        with pytest.raises(BadInput, match="leave the lens range"):
            sweep(rig, n_slices=4)


# ---------------------------------------------------------------- the command


def test_capture_stack_command_on_replay(stack_path, tmp_path, capsys):
    out = tmp_path / "out" / "s.npz"
    assert main(["capture-stack", f"replay://{stack_path}", "--out", str(out), "--rois", "grid:1x2", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["path"] == str(out) and summary["slices"] == 12 and summary["rois"] == 2
    s = load_stack(out)
    assert s.rois.shape == (2, 4) and summary["gt_index"] == s.gt_index.tolist()
    assert main(["capture-stack", f"replay://{stack_path}", "--out", str(out), "--slices", "3"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"wrote {out}: 3 slices") and "\n" not in line
    assert load_stack(out).n == 3


@pytest.mark.parametrize("args,msg", [
    (["--rois", "grid:3"], "--rois 'grid:3': expected grid:RxC"),
    (["--rois", "grid:0x2"], "rows and columns must be 1..64"),
    (["--slices", "1"], "--slices must be >= 2"),
])
def test_capture_stack_bad_input_exits_2(stack_path, tmp_path, capsys, args, msg):
    out = tmp_path / "x.npz"
    assert main(["capture-stack", f"replay://{stack_path}", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1
    assert not out.exists()


def test_capture_stack_missing_stack_exits_2(tmp_path, capsys):
    assert main(["capture-stack", f"replay://{tmp_path}/none.npz", "--out", str(tmp_path / "x.npz")]) == 2
    assert "none.npz" in capsys.readouterr().err


def test_capture_stack_sim_round_trip_matches_truth(tmp_path, capsys):
    out = tmp_path / "sim.npz"
    assert main(["capture-stack", "sim://?seed=1", "--slices", "49", "--clock", "sim", "--no-progress",
                 "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    s = load_stack(out)
    assert s.n == 49 and s.view_hw == (256, 384) and s.sensor_hw == (256, 384) and s.origin == (0, 0)
    assert s.rois.shape == (12, 4) and summary["gt_source"] == "rig truth"
    with open_rig("sim://?seed=1", clock=SimClock()) as rig:
        truth = rig.truth(s.rois)
        np.testing.assert_allclose(s.lens_positions, rig.slice_positions(49), atol=3)  # read-back within VCM hysteresis
    np.testing.assert_array_equal(s.rois, grid_rois((256, 384), 3, 4))
    assert s.gt_index.tolist() == gt_from_truth(truth, s.lens_positions).tolist()
    assert (s.gt_index >= 0).sum() >= 10
    # the truth slice is the one nearest the true position, and the contrast peak agrees within a slice
    for g, t in zip(s.gt_index, truth):
        if g >= 0:
            assert abs(s.lens_positions[g] - t) <= 0.5 * np.diff(s.lens_positions).max() + 1e-9
    cgt, conf = gt_from_contrast(s, s.rois)
    ok = (cgt >= 0) & (s.gt_index >= 0)
    assert ok.sum() >= 8 and np.abs(cgt[ok] - s.gt_index[ok]).max() <= 1
    assert s.meta["lens_units"] == "vcm_code" and len(s.meta["lens_dioptres"]) == 49


def test_contrast_labels_on_the_sim_without_its_truth():
    """On realistic noise: flat RoIs get -1, textured ones the truth slice within one slice."""
    with open_rig("sim://?seed=3&scene=flat-centre", clock=SimClock()) as rig:
        truth = rig.truth
        rig.truth = None  # label by contrast only
        s = sweep(rig, 25, progress=False)
    assert s.meta["gt_source"] == "contrast peak"
    true_gt = gt_from_truth(truth(s.rois), s.lens_positions)
    centre = [5, 6]  # the two middle RoIs of the 3x4 grid lie on the flat centre patch
    assert s.gt_index[centre].tolist() == [-1, -1]
    others = np.setdiff1d(np.arange(12), centre)
    assert (s.gt_index[others] >= 0).all()
    assert np.abs(s.gt_index[others] - true_gt[others]).max() <= 1
