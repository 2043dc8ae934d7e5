"""The single-frame defocus readout (hil_af.model.defocus): the windows it reads an RoI through and
the two-ask rule it uses when the lens slice is unknown, each against values written from the
module's definitions, with the predictor replaced by a stand-in whose answer is a known function
of the window and of the lens slice it is asked at (the onnxruntime model is not what is tested)."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from hil_af.frames import DualPixelFrame
from hil_af.model.defocus import far_end_defocus, relative_defocus, tile_windows
from hil_af.model.encoding import EncodingConfig
from hil_af.model.inference import PEPrediction


def test_tile_windows_spreads_three_by_three_windows_over_a_large_roi():
    wins, owner = tile_windows(np.array([[8, 16, 112, 112]]), 64)
    # offsets 0, (112 - 64) // 2 = 24 and 112 - 64 = 48 on each axis, rows outer
    want = [(8 + ox, 16 + oy, 64, 64) for oy in (0, 24, 48) for ox in (0, 24, 48)]
    assert wins.tolist() == [list(w) for w in want]
    assert owner.tolist() == [0] * 9


def test_tile_windows_keeps_small_rois_and_tiles_only_the_long_axis():
    rois = np.array([[0, 0, 64, 64], [100, 50, 40, 30], [5, 7, 100, 64], [9, 3, 64, 65]])
    wins, owner = tile_windows(rois, 64)
    assert wins.tolist() == [[0, 0, 64, 64],                                 # the input size: itself
                             [100, 50, 40, 30],                              # smaller: itself
                             [5, 7, 64, 64], [23, 7, 64, 64], [41, 7, 64, 64],  # 100 wide: 0, 18, 36
                             [9, 3, 64, 64], [9, 4, 64, 64]]                 # 65 tall: 0 and 1 (0 twice is once)
    assert owner.tolist() == [0, 1, 2, 2, 2, 3, 3]


def test_far_end_rule_asks_the_middle_then_both_ends_and_picks_per_roi():
    calls = []
    mid_answer = np.array([3.0, -2.0, 0.0])

    def ask(k):
        calls.append(k)
        if k == 4:
            return mid_answer, np.full(3, 0.9)
        return np.array([10.0, 11.0, 12.0]) + 100 * k, np.full(3, k / 100.0)

    d, conf = far_end_defocus(ask, 10)  # n = 10: the middle slice is (10 - 1) // 2 = 4
    assert sorted(calls) == [0, 4, 9]
    # RoI 0 (focus above, +3) and RoI 2 (0 counts as above) take the slice-0 answer, RoI 1 the slice-9 one
    assert d.tolist() == [10.0, 911.0, 12.0]
    assert conf.tolist() == [0.0, 0.09, 0.0]


class StandIn:
    """A predictor whose expected in-focus slice for a window is ``x0 / 8 + 0.01 * k`` (x0: the
    window's left edge, view px; k: the lens slice asked) and whose confidence is ``y0 / 1000``."""

    def __init__(self, n=49, size=64, fit="crop"):
        self.n_slices = n
        self.encoding = EncodingConfig(size=size, fit=fit)
        self.asked = []

    def predict(self, frame, rois, k, n):
        rois = np.asarray(rois, dtype=np.float64)
        self.asked.append((int(k), rois.astype(int).tolist()))
        expected = rois[:, 0] / 8.0 + 0.01 * k
        p = len(rois)
        return PEPrediction(index=np.rint(expected).astype(np.int64), confidence=rois[:, 1] / 1000.0,
                            probs=np.zeros((p, n), np.float32), expected=expected, argmax=np.zeros(p, np.int64))


def _frame():
    z = np.zeros((400, 600), np.float32)
    return DualPixelFrame(z, z.copy())


def test_relative_defocus_with_the_lens_slice_is_the_window_mean_from_that_slice():
    pred = StandIn()
    d, conf = relative_defocus(pred, _frame(), np.array([[8, 16, 112, 112]]), k=20)
    # windows x0 = 8, 32, 56 (mean 32), y0 = 16, 40, 64 (mean 40): 32 / 8 + 0.2 - 20, 40 / 1000
    assert d == pytest.approx([4.0 + 0.2 - 20.0])
    assert conf == pytest.approx([0.04])
    assert [k for k, _ in pred.asked] == [20] and len(pred.asked[0][1]) == 9


def test_relative_defocus_without_the_lens_slice_reads_from_the_far_end():
    pred = StandIn()
    rois = np.array([[240, 0, 64, 64], [40, 80, 64, 64]])  # focus at slice 30 (above 24) and at 5
    d, conf = relative_defocus(pred, _frame(), rois)
    # RoI 0: middle ask 30 + 0.24 - 24 > 0 -> asked from slice 0: 30 - 0;
    # RoI 1: 5 + 0.24 - 24 < 0 -> from slice 48: 5 + 0.48 - 48
    assert d == pytest.approx([30.0, 5.0 + 0.48 - 48.0])
    assert conf == pytest.approx([0.0, 0.08])
    assert sorted(k for k, _ in pred.asked) == [0, 24, 48]


def test_relative_defocus_reads_a_resampling_model_through_one_window():
    pred = StandIn(fit="area")  # the model resamples the whole RoI: no tiling
    d, _ = relative_defocus(pred, _frame(), np.array([[8, 16, 112, 112]]), k=0)
    assert d == pytest.approx([1.0])
    assert pred.asked[0][1] == [[8, 16, 112, 112]]
