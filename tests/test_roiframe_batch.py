"""RoiFrame hands out the capture's decoded batch as is, and decodes each window once."""

from __future__ import annotations

import numpy as np
import pytest

from hil_af.errors import BadInput
from hil_af.frames import validate_rois
from hil_af.roiframe import RoiFrame

VH, VW = 40, 60
LEFT = np.arange(VH * VW, dtype=np.float32).reshape(VH, VW)
RIGHT = -LEFT


def _decoder(calls):
    """A WindowDecoder over the views LEFT / RIGHT (fresh arrays), recording the windows asked for."""
    def decode(win):
        calls.append(np.asarray(win).tolist())
        return (np.stack([LEFT[y:y + h, x:x + w] for x, y, w, h in win]),
                np.stack([RIGHT[y:y + h, x:x + w] for x, y, w, h in win]))
    return decode


def _crops(view, rois):
    return np.stack([view[y:y + h, x:x + w] for x, y, w, h in rois])


def test_the_capture_rois_come_back_as_the_decoded_batch_read_only():
    calls = []
    rois = np.array([[0, 0, 8, 6], [20, 10, 8, 6], [50, 30, 8, 6]])
    f = RoiFrame(_decoder(calls), rois, (VH, VW))
    assert calls == [rois.tolist()]
    L, R = f.patches(rois)
    L2, R2 = f.patches(rois.astype(np.int32))
    assert L2 is L and R2 is R  # no stacking: the decoder's own arrays
    np.testing.assert_array_equal(L, _crops(LEFT, rois))
    np.testing.assert_array_equal(R, _crops(RIGHT, rois))
    assert not L.flags.writeable and not R.flags.writeable
    with pytest.raises(ValueError):
        L[0, 0, 0] = 1.0
    lv, rv = f.roi_views()
    for i in range(3):
        np.testing.assert_array_equal(lv[i], LEFT[rois[i, 1]:rois[i, 1] + 6, rois[i, 0]:rois[i, 0] + 8])
        np.testing.assert_array_equal(rv[i], RIGHT[rois[i, 1]:rois[i, 1] + 6, rois[i, 0]:rois[i, 0] + 8])
    assert calls == [rois.tolist()]


def test_other_windows_are_stacked_from_the_cache_and_new_ones_decoded_once():
    calls = []
    rois = np.array([[0, 0, 8, 6], [20, 10, 8, 6], [50, 30, 8, 6]])
    f = RoiFrame(_decoder(calls), rois, (VH, VW))
    sub = rois[[2, 0]]  # reordered subset: no decode
    L, R = f.patches(sub)
    np.testing.assert_array_equal(L, _crops(LEFT, sub))
    np.testing.assert_array_equal(R, _crops(RIGHT, sub))
    assert not L.flags.writeable and len(calls) == 1
    more = np.array([[20, 10, 8, 6], [1, 1, 8, 6], [1, 1, 8, 6]])  # one known, one new (twice)
    L, _ = f.patches(more)
    np.testing.assert_array_equal(L, _crops(LEFT, more))
    assert calls[1:] == [[[1, 1, 8, 6]]]
    assert f.decoded_px == 4 * 8 * 6
    with pytest.raises(BadInput, match="one size"):
        f.patches(np.array([[0, 0, 8, 6], [0, 0, 6, 6]]))


def test_a_capture_with_a_repeated_or_second_size_roi_still_gives_its_patches():
    calls = []
    rois = np.array([[0, 0, 8, 6], [0, 0, 8, 6], [5, 5, 4, 4]])
    f = RoiFrame(_decoder(calls), rois, (VH, VW))
    assert sorted(map(len, calls)) == [1, 1]  # one call per size, the repeat decoded once
    np.testing.assert_array_equal(f.patches(rois[:2])[0], _crops(LEFT, rois[:2]))
    lv, _ = f.roi_views()
    np.testing.assert_array_equal(lv[2], LEFT[5:9, 5:9])


def test_validate_rois_names_the_first_roi_outside_the_view():
    rois = [[0, 0, 8, 8], [0, 0, 0, 8], [-1, 0, 8, 8], [60, 40, 8, 8]]
    with pytest.raises(BadInput, match=r"^roi\[1\] = \(x=0, y=0, w=0, h=8\) is not inside the 60x40 view$"):
        validate_rois(rois, (VH, VW), "roi")
    with pytest.raises(BadInput, match=r"^roi\[2\] = \(x=-1, y=0, w=8, h=8\)"):
        validate_rois([rois[0], rois[0], rois[2], rois[3]], (VH, VW), "roi")
    with pytest.raises(BadInput, match=r"^roi\[0\] = \(x=53, y=0, w=8, h=8\) is not inside"):
        validate_rois([[53, 0, 8, 8]], (VH, VW), "roi")
    assert validate_rois([52, 32, 8, 8], (VH, VW)).tolist() == [[52, 32, 8, 8]]


def test_exposure_samples_are_every_4th_pixel_of_each_roi_in_roi_order():
    from hil_af.controller.session import _exposure_samples

    for rois in (np.array([[20, 10, 8, 6], [0, 0, 8, 6], [50, 30, 8, 6]]),   # one size: the batch
                 np.array([[20, 10, 8, 6], [0, 0, 5, 9], [20, 10, 8, 6]])):  # two sizes, a repeat
        f = RoiFrame(_decoder([]), rois, (VH, VW))
        want = [np.concatenate([v[y:y + h:4, x:x + w:4].ravel() for x, y, w, h in rois]) for v in (LEFT, RIGHT)]
        for got, w in zip(_exposure_samples(f), want):
            np.testing.assert_array_equal(got, w)
