"""The controller's RoI-only capture path on ``picamera2://`` (hil_af.controller.roi_path).

A fake ``picamera2`` module (hil_af.drivers.fake_picamera2, injected into
sys.modules) serves RAW10 Bayer frames of a dual-pixel sensor whose two views
are a texture shifted apart in proportion to the lens's distance from focus.
Checked: an AF cycle never unpacks the whole frame, only about the RoIs'
raw rectangles; its result (trace included) is identical to the whole-frame
path's on the same raw buffers; the model receives the same inputs (RoI-PE
planes at the RoIs' true positions on the sensor); the PDAF per-position
calibration and the contrast measure give identical per-RoI values.
"""

from __future__ import annotations

import functools
import sys

import numpy as np
import pytest

from hil_af import rawdecode, rawroi
from hil_af.clock import SimClock
from hil_af.controller.core import Controller
from hil_af.controller.methods import METHODS
from hil_af.controller.roi_path import pe_predict
from hil_af.controller.contrast import roi_contrast
from hil_af.drivers import picamera2_source as p2
from hil_af.drivers.fakes import fake_picamera2_module
from hil_af.drivers.registry import open_rig
from hil_af.frames import DualPixelFrame, grid_rois
from hil_af.paths import REPO_ROOT, models_dir
from hil_af.model.encoding import model_windows
from hil_af.roiframe import RoiFrame

VH, VW = 256, 384                 # the view plane: the sim-default calibrations' sensor_hw
RAW_W, RAW_H = 4 * VW, 2 * VH     # columns layout (L R L R ...), RGGB: one view pixel = a 2x2 Bayer cell
CODES = 800.0                     # lens codes 0..800 <-> 0..15 dioptres; 49 slices 16.7 codes apart
GAIN = -0.0125                    # disparity px per code from focus (the sim-default calibration's)
FOCUS_CODE = 430.0
CAL = REPO_ROOT / "calibration/examples/sim-default"
ROIS = grid_rois((VH, VW), 3, 4, size=32)   # 12 RoIs of 32 x 32 view pixels
WINDOWS = model_windows(ROIS, 64, (VH, VW))  # what the 64 px PE model reads for them
needs_model = pytest.mark.skipif(not (models_dir() / "step1.onnx").exists(), reason="no shipped model in models/")

_rng = np.random.default_rng(7)
_WAVES = [(_rng.uniform(-0.6, 0.6), _rng.uniform(-0.4, 0.4), _rng.uniform(0, 6.3), _rng.uniform(20, 60))
          for _ in range(24)]


@functools.lru_cache(maxsize=64)
def views(code: float) -> tuple[np.ndarray, np.ndarray]:
    """Left/right views (DN over black) at lens ``code``: one texture, shifted by +-d/2 (d = GAIN x defocus)."""
    d = GAIN * (code - FOCUS_CODE)
    y, x = np.mgrid[0:VH, 0:VW].astype(np.float64)

    def tex(xs):
        return 400 + sum(a * np.sin(fx * xs + fy * y + ph) for fx, fy, ph, a in _WAVES)

    return tex(x + d / 2), tex(x - d / 2)


def raw_image(code: float, frame_no: int) -> np.ndarray:
    """The sensor's RAW10 image uint16 [RAW_H, RAW_W] (black level 64 DN), noise seeded by the frame number."""
    L, R = views(code)
    noise = np.random.default_rng(frame_no)
    raw = np.empty((RAW_H, RAW_W))
    for k, v in enumerate((L, R)):
        cells = np.repeat(np.repeat(v, 2, axis=0), 2, axis=1)
        raw[:, k::2] = cells + noise.normal(0, 2.0, cells.shape)
    return np.clip(np.rint(raw + 64), 0, 1023).astype(np.uint16)


def roi_raw_mask(rois: np.ndarray) -> np.ndarray:
    """True on the raw pixels that hold a RoI (columns layout: L R pairs of 2x2 cells, 4 raw columns
    a view pixel, one RAW10 group)."""
    m = np.zeros((RAW_H, RAW_W), bool)
    for x, y, w, h in rois:
        m[2 * y:2 * (y + h), 4 * x:4 * (x + w)] = True
    return m


@pytest.fixture
def rig(mocker, tmp_path):
    """``rig(image=raw_image)``: a fresh fake camera + picamera2:// rig on a virtual clock."""
    prof = tmp_path / "dp.toml"
    prof.write_text('[rig]\nsource = "picamera2://0?layout=columns&format=SRGGB10_CSI2P"\n'
                    'lens = "libcamera-lens://0?units=code"\n'
                    f'[lens_map]\ndioptres = [0.0, 15.0]\ncodes = [0, {CODES:g}]\n'
                    '[sensor]\ndual_pixel = true\n')
    opened = []

    def open_(image=None):
        img = image or (lambda d, n: raw_image(d / 15.0 * CODES, n))
        # the legacy allocator: a view of a camera buffer kept past its MappedArray context raises
        mod = fake_picamera2_module(raw_size=(RAW_W, RAW_H), fmt="SRGGB10_CSI2P", cfa=0, image=img,
                                    allocator="legacy")
        mocker.patch.dict(sys.modules, {"picamera2": mod})
        r = open_rig(str(prof), clock=SimClock())
        opened.append(r)
        return r

    yield open_
    for r in opened:
        r.close()
    assert not p2._CAMERAS, "a test leaked an open camera"


def focus(rig, method: str, roi_decode: bool, start: float = 150.0, image=None):
    r = rig(image)
    r.lens.move_to(start)
    ctl = Controller(r, method=method, roi_decode=roi_decode, calibration=str(CAL / "cal.json"),
                     global_calibration=str(CAL / "cal-global.json"), zncc_calibration=str(CAL / "cal-zncc.json"))
    res = ctl.focus(rois=ROIS)
    r.close()
    return res


@pytest.fixture
def unpacked(mocker):
    """Spies on the two unpackers: the whole-frame one (rawdecode) and the windows' one (rawroi)."""
    return mocker.spy(rawdecode, "unpack"), mocker.spy(rawroi, "unpack")


@needs_model
@pytest.mark.parametrize("method", METHODS)
def test_a_focus_cycle_gives_the_whole_frame_result_and_never_decodes_the_whole_frame(rig, unpacked, method):
    whole_unpack, roi_unpack = unpacked
    want = focus(rig, method, roi_decode=False)
    assert whole_unpack.call_count >= want.captures  # the whole-frame path: every frame unpacked whole
    assert roi_unpack.call_count == 0
    whole_unpack.reset_mock()
    got = focus(rig, method, roi_decode=True)
    assert whole_unpack.call_count == 0  # not one frame unpacked whole
    assert roi_unpack.call_count >= got.captures
    # pixels unpacked per frame: the RoIs' raw rectangles (the 64 px windows the PE model reads
    # around these 32 px RoIs, PDAF's second look or a grown contrast window: wider ones), far from
    # the 786k of the frame
    px = sum(c.args[1] * c.args[2] for c in roi_unpack.call_args_list)
    model = method in ("pe", "pe2", "hybrid")  # on this small view the model's 64 px windows cover half of it
    roi_px = int(roi_raw_mask(np.concatenate([ROIS, WINDOWS]) if model else ROIS).sum())
    assert px / got.captures < 4 * roi_px
    assert px / got.captures < (0.7 if model else 0.5) * RAW_W * RAW_H
    assert got.to_json(trace=True) == want.to_json(trace=True)
    assert got.captures >= 1 and (got.state.value, got.reason) == (want.state.value, want.reason)


@needs_model
def test_pe2_reads_nothing_outside_the_model_windows_and_the_model_gets_the_same_inputs(rig, mocker):
    """Raw pixels outside the RAW10 groups of the windows the model reads (the 32 px RoIs grown to
    64 px about their centres) are saturated garbage: the RoI path gives the clean whole-frame result
    (so it read none of them) and the same model inputs, RoI-PE included."""
    import onnxruntime as ort

    run = mocker.spy(ort.InferenceSession, "run")
    outside = ~roi_raw_mask(WINDOWS)

    def poisoned(d, n):
        img = raw_image(d / 15.0 * CODES, n)
        img[outside] = 1023
        return img

    want = focus(rig, "pe2", roi_decode=False)
    want_inputs = [c.args[2]["x"] for c in run.call_args_list]
    run.reset_mock()
    got = focus(rig, "pe2", roi_decode=True, image=poisoned)
    got_inputs = [c.args[2]["x"] for c in run.call_args_list]
    assert got.to_json(trace=True) == want.to_json(trace=True)
    assert len(got_inputs) == len(want_inputs) == 2  # step 1 and step 2, one batch each
    for a, b in zip(got_inputs, want_inputs):
        np.testing.assert_array_equal(a, b)
    # RoI-PE x / y planes: the true full-plane positions of the 64 px windows' pixels
    x = got_inputs[0]
    for b, (rx, ry, w, h) in enumerate(WINDOWS):
        assert (w, h) == (64, 64)
        assert (rx + 32, ry + 32) == (ROIS[b, 0] + 16, ROIS[b, 1] + 16)  # the RoI's centre
        cx = rx + np.arange(64) + 0.5
        cy = ry + np.arange(64) + 0.5
        np.testing.assert_allclose(x[b, 2, 0], 2 * cx / VW - 1, atol=1e-6)
        np.testing.assert_allclose(x[b, 3, :, 0], 2 * cy / VH - 1, atol=1e-6)
    # the poison is there: the whole-frame path on the same buffers sees a saturated frame
    bad = focus(rig, "pe2", roi_decode=False, image=poisoned)
    assert bad.state.value == "Failed" and "saturated" in bad.reason


@needs_model
def test_estimators_give_identical_per_roi_values_on_a_roi_frame_and_a_whole_frame(rig):
    from hil_af.calibration.predict import PdafPredictor
    from hil_af.model.inference import PEPredictor

    r = rig(lambda d, n: raw_image(250.0, 0))  # the same raw buffer for every capture
    src = r.source
    mixed = np.vstack([ROIS[:6], grid_rois((VH, VW), 2, 3, size=48)])  # two RoI sizes
    whole = src.capture()  # first: a capture releases the latest RoiFrame's buffer
    roi_frame = src.capture_roi_frame(mixed)
    assert isinstance(roi_frame, RoiFrame) and isinstance(whole, DualPixelFrame)
    assert roi_frame.decoded_px == int((mixed[:, 2] * mixed[:, 3]).sum())
    assert (roi_frame.lens_position, roi_frame.white_level, roi_frame.sensor_hw) == \
        (whole.lens_position, whole.white_level, whole.sensor_hw)
    drop = lambda md: {k: v for k, v in md.items() if k != "SensorTimestamp"}  # noqa: E731  (two frames)
    assert drop(roi_frame.metadata) == drop(whole.metadata) and "SensorTimestamp" in roi_frame.metadata
    assert roi_frame.timestamp_s - whole.timestamp_s == pytest.approx(1 / 30, abs=1e-6)
    for name in ("cal.json", "cal-global.json", "cal-zncc.json"):  # per-position lookup, flat field, wide look
        pdaf = PdafPredictor.from_file(CAL / name)
        a, b = pdaf.predict(roi_frame, mixed), pdaf.predict(whole, mixed)
        for field in ("target_position", "defocus", "disparity_px", "confidence", "in_range"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    np.testing.assert_array_equal(roi_contrast(roi_frame, mixed), roi_contrast(whole, mixed))
    pe = PEPredictor(models_dir(), step=1)
    one = pe_predict(pe, roi_frame, ROIS, 10, 49), pe.predict(whole, ROIS, 10, 49)
    for field in ("index", "confidence", "probs", "expected"):
        np.testing.assert_array_equal(getattr(one[0], field), getattr(one[1], field))
    two = pe_predict(pe, roi_frame, mixed, 10, 49), pe.predict(whole, mixed, 10, 49)  # one batch per size
    np.testing.assert_array_equal(two[0].index, two[1].index)
    np.testing.assert_allclose(two[0].probs, two[1].probs, rtol=1e-5, atol=1e-7)
    r.close()


def test_continuous_af_watches_the_rois_without_decoding_whole_frames(rig, unpacked):
    whole_unpack, roi_unpack = unpacked
    r = rig()
    ctl = Controller(r, method="cdaf")
    ctl.set_windows(ROIS[:2])
    ctl.set_mode("continuous")
    ctl.continuous_step()  # first call: a cycle
    n = roi_unpack.call_count
    assert ctl.continuous_step() is None  # the reference frame
    assert roi_unpack.call_count == n + 1 and whole_unpack.call_count == 0
    r.close()
