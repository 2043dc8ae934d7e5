"""One conformance suite for every LensActuator and FrameSource, parametrised over drivers.

Each hardware driver runs over its boundary fake (hil_af.drivers.fakes); the
simulator runs when hil_af.sim is in the build; replay runs on a numpy-made
focal stack.  A driver that passes here can stand in for any other in the
controller.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from hil_af.clock import SimClock
from hil_af.drivers.base import FrameSource, LensActuator
from hil_af.drivers.fakes import (
    Ak7375Model, Dw98xxModel, Dw9714Model, FakeI2CBus, FakeSerialPort, FakeV4L2Subdev, MicroPythonI2C,
    fake_picamera2_module,
)
from hil_af.drivers.i2c_vcm import I2CVcm
from hil_af.drivers.registry import open_lens, open_rig, open_source
from hil_af.drivers.serial_bridge import SerialBridgeLens
from hil_af.drivers.spy import SpyLens
from hil_af.drivers.v4l2_lens import V4L2Lens
from hil_af.drivers.vcm_chips import CHIPS
from hil_af.errors import BadInput
from hil_af.frames import DualPixelFrame
from hil_af.optics import LensMap

import hil_af.sim.rig  # noqa: E402,F401  (part of the package: an import error must fail, not skip)


def numpy_stack(path, n=5, H=16, W=24):
    rng = np.random.default_rng(0)
    left = rng.integers(64, 1000, size=(n, H, W)).astype(np.uint16)
    right = rng.integers(64, 1000, size=(n, H, W)).astype(np.uint16)
    meta = {"format": "focal-stack", "version": 1, "black_level": 64, "white_level": 1023, "lens_units": "vcm_code"}
    np.savez(path, left=left, right=right, lens_positions=np.linspace(200.0, 600.0, n),
             rois=np.array([[0, 0, 8, 8]], np.int32), gt_index=np.array([2], np.int16),
             sensor_hw=np.array([H, W], np.int32), origin=np.array([0, 0], np.int32), meta=np.array(json.dumps(meta)))
    return path


def _firmware():
    """The serial-bridge firmware's protocol module (drivers/serial-bridge/bridge_protocol.py)."""
    path = Path(__file__).resolve().parents[1] / "drivers" / "serial-bridge" / "bridge_protocol.py"
    spec = importlib.util.spec_from_file_location("bridge_protocol", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bridge_port():
    fw = _firmware()
    bus = FakeI2CBus({0x0C: Dw98xxModel()})
    return FakeSerialPort(fw.Bridge(MicroPythonI2C(bus), chip="dw9807").handle_line)


DP = {"sensor": {"dual_pixel": True, "cfa": "mono"}}  # the fake camera declared a (mono) dual-pixel sensor


def _fake_picamera2(request, **kw):
    mod = fake_picamera2_module(raw_size=(32, 16), **kw)
    request.getfixturevalue("mocker").patch.dict(sys.modules, {"picamera2": mod})
    return mod


# name -> factory(request, tmp_path) returning an open lens (closed by the fixture)
LENSES = {
    "sim": lambda rq, tmp: open_rig("sim://?seed=1", clock=SimClock()),
    "replay": lambda rq, tmp: open_rig(f"replay://{numpy_stack(tmp / 's.npz')}", clock=SimClock()),
    "i2c-dw9807": lambda rq, tmp: I2CVcm(FakeI2CBus({12: Dw98xxModel(busy_polls=1)}), 12, CHIPS["dw9807"], clock=SimClock()),
    "i2c-dw9817": lambda rq, tmp: I2CVcm(FakeI2CBus({12: Dw98xxModel()}), 12, CHIPS["dw9817"], clock=SimClock()),
    "i2c-ak7375": lambda rq, tmp: I2CVcm(FakeI2CBus({12: Ak7375Model()}), 12, CHIPS["ak7375"], clock=SimClock()),
    "i2c-dw9714": lambda rq, tmp: I2CVcm(FakeI2CBus({12: Dw9714Model()}), 12, CHIPS["dw9714"], clock=SimClock(),
                                         ramp=64),
    "v4l2": lambda rq, tmp: V4L2Lens(FakeV4L2Subdev(maximum=1023), clock=SimClock()),
    "serial": lambda rq, tmp: SerialBridgeLens(_bridge_port()),
    "libcamera-lens": lambda rq, tmp: (_fake_picamera2(rq), open_lens("libcamera-lens://0"))[1],
    "libcamera-lens-codes": lambda rq, tmp: (_fake_picamera2(rq), open_lens(
        "libcamera-lens://0?units=code", lens_map=LensMap((0.0, 15.0), (445.0, 925.0))))[1],
    "spy+i2c": lambda rq, tmp: SpyLens(I2CVcm(FakeI2CBus({12: Dw98xxModel()}), 12, CHIPS["dw9807"], clock=SimClock())),
}

SOURCES = {
    "sim": lambda rq, tmp: open_rig("sim://?seed=1", clock=SimClock()),
    "replay": lambda rq, tmp: open_rig(f"replay://{numpy_stack(tmp / 's.npz')}", clock=SimClock()),
    "picamera2-raw10-columns": lambda rq, tmp: (_fake_picamera2(rq), open_source("picamera2://0?layout=columns", profile=DP))[1],
    "picamera2-raw12-halves": lambda rq, tmp: (_fake_picamera2(rq, fmt="SRGGB12_CSI2P"),
                                               open_source("picamera2://0?layout=halves", profile=DP))[1],
    "picamera2-u16-rows": lambda rq, tmp: (_fake_picamera2(rq, fmt="SRGGB16"), open_source("picamera2://0?layout=rows", profile=DP))[1],
}


def _params(table):
    return list(table)


@pytest.fixture(params=_params(LENSES))
def lens(request, tmp_path):
    obj = LENSES[request.param](request, tmp_path)
    lens = obj.lens if hasattr(obj, "source") else obj
    yield lens
    obj.close()


@pytest.fixture(params=_params(SOURCES))
def source(request, tmp_path):
    obj = SOURCES[request.param](request, tmp_path)
    yield obj.source if hasattr(obj, "lens") and hasattr(obj, "source") else obj
    obj.close()


def _tol(lens) -> float:
    lo, hi = lens.range
    return max(1.0, 1e-3 * (hi - lo))  # integer-code drivers round to the nearest code


# ---------------------------------------------------------------- LensActuator
def test_lens_satisfies_protocol(lens):
    assert isinstance(lens, LensActuator)


def test_lens_range_is_finite_and_ordered(lens):
    lo, hi = lens.range
    assert math.isfinite(lo) and math.isfinite(hi) and lo < hi


def test_lens_settle_time_is_seconds(lens):
    s = lens.settle_time_s
    assert math.isfinite(s) and 0 <= s < 5


@pytest.mark.parametrize("frac", [0.0, 1.0, 0.5, 0.25])
def test_lens_goes_where_it_is_sent(lens, frac):
    lo, hi = lens.range
    target = lo + frac * (hi - lo)
    lens.move_to(target)
    assert lens.position == pytest.approx(target, abs=_tol(lens))


@pytest.mark.parametrize("bad", ["above", "below", "nan", "inf"])
def test_lens_rejects_out_of_range_with_bad_input(lens, bad):
    lo, hi = lens.range
    mid = lo + 0.5 * (hi - lo)
    lens.move_to(mid)
    value = {"above": hi + 0.5 * (hi - lo) + 2, "below": lo - 0.5 * (hi - lo) - 2, "nan": math.nan, "inf": math.inf}[bad]
    with pytest.raises(BadInput):
        lens.move_to(value)
    assert lens.position == pytest.approx(mid, abs=_tol(lens))


def test_lens_is_a_context_manager(lens):
    assert lens.__enter__() is lens


# ---------------------------------------------------------------- FrameSource
def test_source_satisfies_protocol(source):
    assert isinstance(source, FrameSource)


def test_source_frames_are_well_formed(source):
    f = source.capture()
    assert isinstance(f, DualPixelFrame)
    assert f.left.dtype == np.float32 and f.right.dtype == np.float32 and f.left.shape == f.right.shape
    assert np.all(np.isfinite(f.left)) and np.all(np.isfinite(f.right))
    assert tuple(f.sensor_hw) == tuple(source.sensor_hw)
    y0, x0 = f.origin
    assert y0 + f.shape[0] <= f.sensor_hw[0] and x0 + f.shape[1] <= f.sensor_hw[1]
    assert f.white_level is None or f.white_level > 0


def test_source_timestamps_do_not_go_back(source):
    t = [source.capture().timestamp_s for _ in range(3)]
    assert all(math.isfinite(v) for v in t) and t == sorted(t)


def test_source_is_a_context_manager(source):
    assert source.__enter__() is source
