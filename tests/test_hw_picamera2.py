"""picamera2:// source and libcamera-lens:// against a fake ``picamera2`` module (injected
with pytest-mock into sys.modules): configuration, raw unpacking + L/R split, metadata,
timeouts and retries, the shared camera, LensPosition control.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import pytest

from hil_af.drivers import picamera2_source as p2
from hil_af.drivers.fakes import fake_picamera2_module
from hil_af.drivers.registry import open_lens, open_rig, open_source
from hil_af.errors import BadInput, DeviceError, DeviceTimeout
from hil_af.optics import LensMap

W, H = 64, 32
# a dual-pixel sensor declared in the rig profile, views split without colour reduction
DP = {"sensor": {"dual_pixel": True, "cfa": "mono"}}
DP_TOML = '[sensor]\ndual_pixel = true\ncfa = "mono"\n'


def checker(d, n):
    """Raw image whose even columns (left) and odd columns (right) are distinguishable."""
    img = np.zeros((H, W), dtype=np.uint16)
    img[:, 0::2] = 100 + np.arange(W // 2)[None, :] + 5 * np.arange(H)[:, None]
    img[:, 1::2] = 600 + n
    return img


@pytest.fixture
def fake(mocker):
    def install(**kw):
        kw.setdefault("raw_size", (W, H))
        kw.setdefault("image", checker)
        mod = fake_picamera2_module(**kw)
        mocker.patch.dict(sys.modules, {"picamera2": mod})
        return mod

    yield install
    assert not p2._CAMERAS, "a test leaked an open camera"


@pytest.mark.parametrize("fmt,bits", [("SRGGB10_CSI2P", 10), ("SBGGR12_CSI2P", 12), ("SRGGB16", 16)])
def test_capture_unpacks_splits_and_fills_metadata(fake, fmt, bits):
    mod = fake(fmt=fmt, black16=4096, cfa=p2.ORDERS.index(p2.bayer_order(fmt)))
    with open_source(f"picamera2://0?layout=columns&format={fmt}&width={W}&height={H}", profile=DP) as src:
        assert src.sensor_hw == (H, W // 2)
        f1 = src.capture()
        f2 = src.capture()
    black = 4096 / 2 ** (16 - bits)
    want_left = checker(0, 0)[:, 0::2].astype(np.float32) - black
    np.testing.assert_array_equal(f1.left, want_left)
    np.testing.assert_array_equal(f1.right, np.full((H, W // 2), 600 - black, np.float32))
    assert f2.right[0, 0] == 601 - black  # the next frame
    assert f1.left.dtype == np.float32 and f1.shape == (H, W // 2) and f1.origin == (0, 0)
    assert f1.white_level == pytest.approx(2 ** bits - 1 - black)
    assert f1.timestamp_s == pytest.approx(1.0) and f2.timestamp_s == pytest.approx(1.0 + 1 / 30, abs=1e-6)
    assert f1.lens_position == 1.0  # LensPosition metadata (dioptres)
    assert f1.metadata["sensor_format"] == fmt and f1.metadata["ExposureTime"] == 10000
    still = [c for c in mod.calls if c[0] == "configure"]
    assert still == [("configure", "still")]
    cam = mod.instances[0]
    assert cam.config["raw"] == {"format": fmt, "size": (W, H)}
    assert cam.config["queue"] is False  # never a frame older than the capture call
    assert [c for c in mod.calls if c[0] == "capture_request"] == [("capture_request", True)] * 2  # flush=True
    assert cam.outstanding == 0  # every request released
    assert cam.closed and not cam.started


@pytest.mark.parametrize("layout,view_hw", [("rows", (H // 2, W)), ("halves", (H, W // 2)), ("planes", (H // 2, W))])
def test_layouts(fake, layout, view_hw):
    fake()
    size = f"&width={W}&height={H // 2}" if layout == "planes" else ""
    with open_source(f"picamera2://0?layout={layout}&black=0{size}", profile=DP) as src:
        f = src.capture()
    assert f.shape == view_hw == src.sensor_hw
    img = checker(0, 0).astype(np.float32)
    if layout == "rows":
        np.testing.assert_array_equal(f.left, img[0::2])
    elif layout == "halves":
        np.testing.assert_array_equal(f.right, img[:, W // 2:])
    else:
        np.testing.assert_array_equal(f.left, img[: H // 2])


def test_capture_timeout_retried_then_succeeds(fake):
    mod = fake(stall=2)
    src = open_source("picamera2://0?timeout_ms=50&tries=3", profile=DP)
    frame = src.capture()
    assert frame.shape == (H, W // 2) and src.timeouts == 2
    assert mod.calls.count(("cancel_all_and_flush",)) == 2
    src.close()


def test_capture_timeout_exhausted_raises_device_timeout(fake):
    fake(stall=10)
    with open_source("picamera2://0?timeout_ms=50&tries=3", profile=DP) as src:
        with pytest.raises(DeviceTimeout, match=r"picamera2://0: no frame within 0.05 s in 3 tries"):
            src.capture()


def test_exposure_and_gain_controls_passed_to_configuration(fake):
    mod = fake()
    with open_source("picamera2://0?exposure_us=5000&gain=2.5", profile=DP):
        assert mod.instances[0].config["controls"] == {"ExposureTime": 5000, "AnalogueGain": 2.5}


@pytest.mark.parametrize("url,msg", [
    ("picamera2://0?layout=diagonal", "unknown layout 'diagonal'"),
    ("picamera2://0?format=BGGR_PISP_COMP1", "PiSP compressed"),
    ("picamera2://0?format=SRGGB8_CSI2P", "10- and 12-bit"),
    ("picamera2://0?width=64", "both width and height"),
    ("picamera2://0?timeout_ms=0", "timeout_ms must be > 0"),
    ("picamera2://x", "camera index 'x'"),
    ("picamera2://0?fps=30", "unknown query parameter"),
])
def test_url_errors(fake, url, msg):
    fake()
    with pytest.raises(BadInput, match=msg):
        open_source(url)


def test_missing_picamera2_says_how_to_install(mocker):
    mocker.patch.dict(sys.modules, {"picamera2": None})  # import fails
    with pytest.raises(DeviceError, match="apt install python3-picamera2"):
        open_source("picamera2://0", profile=DP)
    assert not p2._CAMERAS


# ---------------------------------------------------------------- libcamera-lens and the shared camera
def test_rig_shares_one_picamera2_between_source_and_lens(fake, tmp_path):
    mod = fake()
    prof = tmp_path / "cm3.toml"
    prof.write_text('[rig]\nsource = "picamera2://0?layout=columns"\nlens = "libcamera-lens://0"\n'
                    '[lens_map]\ndioptres = [0.0, 15.0]\ncodes = [445, 925]\n' + DP_TOML)
    with open_rig(str(prof)) as rig:
        assert len(mod.instances) == 1
        cam = mod.instances[0]
        assert rig.lens.range == (0.0, 15.0)
        rig.lens.move_to(4.5)
        assert cam.controls["LensPosition"] == 4.5 and cam.controls["AfMode"] == 0
        assert rig.lens.position == 4.5  # commanded, no frame since
        frame = rig.source.capture()
        assert frame.lens_position == 4.5 and rig.lens.position == 4.5  # reported by the frame's metadata
        rig.lens.move_to_code(685)  # through the lens map: 685 -> 7.5 dioptres
        assert cam.controls["LensPosition"] == pytest.approx(7.5)
        assert rig.lens.code == pytest.approx(685)
        assert rig.lens.read_position() == pytest.approx(7.5)
    assert cam.closed and mod.calls.count(("close",)) == 1


def test_slew_limited_move_settles_in_proportion_and_is_confirmed_from_frames(fake):
    """af.cpp updateLensPosition: LensPosition moves at most max_slew dioptres a frame (imx708.json: 1.5)."""
    fake(max_slew=1.5, lens_range=(0.0, 15.0, 1.0))
    with open_source("picamera2://0", profile=DP) as src, open_lens("libcamera-lens://0?settle_ms=15") as lens:
        src.capture()
        lens.move_to(2.0)
        small = lens.settle_time_s
        lens.move_to(11.0)
        big = lens.settle_time_s
        assert small == pytest.approx(3 * 0.033333 + 0.015, rel=1e-3)   # 1 slew frame + 2 latency
        # from the last reported 1.0 (conservative: no frame since): ceil(10 / 1.5) = 7 + 2
        assert big == pytest.approx(9 * 0.033333 + 0.015, rel=1e-3)
        frame = src.capture()
        assert frame.lens_position == 11.0 and lens.position == 11.0
        assert src.slew_frames == 4  # 3.5 (at the request), then 5, 6.5, 8, 9.5 dropped; 11 kept


def test_a_lens_that_never_arrives_is_a_timeout_not_a_frame(fake):
    fake(max_slew=0.5)
    with open_source("picamera2://0?confirm_frames=3", profile=DP) as src, open_lens("libcamera-lens://0") as lens:
        lens.move_to(14.0)
        with pytest.raises(DeviceTimeout, match="not the 14 dioptres it was sent to"):
            src.capture()


@pytest.mark.parametrize("afmode_advertised", [True, False])
def test_lens_without_af_algorithm_is_refused_pointing_to_v4l2(fake, afmode_advertised):
    """ipa_base.cpp: without rpi.af in the tuning (IMX519, AD5398 modules) LensPosition is advertised
    (0..32) but ignored and never reported; older stacks do not advertise AfMode either (picamera2
    controls.py would raise "Control AfMode is not advertised by libcamera")."""
    fake(model="imx519", af=False, afmode_advertised=afmode_advertised)
    with pytest.raises(BadInput, match=r"imx519 has no rpi.af algorithm.*v4l2:///dev/v4l-subdevN"):
        open_lens("libcamera-lens://0")
    assert not p2._CAMERAS


def test_cli_refuses_cm3_and_lens_without_af_with_exit_2(fake, capsys):
    from hil_af.cli import main

    fake(model="imx708", cfa=0)
    rc = main(["focus", "picamera2://0?layout=columns", "--lens", "libcamera-lens://0", "--method", "cdaf"])
    err = capsys.readouterr().err
    assert rc == 2 and "imx708) is not a dual-pixel sensor" in err and "RGGB Bayer mosaic" in err
    assert len(err.strip().splitlines()) == 1


def test_profile_declaring_another_model_is_refused(fake):
    fake(model="imx708")
    with pytest.raises(BadInput, match="profile's \\[sensor\\] model is 'imx363' but camera 0 reports Model 'imx708'"):
        open_source("picamera2://0", profile={"sensor": {"dual_pixel": True, "model": "imx363"}})


def test_dual_pixel_bayer_views_are_split_per_photosite_then_reduced(fake):
    """A 2PD sensor: each photosite's L and R sub-pixels share its colour; views are Bayer mosaics."""
    HP, WP = 16, 16  # photosites
    rng = np.random.default_rng(1)
    Lm = rng.integers(100, 900, (HP, WP)).astype(np.uint16)
    Rm = rng.integers(100, 900, (HP, WP)).astype(np.uint16)
    raw = np.empty((HP, 2 * WP), np.uint16)
    raw[:, 0::2], raw[:, 1::2] = Lm, Rm
    fake(raw_size=(2 * WP, HP), cfa=2, image=lambda d, n: raw)  # GBRG
    with open_source("picamera2://0?layout=columns&black=0&plane=green",
                     profile={"sensor": {"dual_pixel": True}}) as src:
        f = src.capture()
        assert src.cfa == "GBRG" and f.shape == (HP // 2, WP // 2) == src.sensor_hw
    green_l = 0.5 * (Lm[0::2, 0::2] + Lm[1::2, 1::2].astype(np.float32))  # GBRG: greens on the diagonal
    np.testing.assert_allclose(f.left, green_l)
    assert f.metadata["cfa"] == "GBRG"


def test_pi5_packed_request_is_replaced_by_unpacked_16_bit(fake):
    """pisp.cpp platformValidate: CSI2P -> *_PISP_COMP1; hil-af re-requests S<ORDER>16 (MSB-aligned)."""
    mod = fake(platform="pisp", cfa=3, black16=4096, fmt="SBGGR10_CSI2P")
    with open_source("picamera2://0?layout=columns&format=SBGGR10_CSI2P", profile=DP) as src:
        f = src.capture()
        cam = mod.instances[0]
        assert cam.config["raw"]["format"] == "SBGGR16"
        assert src.fmt_name == "SBGGR16" and src.bits == 16
        assert "became BGGR_PISP_COMP1; re-requested unpacked SBGGR16" in f.metadata["raw_path"]
    img = checker(0, 0).astype(np.float32) * 64  # 10-bit values MSB-aligned in 16 bits
    np.testing.assert_array_equal(f.left, img[:, 0::2] - 4096)
    assert f.white_level == 65535 - 4096


def test_raw_size_is_the_sensor_mode_not_the_request(fake):
    fake(raw_size=(W, H), modes=[(W, H), (2 * W, 2 * H)], image=lambda d, n: np.full((2 * H, 2 * W), 300, np.uint16))
    with open_source(f"picamera2://0?width={W + 8}&height={H}", profile=DP) as src:
        assert src.raw_size == (2 * W, 2 * H)  # libcamera picked the mode that covers the request
        assert src.capture().shape == (2 * H, W)


@pytest.mark.parametrize("order", p2.ORDERS + ("MONO",))
def test_pisp_formats_of_every_bayer_order_are_recognised(order):
    fmt = f"{order}_PISP_COMP1"
    assert p2.is_pisp_compressed(fmt) and p2.bayer_order(fmt) == (None if order == "MONO" else order)
    with pytest.raises(BadInput, match="PiSP compressed"):
        p2.raw_format(fmt)
    assert p2.unpacked16(fmt) == ("R16" if order == "MONO" else f"S{order}16")


def test_lens_alone_starts_a_default_configuration(fake):
    mod = fake()
    with open_lens("libcamera-lens://0?settle_ms=50") as lens:
        assert lens.settle_time_s == pytest.approx(0.05)
        assert ("configure", "video") in mod.calls and mod.instances[0].started
        lens.move_to(15.0)
        with pytest.raises(BadInput, match="outside 0..15"):
            lens.move_to(15.5)
        with pytest.raises(BadInput):
            lens.move_to(math.nan)
        with pytest.raises(BadInput, match="no lens map"):
            lens.move_to_code(500)


def test_fixed_focus_camera_has_no_lens(fake):
    fake(lens_range=None)
    with pytest.raises(DeviceError, match="no LensPosition control.*i2c://"):
        open_lens("libcamera-lens://0")
    assert not p2._CAMERAS


def test_older_picamera2_without_flush_still_works(fake):
    mod = fake()
    base = mod.Picamera2

    class OldPicamera2(base):  # picamera2 before capture_request grew flush=
        def capture_request(self, wait=None):
            return base.capture_request(self, wait=wait)

    mod.Picamera2 = OldPicamera2
    with open_source("picamera2://0", profile=DP) as src:
        assert src.capture().shape == (H, W // 2)
    assert ("capture_request", None) in mod.calls


def test_lens_in_vcm_codes_through_the_lens_map(fake, tmp_path):
    mod = fake(lens_range=(0.0, 32.0, 1.0))
    prof = tmp_path / "cm3.toml"
    prof.write_text('[rig]\nsource = "picamera2://0"\nlens = "libcamera-lens://0?units=code"\n'
                    '[lens_map]\ndioptres = [0.0, 15.0]\ncodes = [445, 925]\n' + DP_TOML)
    with open_rig(str(prof)) as rig:
        cam = mod.instances[0]
        assert rig.lens.range == (445.0, 925.0)  # the control's 0..32 dpt clipped to the map's knots
        rig.lens.move_to(685)
        assert cam.controls["LensPosition"] == pytest.approx(7.5)
        frame = rig.source.capture()
        assert frame.lens_position == pytest.approx(685)  # frames speak the lens's units
        assert rig.lens.position == pytest.approx(685) and rig.lens.code == pytest.approx(685)
        with pytest.raises(BadInput, match="code is outside 445..925"):
            rig.lens.move_to(930)
    assert mod.instances[0].closed


def test_units_code_needs_a_lens_map(fake):
    fake()
    with pytest.raises(BadInput, match=r"units=code needs a \[lens_map\]"):
        open_lens("libcamera-lens://0?units=code")
    with pytest.raises(BadInput, match="units must be dioptres or code"):
        open_lens("libcamera-lens://0?units=mm")


def test_capture_rois_decodes_only_the_rois_and_matches_the_whole_frame(fake):
    from hil_af.pdaf import crop_patches

    rng = np.random.default_rng(5)
    raw = rng.integers(0, 1024, (H, W)).astype(np.uint16)
    fake(image=lambda d, n: raw, fmt="SGRBG10_CSI2P", cfa=1)
    rois = np.array([[0, 0, 4, 4], [10, 8, 4, 4]])
    with open_source("picamera2://0?layout=columns", profile={"sensor": {"dual_pixel": True}}) as src:
        L, R, md = src.capture_rois(rois)
        f = src.capture()
    wl, wr = crop_patches(f.left, f.right, rois)
    np.testing.assert_array_equal(L, wl)
    np.testing.assert_array_equal(R, wr)
    assert "SensorTimestamp" in md and src.cfa == "GRBG"
