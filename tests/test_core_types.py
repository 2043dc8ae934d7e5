"""LensMap, DualPixelFrame, RoI helpers, clocks."""

import numpy as np
import pytest

from hil_af.clock import SimClock
from hil_af.errors import BadInput
from hil_af.frames import DualPixelFrame, centre_roi, grid_rois, validate_rois
from hil_af.optics import LensMap


def test_lens_map_imx708_round_trip_and_extrapolation():
    m = LensMap.from_pairs([0.0, 445, 15.0, 925])
    assert m.to_code(0.0) == pytest.approx(445)
    assert m.to_code(7.5) == pytest.approx(685)
    assert m.to_dioptres(925) == pytest.approx(15.0)
    assert m.to_dioptres(m.to_code(3.3)) == pytest.approx(3.3)
    assert m.to_code(16.0) == pytest.approx(925 + 32)  # extrapolated along the end segment
    assert m.clamp_dioptres(16.0) == 15.0
    np.testing.assert_allclose(m.to_code(np.array([0.0, 15.0])), [445, 925])


def test_lens_map_piecewise_and_decreasing_codes():
    m = LensMap((0.0, 2.0, 10.0), (1000.0, 800.0, 0.0))
    assert m.to_code(1.0) == pytest.approx(900)
    assert m.to_code(6.0) == pytest.approx(400)
    assert m.to_dioptres(400) == pytest.approx(6.0)


@pytest.mark.parametrize("d,c,msg", [((0.0,), (1.0,), ">= 2"), ((1.0, 0.0), (0.0, 1.0), "strictly increasing"),
                                     ((0.0, 1.0, 2.0), (0.0, 5.0, 1.0), "monotonic"), ((0.0, np.nan), (0.0, 1.0), "finite")])
def test_lens_map_rejects_bad_knots(d, c, msg):
    with pytest.raises(BadInput, match=msg):
        LensMap(d, c)


def test_frame_validation_and_crop():
    f = DualPixelFrame(np.ones((8, 10)), np.zeros((8, 10)), sensor_hw=(20, 20), origin=(4, 6))
    assert f.left.dtype == np.float32 and f.shape == (8, 10)
    left, right = f.crop((2, 1, 4, 3))
    assert left.shape == (3, 4) and right.sum() == 0
    with pytest.raises(BadInput, match="not inside"):
        f.crop((8, 0, 4, 4))
    with pytest.raises(BadInput, match="differ in shape"):
        DualPixelFrame(np.ones((8, 10)), np.ones((8, 9)))
    with pytest.raises(BadInput, match="does not fit"):
        DualPixelFrame(np.ones((8, 10)), np.ones((8, 10)), sensor_hw=(10, 10), origin=(4, 0))


def test_roi_helpers():
    assert centre_roi((256, 384)).tolist() == [160, 96, 64, 64]
    g = grid_rois((256, 384), 3, 4)
    assert g.shape == (12, 4) and np.all(g[:, 2:] == 64)
    validate_rois(g, (256, 384))
    with pytest.raises(BadInput, match=r"rois\[1\]"):
        validate_rois([[0, 0, 8, 8], [380, 0, 8, 8]], (256, 384))
    with pytest.raises(BadInput, match="smaller than 8"):
        grid_rois((16, 16), 4, 4)


def test_sim_clock_moves_only_when_asked():
    c = SimClock()
    assert c.monotonic() == 0.0
    c.sleep(0.25)
    assert c.monotonic() == 0.25
    with pytest.raises(ValueError):
        c.sleep(-1)
