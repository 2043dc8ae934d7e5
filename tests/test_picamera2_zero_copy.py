"""picamera2:// reads the RoIs from picamera2's mapping of the camera buffer, never a copy of it.

The fake ``picamera2`` module (hil_af.drivers.fake_picamera2, injected into
sys.modules) models picamera2's request.py and allocators: ``make_array``
copies the whole buffer, ``MappedArray`` is a view valid only inside its
context and only while the request is held, the camera owns two buffers and
writes later frames into a released one.  The first tests pin that model
(what the real library does, as the fake's docstring cites); the others hold
the driver to it, on both allocators: the RoI path neither calls the copying
functions nor copies the buffer itself (allocation peak), keeps no view past
a context (the legacy allocator's unmap raises BufferError), releases every
request, and refuses to read a frame's buffer once it went back to the
camera.
"""

from __future__ import annotations

import sys
import tracemalloc

import numpy as np
import pytest

from hil_af.drivers import picamera2_source as p2
from hil_af.drivers.fakes import fake_picamera2_module
from hil_af.drivers.registry import open_source
from hil_af.errors import DeviceError
from hil_af.pdaf import crop_patches
from hil_af.roiframe import RoiFrame

W, H = 1024, 512                    # RAW10 columns layout, mono: views 512 x 512
STRIDE = 1280                       # 1024 px x 5/4 bytes, 32-byte aligned
DP = {"sensor": {"dual_pixel": True, "cfa": "mono"}}
ROIS = np.array([[16, 16, 16, 16], [200, 40, 16, 16], [400, 300, 16, 16], [64, 480, 16, 16]])
RAW = np.random.default_rng(3).integers(0, 1024, (H, W)).astype(np.uint16)


def frame_n(d, n):
    """A different raw image every frame: a stale buffer would show."""
    return ((RAW.astype(np.int64) + 37 * n) % 1024).astype(np.uint16)


@pytest.fixture
def fake(mocker):
    def install(image=frame_n, **kw):
        mod = fake_picamera2_module(raw_size=(W, H), fmt="SRGGB10_CSI2P", image=image, **kw)
        mocker.patch.dict(sys.modules, {"picamera2": mod})
        return mod

    yield install
    assert not p2._CAMERAS, "a test leaked an open camera"


def copies(mod) -> list:
    return [c for c in mod.calls if c[0] in ("make_array", "make_buffer")]


# --------------------------------------------------------------------------- the library model
def started_camera(mod, buffer_count=2):
    cam = mod.Picamera2(0)
    cam.configure(cam.create_still_configuration(raw={"format": "SRGGB10_CSI2P"}, buffer_count=buffer_count))
    cam.start()
    return cam


def test_fake_mapped_array_is_the_buffer_and_make_array_a_copy(fake):
    mod = fake()  # allocator "dma": the persistent mapping
    cam = started_camera(mod)
    req = cam.capture_request()
    with mod.MappedArray(req, "raw") as m:
        assert m.array.shape == (H, STRIDE) and m.array.dtype == np.uint8
        assert np.shares_memory(m.array, req.request.data)  # the camera buffer itself
        first = int(m.array[0, 0])
    with mod.MappedArray(req, "raw", reshape=False) as m:
        assert m.array.shape == (H * STRIDE,)
    a, b = req.make_array("raw"), req.make_buffer("raw")
    assert a.shape == (H, STRIDE) and b.shape == (H * STRIDE,) and a[0, 0] == first
    assert not np.shares_memory(a, req.request.data) and not np.shares_memory(b, req.request.data)
    assert copies(mod) == [("make_array", "raw"), ("make_buffer", "raw")]
    assert mod.calls.count(("map", "raw")) == 2
    req.release()


def test_fake_view_must_not_outlive_its_context_nor_the_request(fake):
    mod = fake(allocator="legacy")
    cam = started_camera(mod)
    req = cam.capture_request()
    with pytest.raises(BufferError, match="outlived"):
        with mod.MappedArray(req, "raw") as m:
            kept = m.array[10:20]  # noqa: F841  (a view kept past the context)
    with mod.MappedArray(req, "raw") as m:
        with pytest.raises(RuntimeError, match="released while a MappedArray"):
            req.release()
    req.release()
    with pytest.raises(KeyError):  # request.py: stream_map emptied at release
        mod.MappedArray(req, "raw")
    with pytest.raises(RuntimeError, match="Stream 'raw' is not defined"):
        req.make_array("raw")
    with pytest.raises(AssertionError):
        req.get_metadata()
    with pytest.raises(RuntimeError, match="negative ref_count"):
        req.release()


def test_fake_camera_owns_two_buffers_and_recycles_a_released_one(fake):
    mod = fake()
    cam = started_camera(mod)
    a, b = cam.capture_request(), cam.capture_request()
    with pytest.raises(TimeoutError):  # both buffers held by the application: no frame completes
        cam.wait(cam.capture_request(wait=False), timeout=0.01)
    buf_a = a.request
    before = buf_a.data.copy()
    a.release()
    c = cam.capture_request()  # the next frame lands in the buffer a gave back
    assert c.request is buf_a and not np.array_equal(buf_a.data, before)
    b.release(), c.release()


# --------------------------------------------------------------------------- the driver
@pytest.mark.parametrize("allocator", ["dma", "legacy"])
def test_roi_frame_reads_the_mapped_buffer_and_never_copies_it(fake, allocator):
    mod = fake(allocator=allocator)
    with open_source("picamera2://0?layout=columns", profile=DP) as src:
        for _ in range(5):
            f = src.capture_roi_frame(ROIS)
            assert isinstance(f, RoiFrame)
        assert copies(mod) == []  # neither make_array nor make_buffer
        assert mod.calls.count(("map", "raw")) == 5  # one mapping per capture (one RoI size)
        whole = src.capture()
        assert copies(mod) == [("make_array", "raw")]  # the whole-frame path copies, as before
        f = src.capture_roi_frame(ROIS)
    L, R = f.patches(ROIS)
    wl, wr = crop_patches(frame_n(0, 6)[:, 0::2].astype(np.float32), frame_n(0, 6)[:, 1::2].astype(np.float32), ROIS)
    black = 4096 / 64
    np.testing.assert_array_equal(L, wl - black)
    np.testing.assert_array_equal(R, wr - black)
    assert whole.timestamp_s < f.timestamp_s


def test_roi_capture_allocates_a_fraction_of_the_buffer(fake):
    """Whatever copies it (make_array, np.array of the view...), a whole-buffer copy shows in the
    allocation peak: the whole-frame path's does, the RoI path's must not."""
    still = frame_n(0, 0)
    fake(image=lambda d, n: still)  # the same image: the fake writes each buffer once
    with open_source("picamera2://0?layout=columns", profile=DP) as src:
        src.capture_roi_frame(ROIS), src.capture_roi_frame(ROIS), src.capture_roi_frame(ROIS)  # both buffers written

        def peak(fn):
            tracemalloc.start()
            try:
                fn()
                return tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()

        roi_peak = peak(lambda: src.capture_roi_frame(ROIS))
        make_array_peak = peak(lambda: src.capture())
    assert make_array_peak >= H * STRIDE  # the measure sees a whole-buffer copy
    assert roi_peak < H * STRIDE / 20


def test_requests_are_held_one_at_a_time_and_all_released(fake):
    mod = fake(allocator="legacy")
    with open_source("picamera2://0?layout=columns", profile=DP) as src:
        cam = mod.instances[0]
        assert cam.config["buffer_count"] == 2
        for _ in range(6):  # never both buffers out: no capture stalls
            src.capture_roi_frame(ROIS)
            assert cam.outstanding == 1  # the latest RoiFrame's request
        src.capture()
        assert cam.outstanding == 0
        src.capture_roi_frame(ROIS)
        L, R, _ = src.capture_rois(ROIS)  # decodes and releases at once
        assert cam.outstanding == 0 and L.shape == (4, 16, 16)
        src.capture_roi_frame(ROIS)
    assert cam.outstanding == 0 and src.timeouts == 0  # close() released the last one


@pytest.mark.parametrize("allocator", ["dma", "legacy"])
def test_a_roi_frame_reads_new_windows_until_the_next_capture_only(fake, allocator):
    fake(allocator=allocator)
    wide = np.array([[100, 40, 48, 16]])  # a window not decoded at capture (PDAF's wider look)
    with open_source("picamera2://0?layout=columns", profile=DP) as src:
        f = src.capture_roi_frame(ROIS)
        n = f.decoded_px
        L, R = f.patches(wide)  # decoded now, from the held buffer
        assert f.decoded_px == n + 48 * 16
        img = frame_n(0, 0).astype(np.float32) - 4096 / 64
        np.testing.assert_array_equal(L[0], img[40:56, 0::2][:, 100:148])
        kept = f.patches(ROIS)
        src.capture_roi_frame(ROIS)  # this frame's buffer goes back to the camera
        with pytest.raises(DeviceError, match="went back to the camera"):
            f.patches(np.array([[300, 300, 16, 16]]))
        again = f.patches(ROIS)  # windows decoded before stay (new arrays, not views of the buffer)
        np.testing.assert_array_equal(again[0], kept[0])
        np.testing.assert_array_equal(again[1], kept[1])
