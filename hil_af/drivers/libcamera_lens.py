"""The lens as libcamera drives it: ``libcamera-lens://``.

URL grammar::

    libcamera-lens://N[?units=dioptres|code][&settle_ms=T][&timeout_ms=T][&max_slew=D]

    N           camera index (the same N as the rig's picamera2://N)
    units       the lens's native units: dioptres (default) or code, VCM
                codes through the rig profile's [lens_map] (so a libcamera
                rig speaks the same units as VCM rigs, stacks and calibrations)
    settle_ms   mechanical settle after the lens command arrived (default 15 ms)
    timeout_ms  wait for one frame's metadata (default 1000 ms)
    max_slew    dioptres per frame libcamera moves the lens at most (default
                1.5: the IMX708 tuning's rpi.af "normal" speed, max_slew)

Which cameras: only those whose libcamera tuning has an ``rpi.af``
algorithm (upstream: imx708*, ov64a40) move the lens through LensPosition.
On the others (IMX519, IMX219/OV5647 + AD5398) libcamera advertises
LensPosition but ignores it ("no AF algorithm", ipa_base.cpp), reports no
LensPosition in the metadata, and older stacks do not advertise AfMode at
all: opening is refused (exit 2) there, pointing to ``v4l2://`` on the
lens sub-device.

Slew (af.cpp ``updateLensPosition``): a LensPosition request moves
libcamera's target; the position it applies, and reports in the metadata,
moves at most ``max_slew`` dioptres per frame towards it.  So
``settle_time_s`` after a move scales with its size: (ceil(|move| /
max_slew) + 2 frames of control latency) x the frame duration (from the
metadata's FrameDuration) + ``settle_ms``; and ``picamera2://N`` drops
frames whose LensPosition has not reached the target yet (the move is
confirmed from the frames, never from the echo of the command).

Positions are dioptres (1/m; 0 = infinity), the unit of libcamera's
``LensPosition`` control, and ``range`` is the control's (min, max) from
``camera_controls``; with ``units=code`` they are VCM codes, converted by the
lens map both ways, the range being the codes of the control's dioptre range
within the map's knots, and frames from ``picamera2://N`` then report their
``lens_position`` in codes too.  Moves set ``AfMode`` = Manual and ``LensPosition``
with ``Picamera2.set_controls``.  ``position`` is the ``LensPosition`` the
newest frame's metadata reported (libcamera's applied command, not a
measurement: no VCM reports where it is); ``read_position`` waits for fresh
metadata.  With the rig's lens map, ``move_to_code``/``code`` convert
from/to VCM codes.

The Picamera2 instance is shared with ``picamera2://N`` (``shared_camera``),
so a rig ``picamera2://0?... + libcamera-lens://0`` opens the camera once.
Use this lens whenever libcamera owns the camera and a kernel VCM driver is
bound (e.g. Camera Module 3, dtoverlay=imx708): libcamera would overwrite any
raw I2C write.
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import BadInput, DeviceError, DeviceTimeout
from ..optics import LensMap
from .base import ContextMixin
from .picamera2_shared import SharedCamera, camera_index, release_camera, shared_camera
from .registry import DriverURL, register


def _af_manual() -> Any:
    """libcamera's AfModeEnum.Manual (0 when the libcamera bindings are not importable)."""
    try:
        from libcamera import controls

        return controls.AfModeEnum.Manual
    except (ImportError, AttributeError):
        return 0


class LibcameraLens(ContextMixin):
    """LensPosition (dioptres) through a shared Picamera2."""

    def __init__(self, shared: SharedCamera, *, lens_map: LensMap | None = None, settle_s: float = 0.015,
                 timeout_s: float = 1.0, units: str = "dioptres", max_slew: float = 1.5):
        self.shared = shared
        self.lens_map = lens_map
        self.units = units
        self._settle_s = float(settle_s)
        self.timeout_s = float(timeout_s)
        self.max_slew = float(max_slew)
        self._move_frames = 0          # frames the last move takes at max_slew
        self._frame_s = 1 / 30         # frame duration, from the metadata
        self._closed = False
        try:
            ctrl = shared.cam.camera_controls.get("LensPosition")
            if ctrl is None:
                raise DeviceError(
                    f"camera {shared.index} has no LensPosition control: no kernel VCM driver is bound to its lens "
                    f"(fixed-focus module, or the overlay lacks the VCM: see drivers/devicetree.md; "
                    f"without one use i2c://BUS/0x0c?chip=...)")
            if "AfMode" not in shared.cam.camera_controls:
                raise BadInput(self._no_af("libcamera does not advertise AfMode"))
            lo, hi = float(ctrl[0]), float(ctrl[1])
            d_range = (min(lo, hi), max(lo, hi))
            default = float(ctrl[2]) if len(ctrl) > 2 and ctrl[2] is not None else d_range[0]
            default = min(max(default, d_range[0]), d_range[1])
            if units == "code":
                m = self._map()
                d_lo, d_hi = max(d_range[0], m.dioptres[0]), min(d_range[1], m.dioptres[-1])
                if d_lo >= d_hi:
                    raise BadInput(f"libcamera-lens://{shared.index}: the lens map's dioptres {m.dioptres[0]:g}.."
                                   f"{m.dioptres[-1]:g} do not overlap the LensPosition range {lo:g}..{hi:g}")
                c0, c1 = float(m.to_code(d_lo)), float(m.to_code(d_hi))
                self._range = (min(c0, c1), max(c0, c1))
                self._commanded = float(m.to_code(min(max(default, d_lo), d_hi)))
            elif units == "dioptres":
                self._range = d_range
                self._commanded = default
            else:
                raise BadInput(f"libcamera-lens://{shared.index}: units must be dioptres or code, got {units!r}")
            shared.ensure_started()
            md = self._fresh_metadata()
            if "LensPosition" not in md:
                raise BadInput(self._no_af("frame metadata carries no LensPosition"))
            shared.cam.set_controls({"AfMode": _af_manual()})
            if units == "code":
                with shared.lock:
                    shared.lens_to_native = self._map().to_code
            self._moved_at_seq = shared.metadata_seq
        except Exception:
            release_camera(shared)
            raise

    def _no_af(self, why: str) -> str:
        model = (getattr(self.shared.cam, "camera_properties", None) or {}).get("Model", "this camera")
        return (f"libcamera-lens://{self.shared.index}: {why}: libcamera's tuning for {model} has no rpi.af "
                f"algorithm, so libcamera never moves this lens. Drive it through its kernel driver instead: "
                f"v4l2:///dev/v4l-subdevN (the sub-device with focus_absolute, see drivers/devicetree.md)")

    def _native(self, dioptres: float) -> float:
        return float(self._map().to_code(dioptres)) if self.units == "code" else float(dioptres)

    @property
    def position(self) -> float:
        """LensPosition the newest frame reported (native units): libcamera's applied, slew-limited
        command, not a measurement; the commanded value until a frame after the move reports one."""
        with self.shared.lock:
            md = self.shared.last_metadata
            if self.shared.metadata_seq > self._moved_at_seq and "LensPosition" in md:
                return self._native(float(md["LensPosition"]))
        return self._commanded

    @property
    def range(self) -> tuple[float, float]:
        """(min, max) in native units (dioptres of the LensPosition control, or their codes)."""
        return self._range

    @property
    def settle_time_s(self) -> float:
        """Seconds until the last move is done: its slew frames + 2 frames of latency, + ``settle_ms``."""
        return (self._move_frames + 2) * self._frame_s + self._settle_s if self._move_frames else self._settle_s

    def move_to(self, position: float) -> None:
        """Manual focus at ``position`` (native units); out of range raises BadInput."""
        if self._closed:
            raise DeviceError(f"libcamera-lens://{self.shared.index}: lens is closed")
        try:
            p = float(position)
        except (TypeError, ValueError):
            raise BadInput(f"libcamera-lens://{self.shared.index}: position {position!r} is not a number") from None
        lo, hi = self._range
        if not (math.isfinite(p) and lo <= p <= hi):
            raise BadInput(f"libcamera-lens://{self.shared.index}: {position!r} {self.units} is outside {lo:g}..{hi:g}")
        d = float(self._map().to_dioptres(p)) if self.units == "code" else p
        with self.shared.lock:
            md = self.shared.last_metadata
            start = float(md.get("LensPosition", d))
            if md.get("FrameDuration"):
                self._frame_s = float(md["FrameDuration"]) / 1e6
            self.shared.cam.set_controls({"AfMode": _af_manual(), "LensPosition": d})
            self._move_frames = math.ceil(abs(d - start) / self.max_slew - 1e-9) if self.max_slew > 0 else 0
            self._commanded = p
            self._moved_at_seq = self.shared.metadata_seq
            self.shared.lens_target = d

    def read_position(self) -> float:
        """Wait for the next frame's metadata; its LensPosition (native units)."""
        md = self._fresh_metadata()
        if "LensPosition" not in md:
            raise DeviceError(f"libcamera-lens://{self.shared.index}: frame metadata has no LensPosition")
        return self._native(float(md["LensPosition"]))

    def _fresh_metadata(self) -> dict[str, Any]:
        cam = self.shared.cam
        job = cam.capture_metadata(wait=False)
        try:
            md = cam.wait(job, timeout=self.timeout_s)
        except TimeoutError:
            raise DeviceTimeout(f"libcamera-lens://{self.shared.index}: no metadata within {self.timeout_s:g} s") from None
        self.shared.note_metadata(md)
        return dict(md)

    def _map(self) -> LensMap:
        if self.lens_map is None:
            raise BadInput(f"libcamera-lens://{self.shared.index}: no lens map: add [lens_map] to the rig profile")
        return self.lens_map

    def move_to_code(self, code: float) -> None:
        """Move to a VCM code through the rig's lens map (whatever the native units)."""
        self.move_to(float(code) if self.units == "code" else float(self._map().to_dioptres(code)))

    @property
    def code(self) -> float:
        """The current position as a VCM code through the rig's lens map."""
        return self.position if self.units == "code" else float(self._map().to_code(self.position))

    def close(self) -> None:
        """Hand focus back to libcamera's default (AfMode stays Manual) and release the camera."""
        if not self._closed:
            self._closed = True
            with self.shared.lock:
                self.shared.lens_target = None
                if self.units == "code":
                    self.shared.lens_to_native = None
            release_camera(self.shared)


@register("libcamera-lens", "lens", "LensPosition through Picamera2/libcamera: libcamera-lens://N (dioptres; VCM codes with ?units=code)")
def open_libcamera_lens(url: DriverURL, ctx: dict) -> LibcameraLens:
    url.unknown_keys({"settle_ms", "timeout_ms", "units", "max_slew"})
    index = camera_index(url)
    settle_ms = url.get("settle_ms", 15.0, float)
    timeout_ms = url.get("timeout_ms", 1000.0, float)
    max_slew = url.get("max_slew", 1.5, float)
    if not (math.isfinite(settle_ms) and settle_ms >= 0 and math.isfinite(timeout_ms) and timeout_ms > 0):
        raise BadInput(f"{url.raw}: settle_ms must be >= 0 and timeout_ms > 0")
    if not (math.isfinite(max_slew) and max_slew > 0):
        raise BadInput(f"{url.raw}: max_slew must be > 0 dioptres per frame, got {max_slew}")
    units = url.get("units", "dioptres")
    if units not in ("dioptres", "code"):
        raise BadInput(f"{url.raw}: units must be dioptres or code, got {units!r}")
    if units == "code" and ctx.get("lens_map") is None:
        raise BadInput(f"{url.raw}: units=code needs a [lens_map] in the rig profile")
    return LibcameraLens(shared_camera(index), lens_map=ctx.get("lens_map"), settle_s=settle_ms / 1e3,
                         timeout_s=timeout_ms / 1e3, units=units, max_slew=max_slew)
