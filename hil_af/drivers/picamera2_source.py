"""Raw dual-pixel frames through Picamera2: ``picamera2://``.

URL grammar::

    picamera2://N?layout=columns|rows|halves|planes[&format=SRGGB10_CSI2P]
                 [&width=W][&height=H][&black=B][&white=W][&timeout_ms=T]
                 [&tries=K][&exposure_us=E][&gain=G][&plane=luma|green]
                 [&confirm_frames=K]

    N           camera index (Picamera2(N); 0 = the first camera)
    layout      how the two sub-aperture views sit in the raw image
                (hil_af.rawdecode: columns = L R L R..., rows, halves, planes)
    format      the raw stream's Picamera2/libcamera format: *_CSI2P packed
                10/12-bit in any Bayer order (SRGGB10_CSI2P, SGBRG12_CSI2P,
                R10_CSI2P ...) or unpacked 16-bit containers (SBGGR10,
                SRGGB16, R16 ...); default: the sensor's native mode
    width, height  raw stream size in pixels (default: the sensor's full size;
                for layout=planes, the size of one view).  libcamera forces
                the raw size to the chosen sensor mode's: the frames use the
                size the camera reports, not the one asked for
    black, white   black / white level in DN of the raw bit depth (default:
                black from the request's SensorBlackLevels, white 2**bits-1)
    timeout_ms  wait for one frame (default 1000 ms); tries: attempts (default 3)
    exposure_us, gain   fixed ExposureTime / AnalogueGain (default: auto)
    plane       what of a Bayer view's colours the disparity is computed on:
                luma (default: each 2x2 cell's mean, a luminance estimate)
                or green (the mean of the cell's two greens)
    confirm_frames  after a libcamera-lens:// move, frames whose LensPosition
                has not reached the target yet are dropped, up to this many
                (default 16), then DeviceTimeout

Only dual-pixel sensors are opened.  No stock Raspberry Pi camera delivers
its two photodiodes' views in the raw image (on a Camera Module 3 /
IMX708 even and odd columns of the Bayer mosaic are different colours,
not two sub-apertures), so a camera is accepted only if its ``Model``
property is in ``DUAL_PIXEL_MODELS`` or the rig profile declares it::

    [sensor]
    dual_pixel = true        # this sensor's raw holds both photodiodes
    model = "imx..."         # optional: must equal the camera's Model property
    cfa = "RGGB"             # optional: RGGB|GRBG|GBRG|BGGR|mono (default: the format's order)

otherwise opening fails (exit 2) saying it is not a dual-pixel sensor.

CFA: a 2PD sensor's left/right sub-pixels sit under one colour filter, so
each view, split per photosite, is itself a Bayer mosaic.  With a Bayer
order (from the raw format's name, e.g. ``SGBRG10_CSI2P``, else the
``ColorFilterArrangement`` property, else the profile's ``cfa``) each view
is reduced to one value per 2x2 cell (``plane``): the views are half the
split size in both directions.  Mono sensors are split only.

Raspberry Pi 5 (PiSP): the front end cannot write CSI-2 packed raw;
libcamera substitutes a compressed format (``*_PISP_COMP1``, pisp.cpp
``platformValidate``).  This source then re-requests the unpacked 16-bit
format of the same Bayer order (``S<ORDER>16``, values MSB-aligned: white
65535, black from SensorBlackLevels unscaled) and never decompresses; the
frame metadata's ``raw_path`` says which happened.

Frames: float32 views with the black level subtracted, ``lens_position``
from the request's ``LensPosition`` metadata in the native unit of
``libcamera-lens://N`` (dioptres, or VCM codes with its ``units=code``; NaN
when no lens driver reports one): libcamera's slew-limited lens command for
that frame (af.cpp ``fsmooth_``), not a measurement.  ``timestamp_s`` =
``SensorTimestamp`` / 1e9 (seconds), uncropped: ``origin`` (0, 0) and
``sensor_hw`` = the view size.  Picamera2 is imported lazily (it exists only
on Raspberry Pi OS: ``sudo apt install python3-picamera2``).

The controller's AF steps use ``capture_roi_frame(rois)`` instead (a
``hil_af.roiframe.RoiFrame``: only the RoIs' raw rows and columns unpacked,
``hil_af.rawroi``; the same values, lens position and metadata as
``capture()``'s frame), so a step on a 12 MP frame costs the RoIs' decode,
not the frame's.  Nor does it copy the buffer (``capture()``'s
``make_array`` is picamera2's ``np.copy`` of all 15 MB): it reads the windows
inside ``with MappedArray(request, "raw")``, a view of the mmap'd dmabuf
valid only in the context, and holds the request until the next capture or
``close()`` so that a later window reads the same buffer (docs/hardware.md).

One ``Picamera2`` object per camera is shared by this source,
``libcamera-lens://N`` and ``picamera2-fom://N`` through ``shared_camera(N)``
(a reference-counted cache, ``hil_af.drivers.picamera2_shared``, re-exported
here): libcamera lets only one process-wide owner open a camera.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Any

from ..errors import BadInput, DeviceError, DeviceTimeout
from ..frames import DualPixelFrame
from ..rawdecode import LAYOUTS, PLANES, decode_raw
from ..rawroi import decode_rois
from ..roiframe import RoiFrame
from .base import ContextMixin
from .picamera2_shared import (  # the shared-camera registry lives there; re-exported
    _CAMERAS, SharedCamera, camera_index, release_camera, shared_camera,  # noqa: F401  (_CAMERAS: tests)
)
from .raw_formats import (  # the format helpers live there; re-exported
    DUAL_PIXEL_MODELS, ORDERS, bayer_order, check_dual_pixel, is_pisp_compressed, raw_format, sensor_cfa, unpacked16,
)
from .registry import DriverURL, register

log = logging.getLogger(__name__)


__all__ = ["DUAL_PIXEL_MODELS", "ORDERS", "Picamera2Source", "SharedCamera", "bayer_order", "camera_index",
           "is_pisp_compressed", "raw_format", "release_camera", "shared_camera", "unpacked16"]


def _capture_kwargs(cam: Any) -> dict[str, Any]:
    """``capture_request`` arguments: asynchronous, and ``flush=True`` (only a frame that started
    exposing after the call, i.e. after the lens moved) where this Picamera2 supports it."""
    try:
        names = set(inspect.signature(cam.capture_request).parameters)
    except (TypeError, ValueError):
        names = set()
    return {"wait": False, "flush": True} if "flush" in names else {"wait": False}


def _mapped_array() -> tuple[Any, dict[str, Any]]:
    """picamera2's ``MappedArray`` and its arguments: a read-only sync (``write=False``) where this
    Picamera2 has the argument (request.py, 0.3.13 on; the DMA_BUF_SYNC_END of a read skips the cache
    clean a write needs)."""
    try:
        from picamera2 import MappedArray
    except ImportError as e:
        raise DeviceError(f"picamera2 has no MappedArray ({e}): too old a python3-picamera2") from None
    try:
        names = set(inspect.signature(MappedArray).parameters)
    except (TypeError, ValueError):
        names = set()
    return MappedArray, ({"write": False} if "write" in names else {})


# --------------------------------------------------------------------------- the source
class Picamera2Source(ContextMixin):
    """Dual-pixel frames from a Picamera2 raw stream (see the module header for units)."""

    def __init__(self, index: int = 0, *, layout: str = "columns", fmt: str | None = None,
                 size: tuple[int, int] | None = None, black: float | None = None, white: float | None = None,
                 timeout_s: float = 1.0, tries: int = 3, controls: dict[str, Any] | None = None,
                 sensor: dict[str, Any] | None = None, plane: str = "luma", confirm_frames: int = 16):
        if layout not in LAYOUTS:
            raise BadInput(f"picamera2://{index}: unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
        if plane not in PLANES:
            raise BadInput(f"picamera2://{index}: plane must be one of {', '.join(PLANES)}, got {plane!r}")
        if fmt is not None:
            raw_format(fmt)  # check before touching the camera
        sensor = dict(sensor or {})
        self.index = index
        self.layout = layout
        self.plane = plane
        self.black = black
        self.white = white
        self.timeout_s = float(timeout_s)
        self.tries = max(1, int(tries))
        self.confirm_frames = max(0, int(confirm_frames))
        self._closed = False
        self.timeouts = 0
        self.slew_frames = 0     # frames dropped because the lens had not reached its target
        self._held: Any = None   # the CompletedRequest behind the latest RoiFrame (released at the next capture)
        self.shared = shared_camera(index)
        self._capture_kw = _capture_kwargs(self.shared.cam)
        try:
            props = dict(getattr(self.shared.cam, "camera_properties", {}) or {})
            check_dual_pixel(index, props, sensor)
            raw: dict[str, Any] = {}
            if fmt:
                raw["format"] = fmt
            if size:
                w, h = size
                raw["size"] = (w, 2 * h) if layout == "planes" else (w, h)
            actual = self.shared.configure_raw(raw, controls or {})
            self.raw_path = "as requested"
            got = str(actual.get("format", fmt or ""))
            if is_pisp_compressed(got):  # a Pi 5 substituted its compressed format for a packed one
                want16 = unpacked16(got)
                actual = self.shared.configure_raw({"format": want16, "size": tuple(actual["size"])}, controls or {})
                if is_pisp_compressed(str(actual.get("format"))):
                    raise DeviceError(f"picamera2://{index}: asked for {want16}, the camera still delivers "
                                      f"{actual.get('format')}: this Picamera2/libcamera cannot give unpacked raw")
                self.raw_path = f"PiSP: {fmt or 'the default'} became {got}; re-requested unpacked {want16}"
                log.info("picamera2://%d: %s", index, self.raw_path)
            self.fmt_name = str(actual.get("format", fmt or ""))
            self.fmt, self.bits = raw_format(self.fmt_name)
            self.cfa = sensor_cfa(self.fmt_name, props, sensor, index)
            self.model = str(props.get("Model", "unknown"))
            rw, rh = (int(v) for v in actual["size"])
            if size and raw.get("size") != (rw, rh):
                log.info("picamera2://%d: raw size %dx%d asked, the sensor mode gives %dx%d", index,
                         *raw["size"], rw, rh)
            self.raw_size = (rw, rh)
            self.stride = int(actual["stride"]) if actual.get("stride") else None
            vh, vw = {"columns": (rh, rw // 2), "rows": (rh // 2, rw), "halves": (rh, rw // 2),
                      "planes": (rh // 2, rw)}[layout]
            self.view_hw = (vh // 2, vw // 2) if self.cfa != "mono" else (vh, vw)
            self._MappedArray, self._map_kw = _mapped_array()
        except Exception:
            release_camera(self.shared)
            raise

    @property
    def sensor_hw(self) -> tuple[int, int]:
        """(H, W) of the view plane, pixels (frames are uncropped)."""
        return self.view_hw

    def capture(self) -> DualPixelFrame:
        """One raw request -> DualPixelFrame; DeviceTimeout after ``tries`` timeouts.

        After a ``libcamera-lens://`` move, a frame whose LensPosition has not reached the target
        (libcamera slews the lens over several frames) is dropped, up to ``confirm_frames``.
        The buffer is copied whole (``make_array``) and the request released before the decode."""
        request, md = self._confirmed_request()
        try:
            buf = request.make_array("raw")
        finally:
            request.release()
        return self._decode(buf, md)

    def capture_rois(self, rois: Any) -> tuple[Any, Any, dict[str, Any]]:
        """One raw request, decoding only the RoIs (x, y, w, h; view pixels, one size): (left, right
        patches [P, h, w] float32 with the black level subtracted, the request's metadata).  The same
        patches as ``crop_patches`` on ``capture()``'s views, at a fraction of the decode time
        (``hil_af.rawroi``, read from the mapped buffer: no copy); the lens confirmation of
        ``capture`` applies.  The request is released before this returns."""
        request, md = self._confirmed_request()
        try:
            L, R = self._mapped_windows(request, md, rois)
        finally:
            request.release()
        return L, R, md

    def capture_roi_frame(self, rois: Any) -> RoiFrame:
        """One raw request as a ``RoiFrame``: the RoIs (x, y, w, h; view pixels, any sizes) decoded
        now, any other window decoded when an estimator asks; lens position, timestamp, white level
        and metadata as ``capture()``'s frame (the controller's AF path).

        Zero copy: every window is read from picamera2's mapping of the camera buffer
        (``MappedArray``), so the request is held until this source's next capture (or ``close``);
        after that the frame's undecoded windows are gone (DeviceError), its decoded ones stay."""
        request, md = self._confirmed_request()
        try:
            black, white = float(self._black(md)), self._white()
            if white <= black:  # as decode_raw
                raise BadInput(f"picamera2://{self.index}: white level {white} must exceed the black level {black}")
            fields = self._fields(md)
            fields["metadata"] = {"raw_format": self.fmt, "layout": self.layout, "black_level": black,
                                  "cfa": self.cfa or "mono", **fields["metadata"]}
            self._held = request

            def decode(win: Any) -> tuple[Any, Any]:
                if self._held is not request:
                    raise DeviceError(f"picamera2://{self.index}: this frame's camera buffer went back to the "
                                      "camera at the source's next capture: decode a RoiFrame's windows before that")
                return self._mapped_windows(request, md, win, black)

            return RoiFrame(decode, rois, self.view_hw, white_level=white - black, **fields)
        except BaseException:
            if self._held is request:
                self._held = None
            request.release()
            raise

    def _mapped_windows(self, request: Any, md: dict[str, Any], rois: Any,
                        black: float | None = None) -> tuple[Any, Any]:
        """``_windows`` read from the request's mapped raw buffer, inside picamera2's mapping
        (``MappedArray``: a uint8 [height, stride] view of the dmabuf, valid only in the context)."""
        with self._MappedArray(request, "raw", **self._map_kw) as m:
            return self._windows(m.array, md, rois, black)

    def _windows(self, buf: Any, md: dict[str, Any], rois: Any, black: float | None = None) -> tuple[Any, Any]:
        """Left/right patches [P, h, w] float32 (new arrays, never views of ``buf``) of windows of one
        size of the raw buffer ``buf``."""
        w, h = self.raw_size
        return decode_rois(buf, w, h // 2 if self.layout == "planes" else h, rois, fmt=self.fmt,
                           stride=self.stride if self.fmt != "U16" else None, layout=self.layout, cfa=self.cfa,
                           plane=self.plane, black_level=self._black(md) if black is None else black)

    def _release_held(self) -> None:
        request, self._held = self._held, None
        if request is not None:
            request.release()

    def _confirmed_request(self) -> tuple[Any, dict[str, Any]]:
        """The next request (held: the caller releases it) whose LensPosition has reached the lens's
        target (dropping at most ``confirm_frames`` still on their way), else DeviceTimeout."""
        if self._closed:
            raise DeviceError(f"picamera2://{self.index}: source is closed")
        self._release_held()  # the latest RoiFrame's buffer goes back to the camera first
        for _ in range(self.confirm_frames + 1):
            request, md = self._request()
            target, got = self.shared.lens_target, md.get("LensPosition")
            if target is None or got is None or abs(float(got) - target) <= 1e-3:
                return request, md
            request.release()
            self.slew_frames += 1
        raise DeviceTimeout(f"picamera2://{self.index}: the lens reports LensPosition {got} after "
                            f"{self.confirm_frames + 1} frames, not the {target:g} dioptres it was sent to")

    def _black(self, md: dict[str, Any]) -> float:
        if self.black is not None:
            return self.black
        levels = md.get("SensorBlackLevels")
        return (sum(levels) / len(levels)) / 2 ** (16 - self.bits) if levels else 0.0

    def _request(self) -> tuple[Any, dict[str, Any]]:
        """The next completed request (not released: the caller does) and its metadata."""
        cam = self.shared.cam
        for attempt in range(1, self.tries + 1):
            job = cam.capture_request(**self._capture_kw)
            try:
                request = cam.wait(job, timeout=self.timeout_s)
            except TimeoutError:
                self.timeouts += 1
                log.warning("picamera2://%d: no frame within %.3f s (attempt %d/%d)", self.index, self.timeout_s,
                            attempt, self.tries)
                flush = getattr(cam, "cancel_all_and_flush", None)
                if flush is not None:
                    flush()  # drop the stale job so its request is not leaked
                continue
            try:
                md = dict(request.get_metadata())
            except BaseException:
                request.release()
                raise
            self.shared.note_metadata(md)
            return request, md
        raise DeviceTimeout(f"picamera2://{self.index}: no frame within {self.timeout_s:g} s in {self.tries} tries "
                            f"(camera stalled? check the ribbon cable and 'dmesg')")

    def _fields(self, md: dict[str, Any]) -> dict[str, Any]:
        """A frame's lens position (native units), timestamp (s) and metadata from the request's."""
        ts = md.get("SensorTimestamp")
        lens = md.get("LensPosition")
        convert = self.shared.lens_to_native
        if lens is not None and convert is not None:
            lens = convert(float(lens))
        keep = {k: md[k] for k in ("ExposureTime", "AnalogueGain", "SensorTimestamp", "FrameDuration", "LensPosition")
                if k in md}
        return {"lens_position": float(lens) if lens is not None else math.nan,
                "timestamp_s": ts / 1e9 if ts is not None else 0.0,
                "metadata": {"source": f"picamera2://{self.index}", "sensor_format": self.fmt_name,
                             "sensor_model": self.model, "raw_path": self.raw_path, **keep}}

    def _white(self) -> float:
        return self.white if self.white is not None else float(2 ** self.bits - 1)

    def _decode(self, buf: Any, md: dict[str, Any]) -> DualPixelFrame:
        w, h = self.raw_size
        return decode_raw(buf, w, h // 2 if self.layout == "planes" else h, fmt=self.fmt,
                          stride=self.stride if self.fmt != "U16" else None, layout=self.layout,
                          black_level=self._black(md), white_level=self._white(), cfa=self.cfa, plane=self.plane,
                          **self._fields(md))

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            try:
                self._release_held()
            finally:
                release_camera(self.shared)


def _positive(url: DriverURL, key: str, default, type_=float):
    v = url.get(key, default, type_)
    if v is not None and not (math.isfinite(v) and v > 0):
        raise BadInput(f"{url.raw}: {key} must be > 0, got {v}")
    return v


@register("picamera2", "source", "raw dual-pixel frames through Picamera2: picamera2://N?layout=columns|rows|halves|planes&format=...")
def open_picamera2(url: DriverURL, ctx: dict) -> Picamera2Source:
    url.unknown_keys({"layout", "format", "width", "height", "black", "white", "timeout_ms", "tries", "exposure_us",
                      "gain", "plane", "confirm_frames"})
    index = camera_index(url)
    width, height = _positive(url, "width", None, int), _positive(url, "height", None, int)
    if (width is None) != (height is None):
        raise BadInput(f"{url.raw}: give both width and height, or neither")
    black = url.get("black", None, float)
    if black is not None and not (math.isfinite(black) and black >= 0):
        raise BadInput(f"{url.raw}: black must be >= 0, got {black}")
    controls: dict[str, Any] = {}
    exposure = _positive(url, "exposure_us", None, int)
    gain = _positive(url, "gain", None, float)
    if exposure is not None:
        controls["ExposureTime"] = exposure
    if gain is not None:
        controls["AnalogueGain"] = gain
    return Picamera2Source(
        index, layout=url.get("layout", "columns"), fmt=url.get("format"),
        size=(width, height) if width else None, black=black, white=_positive(url, "white", None),
        timeout_s=_positive(url, "timeout_ms", 1000.0) / 1e3, tries=url.get("tries", 3, int), controls=controls,
        sensor=(ctx.get("profile") or {}).get("sensor"), plane=url.get("plane", "luma"),
        confirm_frames=url.get("confirm_frames", 16, int))
